"""Simulated fUSI Power Doppler recordings with ground truth: the embedded default.

The real recording this package was built for (sub-CR022, ses-20201011, slice 03
of Nunez-Elizalde et al. 2022) is a 751-frame single-slice Power Doppler movie
that has to be downloaded. The simulator produces a recording of the same shape,
voxel size, timing and file layout from a seed, plus the ground truth that a real
recording never has (source maps and time courses, per-frame motion, the clean
signal), so every stage of the pipeline can be measured, not just looked at.

What is simulated, and why
--------------------------
Every effect below is a documented parameter of :func:`simulate_recording` and is
on by default where real mouse fUSI data have it. ``nuisance=False`` switches off
every nuisance at once (motion, drift, global fluctuation, both kinds of surge,
vasomotion, non-rigid deformation, through-slice change) and keeps the sources and
the noise: the same recording as a pipeline would ideally see it, its ceiling.

Baseline (``baseline``)
    Power Doppler is proportional to the blood volume in a voxel, so the image is
    dominated by vessels: bright pial vessels on the (curved) brain surface,
    penetrating vessels running down into cortex with a few branches, and a couple
    of larger deep vessels, drawn as random-walk centre lines and blurred by an
    anisotropic point-spread function in mm (x 0.05, y 0.035 mm). They sit over a
    cortex-like parenchyma texture (log-normal smooth noise, mild attenuation with
    depth) and a dimmer region above the brain. Values run from about 1e3 to a
    few 1e4, as in the real data.
Sources (``source_maps``, ``source_timecourses``, ``source_sign``)
    ``n_sources`` localized regions (anisotropic Gaussian footprints in mm, inside
    the brain; two of them are placed to overlap) whose blood volume changes by a
    fraction of baseline: sparse events convolved with a gamma haemodynamic
    response (peak ~2.3 s), plus a slow fluctuation. At least one source
    *decreases* below baseline (``source_sign == -1``), because the pos/neg split
    in the pipeline exists for exactly that case. ``clean = baseline * (1 +
    sum_k source_maps_k * source_timecourses_k)``. Peak changes are drawn in
    ``source_amplitude`` (default 20-35 %): stimulus-evoked CBV increases in
    rodent fUSI are typically 10-30 % in the responding region (Mace et al. 2011,
    Nat Methods 8:662; Mace et al. 2018, Neuron 100:1241); spontaneous activity
    is weaker, which is what the signal-to-noise sweep (``benchmarks/snr_sweep.py``)
    covers down to 5 %.
Vessel response (``vessel_response=True``)
    Sources change parenchyma more than large vessels, in relative terms: a
    voxel's footprint is scaled by ``1 - 0.6 * vessel fraction`` (the share of
    its baseline power that comes from drawn vessels), so a pure-vessel voxel
    changes by 40 % of what a parenchyma voxel beside it does. The relative CBV
    change of large pial and draining vessels is smaller than that of the
    capillary bed and arterioles they supply; the factor is a modelling choice,
    not a measured constant. The ground-truth maps are these effective maps.
Slow drift (``drift=True``)
    A multiplicative global trend plus a spatially varying slow trend (probe and
    coupling-gel changes over minutes).
Global fluctuation (``global_signal=True``)
    One shared band-limited multiplicative fluctuation (4 % s.d.), weighted towards
    vessels (heart rate, blood pressure, breathing).
Vasomotion (``vasomotion=True``)
    Vessels have their own slow fluctuation, around 0.1 Hz (8 % s.d. in a pure
    vessel voxel, scaled by the vessel fraction), independent in four soft
    territories: arteriolar vasomotion at ~0.1 Hz is a large, spontaneous,
    spatially patchy signal in awake mouse cortex (Mateo et al. 2017, Neuron
    96:936). It lies above any reasonable high-pass cut-off, so cleaning cannot
    simply filter it out.
Power surges at motion (``surges=True``)
    Brief (1-3 frame) broad increases of power (40-120 %) at the abrupt motion
    events: tissue motion leaks into the Doppler band when the animal moves
    (clutter-filter residue; Demene et al. 2015, IEEE Trans Med Imaging 34:2271;
    Urban et al. 2015, Nat Methods 12:873).
Free power surges (``free_surges=True``)
    The same kind of burst (20-80 %) with no image displacement, at a rate of
    one per 40 s on average (Poisson): in head-fixed animals, licking, whisking or
    a body movement can raise power without moving the brain in the image, so
    framewise-displacement censoring cannot catch them and only an intensity
    criterion (DVARS) can. The rate is a modelling choice.
Rigid motion (``motion=True``)
    In-plane translation (tx, ty in mm) and rotation (rz in degrees about the
    field-of-view centre): a slow wander plus a few abrupt jumps (steps to a new
    position and short excursions), bounded by ``max_shift_voxels`` (2 voxels per
    axis) and ``max_rotation_deg`` (1 degree). Each frame is resampled in physical
    mm space (voxels are anisotropic) with cubic splines
    (:func:`scipy.ndimage.map_coordinates`, edges filled with the nearest value,
    clipped so power stays positive). Convention as everywhere in the package:
    content at reference position p moves to R (p - c) + c + t, positive rz turns
    +x towards +y. With ``z > 1`` the motion stays in-plane (every slice moves the
    same way).
Non-rigid deformation (``nonrigid=True``)
    A smooth displacement field (correlation length ~0.7 mm, peak 0.03 mm, i.e.
    0.3 voxel in x and 0.6 in y) scaled by a slow course (minutes): brain
    swelling and pressure changes deform the tissue in a way a rigid fit cannot
    undo. The amplitude is a modelling choice, below the rigid motion.
Through-slice change (``through_slice=True``)
    At each motion jump the slice also moves in elevation (the probe images a
    ~0.4 mm thick slice), so other vessels enter it: a fine (PSF-scale),
    vessel-weighted intensity pattern changes by up to 6 % and stays until the
    next jump. In-plane registration cannot undo it.
Noise (``noise=True``, ``noise_sd``, ``correlated_noise=True``)
    Multiplicative noise of s.d. ``noise_sd`` (default 6.3 %, from a gamma shape
    of 250; the version-1 docstring said ~20 %, the code always gave 6.3 %) and an
    additive electronic floor (100 power units, ~3-7 % of parenchyma and the
    region above the brain). The multiplicative part is what is left of speckle
    after Doppler ensemble averaging: a Power Doppler frame averages a few hundred
    compound images, so a voxel's frame-to-frame s.d. is a few percent of its
    mean in tissue; the sweep covers 3-12 %. With ``correlated_noise`` it is
    log-normal with the same mean and s.d., smoothed over the point-spread
    function (speckle grains are PSF-sized; Wagner et al. 1983, IEEE Trans Sonics
    Ultrason 30:156) and correlated from frame to frame (AR(1), 0.3: consecutive
    Doppler ensembles share slow clutter), a modelling choice; without it, gamma
    noise independent per voxel and frame.

Brain-attached effects (sources, drift, global fluctuation, vasomotion, surges,
through-slice change) are applied first, then non-rigid deformation and rigid
motion, then measurement noise. Each effect draws from its own random stream
(:class:`numpy.random.SeedSequence` children of ``seed``), so switching one effect
off leaves everything else bit-identical: ``motion=False`` is "perfect motion
correction" of the same recording, ``nuisance=False`` the ceiling.

How well the pipeline recovers the sources from this simulator, with chance
levels and ceilings, is measured by ``benchmarks/measure_cleaning.py`` and
``benchmarks/snr_sweep.py`` and shipped as :func:`fusi_nmf.metrics.validation_table`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage, special

from fusi_nmf import __version__
from fusi_nmf._atomic import atomic_path, write_json
from fusi_nmf._paths import data_home
from fusi_nmf._progress import status
from fusi_nmf._util import file_digest
from fusi_nmf.io import save_recording

__all__ = [
    "FIRST_ONSET_S",
    "PRESETS",
    "REPETITION_TIME_S",
    "SIMULATOR_VERSION",
    "SOURCE_AMPLITUDE",
    "SPECKLE_SD",
    "VOXEL_SIZE_MM",
    "add_parser",
    "converter_timing",
    "ground_truth_path",
    "load_ground_truth",
    "recording_path",
    "simulate_recording",
    "simulated_dataset",
    "write_simulated_dataset",
]

#: Bump when the generated numbers change, so cached datasets are regenerated.
SIMULATOR_VERSION = "3"

#: Voxel size of the real recording (mm).
VOXEL_SIZE_MM: dict[str, float] = {"x": 0.1, "y": 0.04832, "z": 0.4}
REPETITION_TIME_S = 0.3
FIRST_ONSET_S = 10.608

#: preset -> (n_frames, (z, y, x))
PRESETS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "default": (751, (1, 114, 80)),
    "small": (300, (1, 48, 40)),
}

# The simulated subject is named as what it is, so no figure of simulated data can pass
# for the real recording (sub-CR022); session, task and acq mirror the real layout.
SUBJECT = "sim01"
SESSION = "20201011"
TASK = "spontaneous"
ACQUISITION = "slice03"
_STEM = f"sub-{SUBJECT}_ses-{SESSION}_task-{TASK}_acq-{ACQUISITION}"
MANIFEST_NAME = ".fusi_nmf_manifest.json"

# Point-spread function (Gaussian sigma, mm) of the Power Doppler image.
_PSF_MM = {"x": 0.05, "y": 0.035, "z": 0.15}
# Peak fractional change of the sources (drawn uniformly in this range).
SOURCE_AMPLITUDE = (0.2, 0.35)
_SLOW_WEIGHT = 0.05  # weight of the slow fluctuation in the source activity
_PAIR_DISTANCE = 1.3  # sources 0 and 1 overlap: centre distance in sigmas
_MIN_DISTANCE = 1.6  # other sources: minimum centre distance in mean sigmas
#: Default s.d. of the multiplicative per-frame noise (fraction of power).
SPECKLE_SD = 1.0 / math.sqrt(250.0)  # 0.063, see "Noise" in the module docstring
_ADDITIVE_NOISE = 100.0  # power units
_DRIFT_GLOBAL = 0.15  # max |global trend| (fraction)
_DRIFT_LOCAL = 0.08  # s.d. of the spatial drift field (fraction)
_GLOBAL_STD = 0.04  # s.d. of the global fluctuation (fraction)
_SURGE_RANGE = (0.4, 1.2)  # peak fractional power increase at a motion event
_FREE_SURGE_RATE = 1.0 / 40.0  # surges per second with no motion jump
_FREE_SURGE_RANGE = (0.2, 0.8)  # their peak fractional power increase
_VASOMOTION_STD = 0.08  # s.d. of the vessels' own slow fluctuation (fraction)
_VASOMOTION_HZ = 0.1  # its centre frequency
_VESSEL_RESPONSE = 0.6  # sources change a pure-vessel voxel by (1 - this) of parenchyma
_NOISE_SIGMA_MM = (0.05, 0.035)  # spatial correlation of the noise (x, y): the PSF
_NOISE_AR1 = 0.3  # frame-to-frame correlation of the noise
_NONRIGID_MM = 0.03  # peak non-rigid displacement (mm), slow
_THROUGH_SLICE = 0.06  # s.d. of the through-slice intensity change at a motion event


# --------------------------------------------------------------------------- helpers


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_preset(preset: str) -> tuple[int, tuple[int, int, int]]:
    if preset not in PRESETS:
        raise ValueError(
            f"Unknown simulator preset {preset!r}; choose one of {sorted(PRESETS)} "
            "('default' is the real recording's size, 'small' is for tests)."
        )
    return PRESETS[preset]


def _smooth_noise(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


def _lowpass_series(rng: np.random.Generator, n: int, sigma_frames: float) -> np.ndarray:
    """Smooth random time series, zero mean, unit s.d."""
    pad = int(3 * sigma_frames)
    series = ndimage.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma_frames)[
        pad : -pad or None
    ]
    series = series - series.mean()
    return series / (series.std() + 1e-12)


class _Grid:
    """Voxel grid: shapes, voxel sizes and physical coordinates (mm)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape
        nz, ny, nx = shape
        self.dz, self.dy, self.dx = VOXEL_SIZE_MM["z"], VOXEL_SIZE_MM["y"], VOXEL_SIZE_MM["x"]
        # x lateral (centred on the midline), y depth below the probe, z elevation (centred).
        self.x = np.round((np.arange(nx) - (nx - 1) / 2) * self.dx, 6)
        self.y = np.round(np.arange(ny) * self.dy, 6)
        self.z = np.round((np.arange(nz) - (nz - 1) / 2) * self.dz, 6)
        self.lx, self.ly, self.lz = nx * self.dx, ny * self.dy, nz * self.dz
        # local mm from the first voxel centre, broadcastable to (z, y, x)
        self.X = (np.arange(nx) * self.dx)[None, None, :]
        self.Y = (np.arange(ny) * self.dy)[None, :, None]
        self.Z = (np.arange(nz) * self.dz)[:, None, None]

    def sigma_vox(self, sx_mm: float, sy_mm: float, sz_mm: float) -> tuple[float, float, float]:
        sz = sz_mm / self.dz if self.shape[0] > 1 else 0.0
        return (sz, sy_mm / self.dy, sx_mm / self.dx)


# --------------------------------------------------------------------------- baseline


def _surface_depth(grid: _Grid, x_local: np.ndarray, rng_wiggle: np.ndarray) -> np.ndarray:
    """Depth (mm, local) of the brain surface below the probe at lateral position x."""
    u = (x_local - grid.lx / 2) / (grid.lx / 2)
    return grid.ly * (0.07 + 0.06 * u**2) + rng_wiggle


def _splat(grid: _Grid, pts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accumulate weighted points (local mm, columns z, y, x) into the grid, (tri)linearly."""
    nz, ny, nx = grid.shape
    out = np.zeros(grid.shape)
    fz = pts[:, 0] / grid.dz if nz > 1 else np.zeros(len(pts))
    fy, fx = pts[:, 1] / grid.dy, pts[:, 2] / grid.dx
    iz0, iy0, ix0 = np.floor(fz).astype(int), np.floor(fy).astype(int), np.floor(fx).astype(int)
    wz1, wy1, wx1 = fz - iz0, fy - iy0, fx - ix0
    for dz, wz in ((0, 1 - wz1), (1, wz1)):
        for dy, wy in ((0, 1 - wy1), (1, wy1)):
            for dx, wx in ((0, 1 - wx1), (1, wx1)):
                iz, iy, ix = iz0 + dz, iy0 + dy, ix0 + dx
                ok = (iz >= 0) & (iz < nz) & (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
                np.add.at(out, (iz[ok], iy[ok], ix[ok]), (weights * wz * wy * wx)[ok])
    return out


def _vessel_path(
    rng, start, angle, length, step, wiggle, z_wiggle
) -> tuple[np.ndarray, np.ndarray]:
    """Random-walk centre line in the (y, x) plane; returns points (n, 3) and unit directions."""
    n = max(int(length / step), 2)
    angles = angle + np.cumsum(rng.normal(0.0, wiggle, n))
    dirs = np.stack([np.zeros(n), np.cos(angles), np.sin(angles)], axis=1)  # (z, y, x)
    pts = start[None, :] + np.cumsum(dirs * step, axis=0)
    if z_wiggle:
        pts[:, 0] += np.cumsum(rng.normal(0.0, z_wiggle * step, n))
    return pts, dirs


def _render_vessels(grid: _Grid, paths, width_mm: float) -> np.ndarray:
    """Render centre lines (points, dirs, amplitude) so the line peak is about ``amplitude``."""
    if not paths:
        return np.zeros(grid.shape)
    sx = math.hypot(width_mm, _PSF_MM["x"])
    sy = math.hypot(width_mm, _PSF_MM["y"])
    sz = math.hypot(width_mm, _PSF_MM["z"])
    pts = np.concatenate([p for p, _, _, _ in paths])
    dirs = np.concatenate([d for _, d, _, _ in paths])
    amps = np.concatenate([np.full(len(p), a) for p, _, a, _ in paths])
    steps = np.concatenate([np.full(len(p), s) for p, _, _, s in paths])
    # A line of density lambda (per mm) blurred by a Gaussian peaks at
    # lambda / (sqrt(2 pi) sigma_perp) per mm^2; choose lambda so the voxel peak is amp.
    sigma_perp = np.hypot(dirs[:, 1] * sx, dirs[:, 2] * sy)
    weights = amps * steps * np.sqrt(2 * np.pi) * sigma_perp / (grid.dx * grid.dy)
    if grid.shape[0] > 1:
        weights = weights * np.sqrt(2 * np.pi) * sz / grid.dz
    img = _splat(grid, pts, weights)
    return ndimage.gaussian_filter(img, grid.sigma_vox(sx, sy, sz), mode="constant")


def _baseline(rng: np.random.Generator, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel-dominated baseline image; returns (baseline, brain weight, vessel image)."""
    nz, _ny, nx = grid.shape
    step = 0.01
    wiggle_x = np.arange(nx) * grid.dx
    wiggle = 0.04 * _lowpass_series(rng, nx, max(nx / 8, 1.0))
    surface = _surface_depth(grid, wiggle_x, wiggle)  # (nx,)
    brain = special.expit((grid.Y - surface[None, None, :]) / 0.03)  # (1, ny, nx)
    brain = np.broadcast_to(brain, grid.shape)

    # parenchyma: log-normal texture at two scales, mild attenuation with depth
    fine = _smooth_noise(rng, grid.shape, grid.sigma_vox(0.08, 0.06, 0.3))
    coarse = _smooth_noise(rng, grid.shape, grid.sigma_vox(0.8, 0.6, 1.0))
    depth = np.clip(grid.Y - surface[None, None, :], 0, None)
    tissue = 3200.0 * np.exp(0.22 * fine + 0.25 * coarse - 0.08 * depth)
    outside = 1500.0 * np.exp(0.12 * fine)
    img = brain * tissue + (1 - brain) * outside

    z_wig = 0.3 if nz > 1 else 0.0

    def z_start() -> float:
        return rng.uniform(0, grid.lz - grid.dz) if nz > 1 else 0.0

    # penetrating vessels (thin) with a few branches
    thin, thick = [], []
    x_pos = rng.uniform(0.0, 0.3)
    while x_pos < grid.lx:
        xi = min(round(x_pos / grid.dx), nx - 1)
        start = np.array([z_start(), surface[xi], x_pos])
        remaining = grid.ly - surface[xi]
        length = remaining * rng.uniform(0.3, 1.0)
        amp = rng.uniform(0.5e4, 1.5e4)
        angle = rng.normal(0.0, 0.15)
        pts, dirs = _vessel_path(rng, start, angle, length, step, 0.03, z_wig)
        thin.append((pts, dirs, amp, step))
        for _ in range(rng.integers(0, 3)):
            k = rng.integers(len(pts) // 5, len(pts))
            b_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.45, 1.1)
            b_len = rng.uniform(0.2, 0.6) * max(length - k * step, 0.2)
            bp, bd = _vessel_path(rng, pts[k], b_angle, b_len, step, 0.05, z_wig)
            thin.append((bp, bd, amp * rng.uniform(0.4, 0.8), step))
        x_pos += rng.uniform(0.22, 0.45)

    # a couple of larger deep vessels running obliquely, with branches
    for _ in range(2):
        start = np.array(
            [z_start(), rng.uniform(0.55, 0.85) * grid.ly, rng.uniform(0.0, 0.2) * grid.lx]
        )
        angle = np.pi / 2 + rng.normal(0.0, 0.3)  # mostly lateral (+x)
        pts, dirs = _vessel_path(
            rng, start, angle, grid.lx * rng.uniform(0.5, 1.0), step, 0.02, z_wig
        )
        amp = rng.uniform(1.2e4, 2.0e4)
        thick.append((pts, dirs, amp, step))
        for _ in range(rng.integers(1, 4)):
            k = rng.integers(0, len(pts))
            b_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.6, 1.3)
            bp, bd = _vessel_path(rng, pts[k], b_angle, rng.uniform(0.3, 1.2), step, 0.04, z_wig)
            thin.append((bp, bd, amp * 0.5, step))

    vessels = _render_vessels(grid, thin, 0.012) + _render_vessels(grid, thick, 0.04)
    vessels *= brain  # no vessels above the brain surface, but pial ones below

    # pial vessels: bright cross-sections just under the surface plus a thin bright band
    n_pial = max(int(grid.lx / 0.7), 2)
    px = rng.uniform(0, grid.lx, n_pial)
    pial = np.zeros(grid.shape)
    for xc in px:
        xi = min(round(xc / grid.dx), nx - 1)
        r = rng.uniform(0.04, 0.1)
        amp = rng.uniform(1.5e4, 3.0e4)
        yc = surface[xi] + r
        zc = z_start()
        d2 = (grid.X - xc) ** 2 / (r**2 + _PSF_MM["x"] ** 2) + (grid.Y - yc) ** 2 / (
            r**2 + _PSF_MM["y"] ** 2
        )
        if nz > 1:
            d2 = d2 + (grid.Z - zc) ** 2 / (r**2 + _PSF_MM["z"] ** 2)
        pial += amp * np.exp(-0.5 * d2)
    band = 0.6e4 * np.exp(-0.5 * ((grid.Y - surface[None, None, :] - 0.03) / 0.04) ** 2)
    vessels = vessels + pial + band
    vessels = 3.5e4 * np.tanh(vessels / 3.5e4)  # soft saturation: peaks stay a few 1e4
    return img + vessels, np.ascontiguousarray(brain), vessels


# --------------------------------------------------------------------------- sources


def _hrf(tr: float) -> np.ndarray:
    """Gamma haemodynamic response sampled at ``tr`` (peak ~2.3 s), unit peak."""
    t = np.arange(0, 20, tr)
    shape, scale = 6.0, 0.45
    h = t ** (shape - 1) * np.exp(-t / scale)
    return h / h.max()


def _source_maps(rng: np.random.Generator, grid: _Grid, brain: np.ndarray, n_sources: int):
    """Localized, non-negative footprints (peak 1) inside the brain; sources 0 and 1 overlap."""
    nz = grid.shape[0]
    maps = np.zeros((n_sources, *grid.shape))
    centres: list[np.ndarray] = []
    sigmas: list[np.ndarray] = []
    surface_depth = grid.ly * 0.13
    for k in range(n_sources):
        sig = np.array(
            [
                rng.uniform(0.4, 1.0) if nz > 1 else 1.0,
                rng.uniform(0.07, 0.12) * grid.ly,
                rng.uniform(0.06, 0.10) * grid.lx,
            ]
        )
        for _attempt in range(200):
            if k == 1:  # overlap with source 0 on purpose
                theta = rng.uniform(0, 2 * np.pi)
                offset = _PAIR_DISTANCE * sigmas[0] * np.array([0.0, np.sin(theta), np.cos(theta)])
                c = centres[0] + offset
            else:
                c = np.array(
                    [
                        rng.uniform(0.2, 0.8) * grid.lz,
                        rng.uniform(surface_depth + 0.08 * grid.ly, 0.9 * grid.ly),
                        rng.uniform(0.12, 0.88) * grid.lx,
                    ]
                )
            inside = (
                0.05 * grid.ly + surface_depth <= c[1] <= 0.95 * grid.ly
                and 0.05 * grid.lx <= c[2] <= 0.95 * grid.lx
            )
            far = k == 1 or all(
                np.linalg.norm(((c - ck) / ((sig + sk) / 2))[1:]) > _MIN_DISTANCE
                for ck, sk in zip(centres, sigmas, strict=True)
            )
            if inside and far:
                break
        centres.append(c)
        sigmas.append(sig)
        d2 = ((grid.Y - c[1]) / sig[1]) ** 2 + ((grid.X - c[2]) / sig[2]) ** 2
        if nz > 1:
            d2 = d2 + ((grid.Z - c[0]) / sig[0]) ** 2
        m = np.exp(-0.5 * d2) * brain
        m[m < 0.02] = 0.0
        maps[k] = m / m.max()
    return maps, np.array(centres), np.array(sigmas)


def _source_timecourses(rng: np.random.Generator, n_frames: int, n_sources: int, tr: float):
    """Non-negative unit-peak activity u_k(t): sparse events * gamma HRF + slow fluctuation.

    Event onsets are spread over the recording on a jittered grid and dealt out
    to the sources at random, so two sources rarely start an event together
    (independent Poisson trains over a 90 s test recording often coincide and
    make the sources correlated by chance).
    """
    h = _hrf(tr)
    duration = n_frames * tr
    per_source = max(round(duration / 14.0), 4)
    n_total = per_source * n_sources
    spacing = n_frames / n_total
    onsets = (np.arange(n_total) + 0.5 + rng.uniform(-0.3, 0.3, n_total)) * spacing
    onsets = np.clip(onsets.astype(int), 0, n_frames - 1)
    owner = rng.permutation(np.repeat(np.arange(n_sources), per_source))
    sizes = rng.uniform(0.5, 1.0, n_total)
    u = np.zeros((n_frames, n_sources))
    for k in range(n_sources):
        events = np.zeros(n_frames)
        np.add.at(events, onsets[owner == k], sizes[owner == k])
        # some sources have sustained (up to ~1.5 s) rather than impulse-like events
        events = ndimage.maximum_filter1d(events, size=int(rng.integers(1, 6)))
        resp = np.convolve(events, h)[:n_frames]
        resp /= resp.max() + 1e-12
        slow = _lowpass_series(rng, n_frames, 8.0 / tr)
        x = resp + _SLOW_WEIGHT * slow
        x -= x.min()
        u[:, k] = x / x.max()
    return u


# --------------------------------------------------------------------------- motion


def _motion(
    rng, n_frames: int, tr: float, grid: _Grid, max_shift_voxels: float, max_rotation_deg: float
):
    """Per-frame (tx, ty, rz): slow wander + abrupt jumps; returns params and event frames."""
    lim = np.array([max_shift_voxels * grid.dx, max_shift_voxels * grid.dy, max_rotation_deg])
    wander = np.stack([_lowpass_series(rng, n_frames, 20.0 / tr) for _ in range(3)], axis=1)
    wander = wander / np.abs(wander).max(axis=0) * lim * np.array([0.25, 0.25, 0.3])
    levels = np.zeros((n_frames, 3))
    duration = n_frames * tr
    n_jumps = max(2, round(duration / 55.0))
    # jump frames spread over the recording with a minimum separation
    lo, hi = int(0.12 * n_frames), int(0.95 * n_frames)
    min_sep = max((hi - lo) // (2 * n_jumps), 3)
    jumps: list[int] = []
    while len(jumps) < n_jumps:
        j = int(rng.integers(lo, hi))
        if all(abs(j - o) >= min_sep for o in jumps):
            jumps.append(j)
    jumps.sort()
    events = []
    current = np.zeros(3)
    for i, j in enumerate(jumps):
        end = jumps[i + 1] if i + 1 < len(jumps) else n_frames
        new = rng.uniform(-1, 1, 3) * lim * np.array([0.6, 0.6, 0.65])
        ramp = int(rng.integers(1, 3))
        if rng.random() < 0.35:  # short excursion, then back to where it was
            length = int(rng.integers(3, 10))
            stop = min(j + length, end)
            levels[j:stop] = current + 1.3 * (new - current)
            levels[stop:end] = current
        else:
            for r in range(ramp):  # the move takes a frame or two
                if j + r < end:
                    levels[j + r] = current + (new - current) * (r + 1) / (ramp + 1)
            levels[j + ramp : end] = new
            current = new
        events.append(j)
    params = np.clip(wander + levels, -lim, lim)
    return params, np.array(events, dtype=int)


def _apply_motion(
    frames: np.ndarray, params: np.ndarray, grid: _Grid, warp=None
) -> np.ndarray:
    """Move each frame's content by its (tx, ty, rz), resampling in physical mm space.

    ``warp = (field, course)`` adds a non-rigid displacement ``course[t] * field``
    (field ``(2, z, y, x)`` in mm, y then x), applied to the content before the
    rigid move (to first order: sampled at the output position).
    """
    n_frames = frames.shape[0]
    nz, ny, nx = grid.shape
    # output positions q relative to the field-of-view centre, in mm
    qy = (np.arange(ny) - (ny - 1) / 2)[:, None] * grid.dy
    qx = (np.arange(nx) - (nx - 1) / 2)[None, :] * grid.dx
    out = np.empty_like(frames)
    for t in range(n_frames):
        tx, ty, rz = params[t]
        a = 0.0 if warp is None else float(warp[1][t])
        if tx == 0 and ty == 0 and rz == 0 and a == 0:
            out[t] = frames[t]
            continue
        c, s = np.cos(np.deg2rad(rz)), np.sin(np.deg2rad(rz))
        # content at p moves to q = R (p - c) + c + t  =>  p - c = R^T (q - c - t)
        ux, uy = qx - tx, qy - ty
        px = c * ux + s * uy
        py = -s * ux + c * uy
        for z in range(nz):
            wy = py - a * warp[0][0, z] if a else py
            wx = px - a * warp[0][1, z] if a else px
            coords = np.stack([wy / grid.dy + (ny - 1) / 2, wx / grid.dx + (nx - 1) / 2])
            frame = frames[t, z]
            moved = ndimage.map_coordinates(frame, coords, order=3, mode="nearest")
            out[t, z] = np.maximum(moved, 0.5 * frame.min())
    return out


def _correlated_speckle(rng, shape, grid: _Grid, sd: float) -> np.ndarray:
    """Log-normal multiplicative noise, mean 1, s.d. ``sd``, correlated in space and time.

    Gaussian white noise is smoothed over the point-spread function (speckle
    grains are PSF-sized) and filtered by an AR(1) over frames, rescaled to unit
    variance, then exponentiated so the s.d. of the factor is ``sd``.
    """
    n_frames = shape[0]
    g = rng.standard_normal(shape)
    sigma = (0.0, *grid.sigma_vox(_NOISE_SIGMA_MM[0], _NOISE_SIGMA_MM[1], _PSF_MM["z"]))
    g = ndimage.gaussian_filter(g, sigma, mode="reflect")
    for t in range(1, n_frames):  # AR(1): stationary variance after rescaling below
        g[t] = _NOISE_AR1 * g[t - 1] + math.sqrt(1 - _NOISE_AR1**2) * g[t]
    g /= g.std() + 1e-12
    s2 = math.log(1.0 + sd**2)  # log-normal with mean 1 and s.d. sd
    return np.exp(math.sqrt(s2) * g - s2 / 2)


# --------------------------------------------------------------------------- main entry


def simulate_recording(
    preset: str = "default",
    seed: int = 0,
    *,
    n_frames: int | None = None,
    shape: tuple[int, int, int] | None = None,
    motion: bool = True,
    drift: bool = True,
    global_signal: bool = True,
    surges: bool = True,
    noise: bool = True,
    n_sources: int | None = None,
    max_shift_voxels: float = 2.0,
    max_rotation_deg: float = 1.0,
    free_surges: bool = True,
    vasomotion: bool = True,
    vessel_response: bool = True,
    correlated_noise: bool = True,
    nonrigid: bool = True,
    through_slice: bool = True,
    nuisance: bool = True,
    source_amplitude: tuple[float, float] = SOURCE_AMPLITUDE,
    noise_sd: float = SPECKLE_SD,
) -> xr.Dataset:
    """Simulate a fUSI Power Doppler recording with its ground truth.

    See the module docstring for what is simulated and why. Every effect draws
    from its own random stream derived from ``seed``, so switching an effect off
    (``motion=False`` etc.) leaves all other numbers identical.

    Parameters
    ----------
    preset : {"default", "small"}
        ``"default"``: the real recording's size, 751 frames of (z, y, x) =
        (1, 114, 80). ``"small"``: 300 frames of (1, 48, 40), for tests.
    seed : int
        Seed of :func:`numpy.random.default_rng`; same arguments and seed give
        identical arrays.
    n_frames, shape : optional
        Override the preset's frame count and ``(z, y, x)`` shape (``z > 1``
        gives a 3-D recording; its motion stays in-plane).
    motion, drift, global_signal, surges, noise : bool
        Switch each effect on or off (the ground truth always describes the
        effects switched on: ``motion`` is all zeros when ``motion=False``).
    n_sources : int, optional
        Number of planted sources (default 6); at least one is a decrease.
    max_shift_voxels, max_rotation_deg : float
        Bounds of the rigid motion, per translation axis in voxels and in degrees.
    free_surges, vasomotion, vessel_response, correlated_noise, nonrigid, through_slice : bool
        Switch each real-data trait of the module docstring on or off (all on by
        default): power surges with no motion jump, the vessels' own slow
        fluctuation, sources changing parenchyma more than large vessels,
        spatially and temporally correlated noise, slow non-rigid deformation,
        and the through-slice intensity change at motion events.
    nuisance : bool, default=True
        ``False`` is the "no motion, no nuisance" recording: it switches off
        ``motion``, ``drift``, ``global_signal``, ``surges``, ``free_surges``,
        ``vasomotion``, ``nonrigid`` and ``through_slice`` whatever they are set
        to, and keeps the sources (with ``vessel_response``) and the noise
        exactly as they are (same streams), so it is the same recording with
        only its nuisances removed: the ceiling of any pipeline run on it.
    source_amplitude : (float, float), default=(0.2, 0.35)
        Range of the sources' peak fractional power change (drawn uniformly;
        the same seed gives the same position in the range for any range).
    noise_sd : float, default=SPECKLE_SD (0.063)
        s.d. of the multiplicative per-frame noise (fraction of power); 0
        leaves only the additive floor.

    Returns
    -------
    xarray.Dataset
        ``power_doppler`` (time, z, y, x) float32, the recording, with the
        coords and attrs of a loaded recording; ``clean`` (time, z, y, x) =
        ``baseline * (1 + sum_k source_maps * source_timecourses)`` (no noise,
        motion, drift, global fluctuation or surges); ``baseline`` (z, y, x);
        ``source_maps`` (source, z, y, x), non-negative, peak 1;
        ``source_timecourses`` (time, source), the signed fractional power
        change; ``source_sign`` (source), +1 or -1; ``motion`` (time, parameter)
        with parameters ``tx, ty`` (mm) and ``rz`` (degrees); ``motion_events``
        (time) bool, frames where an abrupt move starts; and the effect terms
        ``drift``, ``global_fluctuation`` (time) and ``surge`` (time).

    Examples
    --------
    >>> sim = simulate_recording("small", seed=0)
    >>> sim.power_doppler.dims
    ('time', 'z', 'y', 'x')
    """
    preset_frames, preset_shape = _check_preset(preset)
    seed = _check_int(seed, "seed", 0)
    n_frames = preset_frames if n_frames is None else _check_int(n_frames, "n_frames", 40)
    if shape is None:
        shape = preset_shape
    else:
        if len(tuple(shape)) != 3:
            raise ValueError(f"shape must be (z, y, x), got {shape!r}.")
        shape = tuple(
            _check_int(s, f"shape[{i}]", 1 if i == 0 else 16) for i, s in enumerate(shape)
        )
    n_sources = 6 if n_sources is None else _check_int(n_sources, "n_sources", 1)
    lo_amp, hi_amp = (float(a) for a in source_amplitude)
    if not 0 <= lo_amp <= hi_amp <= 5:
        raise ValueError(
            f"source_amplitude must be (low, high) with 0 <= low <= high <= 5 (fractions of "
            f"baseline power), got {source_amplitude!r}."
        )
    if not 0 <= float(noise_sd) < 1:
        raise ValueError(f"noise_sd must lie in [0, 1) (a fraction of power), got {noise_sd!r}.")
    if not nuisance:
        motion = drift = global_signal = surges = free_surges = False
        vasomotion = nonrigid = through_slice = False
    if not (0 <= max_shift_voxels <= 10) or not (0 <= max_rotation_deg <= 10):
        raise ValueError(
            "max_shift_voxels and max_rotation_deg must lie in [0, 10], got "
            f"{max_shift_voxels!r} and {max_rotation_deg!r}."
        )

    tr = REPETITION_TIME_S
    grid = _Grid(shape)
    # spawn(n) children do not depend on n: the first 8 streams are those of version 1
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(13)]
    rng_base, rng_maps, rng_tc, rng_motion, rng_surge, rng_drift, rng_noise, rng_sign = streams[:8]
    rng_free, rng_vaso, rng_cnoise, rng_warp, rng_slice = streams[8:]

    baseline, brain, vessels = _baseline(rng_base, grid)
    maps, _, _ = _source_maps(rng_maps, grid, brain, n_sources)
    vessel_frac_img = np.clip(vessels / baseline, 0.0, 1.0)
    if vessel_response:
        # blood volume changes less, in relative terms, where it is already large
        maps = maps * (1.0 - _VESSEL_RESPONSE * vessel_frac_img)[None]
        maps /= maps.reshape(n_sources, -1).max(axis=1)[:, None, None, None]
    u = _source_timecourses(rng_tc, n_frames, n_sources, tr)
    n_neg = max(1, round(n_sources / 3))
    sign = np.ones(n_sources)
    sign[rng_sign.choice(n_sources, size=n_neg, replace=False)] = -1.0
    amp = lo_amp + (hi_amp - lo_amp) * rng_sign.uniform(0.0, 1.0, n_sources)
    tc = u * (sign * amp)[None, :]  # (time, source)

    n_vox = int(np.prod(shape))
    clean = baseline.reshape(1, n_vox) * (1.0 + tc @ maps.reshape(n_sources, n_vox))

    motion_params, events = _motion(
        rng_motion, n_frames, tr, grid, max_shift_voxels, max_rotation_deg
    )

    # brain-attached multiplicative effects, each (time, voxels) or (time, 1)
    gain = np.ones((n_frames, n_vox))
    t_norm = np.linspace(-1.0, 1.0, n_frames)
    vessel_frac = (vessels / baseline).reshape(1, n_vox)
    # drift: global trend + spatially varying trend + slow wander
    g_trend = rng_drift.uniform(0.5, 1.0) * rng_drift.choice([-1, 1]) * _DRIFT_GLOBAL
    trend = g_trend * (0.5 * t_norm + 0.5 * (1 - np.exp(-(t_norm + 1) * 1.5)) - 0.25)
    local = _DRIFT_LOCAL * _smooth_noise(rng_drift, shape, grid.sigma_vox(1.5, 1.0, 1.0))
    local_course = 0.6 * t_norm + 0.4 * _lowpass_series(rng_drift, n_frames, 40.0 / tr)
    drift_global = trend + 0.03 * _lowpass_series(rng_drift, n_frames, 60.0 / tr)
    global_course = _GLOBAL_STD * _lowpass_series(rng_drift, n_frames, 1.2 / tr)
    if drift:
        gain *= (1.0 + drift_global[:, None]) * (
            1.0 + local_course[:, None] * local.reshape(1, n_vox)
        )
    if global_signal:
        gain *= 1.0 + global_course[:, None] * (0.6 + 0.8 * vessel_frac)
    # surges: 1-3 frames of extra power at each motion event, stronger in parenchyma
    surge_course = np.zeros(n_frames)
    for j in events:
        length = int(rng_surge.integers(1, 4))
        peak = rng_surge.uniform(*_SURGE_RANGE)
        profile = peak * np.array([1.0, 0.6, 0.3])[:length]
        surge_course[j : j + length] += profile[: max(0, min(length, n_frames - j))]
    surge_map = np.clip(
        1.0 + 0.3 * _smooth_noise(rng_surge, shape, grid.sigma_vox(1.0, 0.8, 1.0)), 0.3, None
    )
    surge_map = surge_map.reshape(1, n_vox) * (1.2 - 0.8 * vessel_frac)
    if surges:
        gain *= 1.0 + surge_course[:, None] * surge_map
    # free surges: the same kind of power burst with no image displacement
    free_course = np.zeros(n_frames)
    n_free = int(rng_free.poisson(_FREE_SURGE_RATE * n_frames * tr))
    for j in rng_free.integers(0, n_frames, n_free):
        length = int(rng_free.integers(1, 4))
        profile = rng_free.uniform(*_FREE_SURGE_RANGE) * np.array([1.0, 0.6, 0.3])[:length]
        free_course[j : j + length] += profile[: max(0, min(length, n_frames - j))]
    if free_surges:
        gain *= 1.0 + free_course[:, None] * surge_map
    # vasomotion: each vessel territory has its own ~0.1 Hz fluctuation
    n_terr = 4
    terr = np.stack(
        [_smooth_noise(rng_vaso, shape, grid.sigma_vox(0.6, 0.4, 1.0)) for _ in range(n_terr)]
    )
    terr = np.exp(3.0 * terr) / np.exp(3.0 * terr).sum(axis=0)  # soft partition
    wide = 1.0 / (2 * np.pi * _VASOMOTION_HZ * tr)  # frames
    vaso_courses = np.stack(
        [
            _lowpass_series(rng_vaso, n_frames, 0.5 * wide) - _lowpass_series(rng_vaso, n_frames,
                                                                              3.0 * wide)
            for _ in range(n_terr)
        ],
        axis=1,
    )
    vaso_courses /= vaso_courses.std(axis=0) + 1e-12
    vaso = (vaso_courses @ terr.reshape(n_terr, n_vox)) * vessel_frac_img.reshape(1, n_vox)
    if vasomotion:
        gain *= 1.0 + _VASOMOTION_STD * vaso
    # through-slice change: an elevation move brings other vessels into the slice
    slice_pattern = _smooth_noise(rng_slice, shape, grid.sigma_vox(0.06, 0.05, 0.3))
    slice_pattern = (slice_pattern * (0.3 + vessel_frac_img)).reshape(1, n_vox)
    slice_level = np.zeros(n_frames)
    for j in events:
        slice_level[j:] = rng_slice.uniform(-1.0, 1.0)
    if through_slice:
        gain *= np.clip(1.0 + _THROUGH_SLICE * slice_level[:, None] * slice_pattern, 0.2, None)

    signal = (clean * gain).reshape(n_frames, *shape)
    # slow non-rigid deformation (swelling, pressure): a smooth displacement field
    warp_field = np.stack(
        [_smooth_noise(rng_warp, shape, grid.sigma_vox(0.8, 0.6, 1.0)) for _ in range(2)]
    )
    warp_field *= _NONRIGID_MM / (np.abs(warp_field).max() + 1e-12)
    warp_course = _lowpass_series(rng_warp, n_frames, 30.0 / tr)
    warp_course /= np.abs(warp_course).max() + 1e-12
    if not motion:
        motion_params = np.zeros_like(motion_params)
    if motion or nonrigid:
        warp = (warp_field, warp_course) if nonrigid else None
        signal = _apply_motion(signal, motion_params, grid, warp=warp)

    # measurement noise: drawn even when switched off so the streams stay aligned
    sd = float(noise_sd)
    if sd > 0:
        speckle = rng_noise.gamma(1.0 / sd**2, sd**2, signal.shape)
    else:
        speckle = np.ones(signal.shape)
    additive = rng_noise.normal(0.0, _ADDITIVE_NOISE, signal.shape)
    if correlated_noise and sd > 0:
        speckle = _correlated_speckle(rng_cnoise, signal.shape, grid, sd)
    if noise:
        signal = signal * speckle + additive
    recording = np.maximum(signal, 1.0).astype(np.float32)

    time = np.round(FIRST_ONSET_S + tr * np.arange(n_frames), 6)
    coords = _coords(grid, time)
    rec_attrs = {
        "repetition_time": tr,
        "delay_after_trigger": FIRST_ONSET_S,
        "task_name": TASK,
        "source_file": f"simulate_recording(preset={preset!r}, seed={seed})",
        "simulation_note": "Simulated by fusi_nmf.simulate; not a measurement.",
    }
    space = ("z", "y", "x")
    sim = xr.Dataset(
        {
            "power_doppler": (("time", *space), recording, rec_attrs),
            "clean": (
                ("time", *space),
                clean.reshape(n_frames, *shape).astype(np.float32),
                {"description": "baseline * (1 + sum_k source_maps * source_timecourses)"},
            ),
            "baseline": (
                space,
                baseline.astype(np.float32),
                {"description": "vessel-dominated baseline power"},
            ),
            "source_maps": (
                ("source", *space),
                maps.astype(np.float32),
                {"description": "non-negative spatial footprints, peak 1"},
            ),
            "source_timecourses": (
                ("time", "source"),
                tc,
                {"description": "signed fractional power change of each source"},
            ),
            "source_sign": (
                ("source",),
                sign.astype(np.int8),
                {"description": "+1 increase, -1 decrease"},
            ),
            "motion": (
                ("time", "parameter"),
                motion_params,
                {
                    "description": "content at p moves to R(p - c) + c + t, c = FOV centre",
                    "units": "mm, mm, deg",
                },
            ),
            "motion_events": (("time",), np.isin(np.arange(n_frames), events) & bool(motion)),
            "drift": (
                ("time",),
                (1.0 + drift_global) if drift else np.ones(n_frames),
                {"description": "global drift factor (the spatial drift field is not stored)"},
            ),
            "global_fluctuation": (
                ("time",),
                global_course if global_signal else np.zeros(n_frames),
                {"description": "shared fractional fluctuation (vessel-weighted)"},
            ),
            "surge": (
                ("time",),
                surge_course if surges else np.zeros(n_frames),
                {"description": "peak fractional power surge at motion events"},
            ),
            "free_surge": (
                ("time",),
                free_course if free_surges else np.zeros(n_frames),
                {"description": "peak fractional power surge with no motion jump"},
            ),
            "through_slice": (
                ("time",),
                slice_level if through_slice else np.zeros(n_frames),
                {"description": "through-slice level (-1..1) scaling the intensity pattern"},
            ),
            "nonrigid": (
                ("time",),
                _NONRIGID_MM * warp_course if nonrigid else np.zeros(n_frames),
                {"description": "signed peak non-rigid displacement (mm)", "units": "mm"},
            ),
        },
        coords={**coords, "source": np.arange(n_sources), "parameter": ["tx", "ty", "rz"]},
        attrs={
            "title": "fusi-nmf simulated fUSI Power Doppler recording",
            "preset": preset,
            "seed": seed,
            "simulator_version": SIMULATOR_VERSION,
            "fusi_nmf_version": __version__,
            "motion": int(motion),
            "drift": int(drift),
            "global_signal": int(global_signal),
            "surges": int(surges),
            "noise": int(noise),
            "free_surges": int(free_surges),
            "vasomotion": int(vasomotion),
            "vessel_response": int(vessel_response),
            "correlated_noise": int(correlated_noise),
            "nonrigid": int(nonrigid),
            "through_slice": int(through_slice),
            "source_amplitude": np.array([lo_amp, hi_amp]),
            "noise_sd": sd,
            "n_sources": n_sources,
            "max_shift_voxels": float(max_shift_voxels),
            "max_rotation_deg": float(max_rotation_deg),
        },
    )
    sim["power_doppler"].name = "power_doppler"
    return sim


def _coords(grid: _Grid, time: np.ndarray) -> dict[str, xr.Variable]:
    return {
        "time": xr.Variable(("time",), time, {"units": "s"}),
        "z": xr.Variable(("z",), grid.z, {"units": "mm", "voxdim": grid.dz}),
        "y": xr.Variable(("y",), grid.y, {"units": "mm", "voxdim": grid.dy}),
        "x": xr.Variable(("x",), grid.x, {"units": "mm", "voxdim": grid.dx}),
    }


# --------------------------------------------------------------------------- files


def recording_path(root: str | os.PathLike) -> Path:
    """Path of the ``_pwd.nii.gz`` inside a simulated (or real-layout) BIDS root."""
    return Path(root) / f"sub-{SUBJECT}" / f"ses-{SESSION}" / "fusi" / f"{_STEM}_pwd.nii.gz"


def ground_truth_path(root: str | os.PathLike) -> Path:
    """Path of the ground-truth NetCDF inside a simulated BIDS root."""
    return (
        Path(root)
        / "derivatives"
        / "simulation"
        / f"sub-{SUBJECT}"
        / f"ses-{SESSION}"
        / "fusi"
        / f"{_STEM}_desc-groundtruth.nc"
    )


def _netcdf_safe(value: Any) -> Any:
    """Attribute values netCDF3 can store: str, numbers, 1-D numeric arrays."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, str | int | float | np.number):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.dtype.kind in "iuf" and arr.ndim == 1:
            return arr
    return json.dumps(value, default=str)


def _ground_truth_dataset(sim: xr.Dataset) -> xr.Dataset:
    gt = sim.drop_vars("power_doppler").copy()
    gt["motion_events"] = gt["motion_events"].astype(np.int8)
    gt.attrs = {k: _netcdf_safe(v) for k, v in gt.attrs.items()}
    for var in gt.variables.values():
        var.attrs = {k: _netcdf_safe(v) for k, v in var.attrs.items()}
    return gt


# Frame timing written by default, after the real recording's converter output: onsets
# (VolumeTiming) with jitter and one long interval, pixdim[4] = 0, no RepetitionTime.
ONSET_JITTER_S = 0.002  # s.d. of the onset jitter (assumed; the real onsets are rounded to ms)
LONG_INTERVAL_S = 0.087  # extra time in one interval: the real onsets span 225.087 s, not 225.0
TIMINGS = ("converter", "regular")


def converter_timing(sim: xr.Dataset, *, dropped_frames: int = 0, seed: int | None = None
                     ) -> xr.Dataset:
    """Put a simulation on irregular frame onsets like the real converter's, dropping frames.

    Frame ``i`` of the simulation gets the onset ``10.608 + 0.3 i`` plus Gaussian jitter
    (:data:`ONSET_JITTER_S`), and every frame from a random one in the middle half on
    comes :data:`LONG_INTERVAL_S` later (one long interval, as in the real recording).
    ``dropped_frames`` frames (never the first or last) are then removed from the
    recording and from every ground-truth variable alike. The truth therefore lives at
    the frame onsets, exactly like the recording: the simulated signal of frame ``i``
    *is* the signal at its onset. (The model generates its dynamics per frame, so the
    ms jitter and the one 87 ms shift are a slight time warp of the modelled process,
    negligible at haemodynamic time scales; truth and recording share it exactly.) The
    onsets use their own random stream (from ``seed``), so the rest of the simulation
    is unchanged.

    Parameters
    ----------
    sim : xarray.Dataset
        Output of :func:`simulate_recording` (regular time).
    dropped_frames : int, default 0
    seed : int, optional
        Default: ``sim.attrs["seed"]``.

    Returns
    -------
    xarray.Dataset
        The same variables on the new onsets; ``attrs["timing"]`` describes them.
    """
    dropped_frames = _check_int(dropped_frames, "dropped_frames", 0)
    n = sim.sizes["time"]
    if dropped_frames > n // 10:
        raise ValueError(f"dropped_frames={dropped_frames} is more than a tenth of the {n} frames.")
    seed = int(sim.attrs.get("seed", 0) if seed is None else seed)
    rng = np.random.default_rng([seed, 0x7157])  # own stream: the model is untouched
    onsets = FIRST_ONSET_S + REPETITION_TIME_S * np.arange(n) + rng.normal(0, ONSET_JITTER_S, n)
    onsets[0] = FIRST_ONSET_S
    long_at = int(rng.integers(n // 4, 3 * n // 4))
    onsets[long_at:] += LONG_INTERVAL_S
    onsets = np.round(onsets, 6)
    drop = np.sort(rng.choice(np.arange(1, n - 1), dropped_frames, replace=False))
    out = sim.assign_coords(time=xr.Variable("time", onsets, {"units": "s"}))
    if drop.size:
        out = out.drop_isel(time=drop)
    pd_attrs = {k: v for k, v in sim["power_doppler"].attrs.items()
                if k not in ("repetition_time", "delay_after_trigger")}
    pd_attrs |= {"frame_acquisition_duration": REPETITION_TIME_S,
                 "power_doppler_integration_duration": REPETITION_TIME_S,
                 "power_doppler_integration_stride": REPETITION_TIME_S}
    out["power_doppler"].attrs = pd_attrs
    out.attrs = dict(sim.attrs) | {
        "timing": (f"converter-like onsets: {REPETITION_TIME_S} s step, {ONSET_JITTER_S * 1e3:g} "
                   f"ms jitter, {LONG_INTERVAL_S * 1e3:g} ms extra before frame {long_at}, "
                   f"dropped frames {[int(i) for i in drop]}; truth at the onsets"),
        "dropped_frames": [int(i) for i in drop],
    }
    return out


def write_simulated_dataset(
    root: str | os.PathLike,
    sim: xr.Dataset | None = None,
    *,
    preset: str = "default",
    seed: int = 0,
    timing: str = "converter",
    dropped_frames: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write a simulated recording in the real dataset's BIDS layout and file conventions.

    Writes ``root/dataset_description.json``, the recording
    ``root/sub-sim01/ses-20201011/fusi/sub-sim01_ses-20201011_task-spontaneous_acq-slice03_pwd.nii.gz``
    with its JSON sidecar (via :func:`fusi_nmf.io.save_recording`), and the
    ground truth as NetCDF under ``root/derivatives/simulation/...`` (read it
    with :func:`load_ground_truth`). Every file is written atomically.

    By default (``timing="converter"``) the files follow the real dataset's converter:
    the affine as the qform only (``sform_code`` 0), ``pixdim[4] = 0``, the frame
    onsets as ``VolumeTiming`` with jitter and one long interval (see
    :func:`converter_timing`), ``FrameAcquisitionDuration``/``PowerDopplerIntegration*``
    0.3 s and no ``RepetitionTime``; so the default book exercises the path real data
    take (the pipeline's timing stage). The ground truth is written on the same onsets.

    Parameters
    ----------
    root : path
        BIDS root folder (created if needed).
    sim : xarray.Dataset, optional
        Output of :func:`simulate_recording`; simulated from ``preset`` and
        ``seed`` when not given.
    preset, seed
        Passed to :func:`simulate_recording` when ``sim`` is None.
    timing : {"converter", "regular"}, default "converter"
        ``"regular"`` writes ``sim`` on its own (regular) time grid with
        ``RepetitionTime``, sform and qform.
    dropped_frames : int, default 0
        With ``timing="converter"``: frames removed (recording and truth), as an
        acquisition that drops frames.
    progress : bool, optional
        Print progress lines (default: the ``FUSI_NMF_PROGRESS`` setting).

    Returns
    -------
    pathlib.Path
        Path of the ``_pwd.nii.gz``.
    """
    root = Path(root)
    if sim is None:
        status(f"simulating preset={preset!r} seed={seed} ...", progress)
        sim = simulate_recording(preset, seed)
    elif not isinstance(sim, xr.Dataset) or "power_doppler" not in sim:
        raise TypeError(
            "sim must be the xarray.Dataset returned by simulate_recording (with a "
            f"'power_doppler' variable), got {type(sim).__name__}."
        )
    preset = str(sim.attrs.get("preset", preset))
    seed = int(sim.attrs.get("seed", seed))
    if timing not in TIMINGS:
        raise ValueError(f"timing={timing!r} is not one of {TIMINGS}.")
    if timing == "converter":
        sim = converter_timing(sim, dropped_frames=dropped_frames, seed=seed)
    elif dropped_frames:
        raise ValueError("dropped_frames needs timing='converter'.")
    root.mkdir(parents=True, exist_ok=True)
    write_json(
        root / "dataset_description.json",
        {
            "Name": f"fusi-nmf simulated fUSI recording (preset {preset}, seed {seed})",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0-1.0",
            "Authors": ["fusi-nmf simulator"],
            "GeneratedBy": [
                {
                    "Name": "fusi-nmf",
                    "Version": __version__,
                    "Description": f"fusi_nmf.simulate.simulate_recording v{SIMULATOR_VERSION}",
                }
            ],
            "SimulationNote": (
                "SIMULATED data, not a measurement (subject sim01). Shape, voxel size, frame "
                "timing conventions and file layout mimic sub-CR022 ses-20201011 slice03 of the "
                "real fUSI dataset; the ground truth (source maps and time courses, motion, clean "
                "signal, at the frame onsets) is in derivatives/simulation."
            ),
        },
    )
    nii = recording_path(root)
    status(f"writing {nii}", progress)
    save_recording(sim["power_doppler"], nii, qform_only=timing == "converter")
    _ensure_sidecar(nii)

    deriv = root / "derivatives" / "simulation"
    write_json(
        deriv / "dataset_description.json",
        {
            "Name": "fusi-nmf simulation ground truth",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fusi-nmf", "Version": __version__}],
            "License": "CC0-1.0",
        },
    )
    gt_path = ground_truth_path(root)
    with atomic_path(gt_path) as tmp:
        _ground_truth_dataset(sim).to_netcdf(tmp, engine="scipy")
    return nii


def _sidecar_path(nii: Path) -> Path:
    return nii.with_name(nii.name[: -len(".nii.gz")] + ".json")


def _ensure_sidecar(nii: Path) -> None:
    """Make sure the sidecar names the task and says the data are simulated."""
    side = _sidecar_path(nii)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    if meta.get("TaskName") != TASK or "SimulationNote" not in meta:
        meta["TaskName"] = TASK
        meta["SimulationNote"] = "Simulated by fusi_nmf.simulate; not a measurement."
        write_json(side, meta)


def load_ground_truth(path: str | os.PathLike) -> xr.Dataset:
    """Load a simulated recording's ground truth.

    Parameters
    ----------
    path : path
        The simulated BIDS root, its ``_pwd.nii.gz``, or the ground-truth ``.nc``.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`simulate_recording` except ``power_doppler``
        (load that with :func:`fusi_nmf.io.load_recording`), fully in memory.
    """
    path = Path(path)
    if path.is_dir():
        nc = ground_truth_path(path)
        if not nc.exists():
            found = sorted(path.glob("derivatives/simulation/**/*_desc-groundtruth.nc"))
            if len(found) != 1:
                raise FileNotFoundError(
                    f"No ground truth under {path}: expected {nc}. Is this a simulated dataset "
                    "(made by fusi_nmf.simulate.simulated_dataset or write_simulated_dataset)?"
                )
            nc = found[0]
    elif path.name.endswith("_pwd.nii.gz"):
        root = path.parents[3]
        nc = (
            root
            / "derivatives"
            / "simulation"
            / path.parents[2].name
            / path.parents[1].name
            / path.parent.name
            / (path.name[: -len("_pwd.nii.gz")] + "_desc-groundtruth.nc")
        )
    else:
        nc = path
    if not nc.exists():
        raise FileNotFoundError(
            f"Ground-truth file {nc} not found (from {path}); only simulated recordings have "
            "one. Regenerate with fusi_nmf.simulate.simulated_dataset()."
        )
    with xr.open_dataset(nc, engine="scipy") as ds:
        gt = ds.load()
    if "motion_events" in gt:
        gt["motion_events"] = gt["motion_events"].astype(bool)
    gt["parameter"] = gt["parameter"].astype(str)
    return gt


# --------------------------------------------------------------------------- cache


def _manifest_files(root: Path) -> list[Path]:
    nii = recording_path(root)
    return [
        root / "dataset_description.json",
        nii,
        _sidecar_path(nii),
        root / "derivatives" / "simulation" / "dataset_description.json",
        ground_truth_path(root),
    ]


def _verify(root: Path, preset: str, seed: int) -> str | None:
    """Return None when ``root`` holds a complete, intact dataset, else the reason it does not."""
    manifest = root / MANIFEST_NAME
    if not manifest.exists():
        return "no manifest (never generated, or generation was interrupted)"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable manifest"
    expected = {"simulator_version": SIMULATOR_VERSION, "preset": preset, "seed": seed}
    for key, value in expected.items():
        if meta.get(key) != value:
            return f"manifest {key}={meta.get(key)!r}, expected {value!r}"
    for rel, digest in meta.get("files", {}).items():
        f = root / rel
        if not f.exists():
            return f"missing file {rel}"
        if file_digest(f) != digest:
            return f"checksum mismatch for {rel}"
    if not meta.get("files"):
        return "empty manifest"
    return None


def simulated_dataset(
    preset: str = "default",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Return the BIDS root of the embedded simulated dataset, generating it once.

    The dataset lives in ``data_home(data_dir) / "simulated" / f"{preset}-seed{seed}"``.
    A sha256 manifest written after generation is checked on every call; a
    missing, partial or modified dataset is regenerated (with a message).

    Parameters
    ----------
    preset : {"default", "small"}
        Simulator preset (see :func:`simulate_recording`).
    seed : int
        Simulator seed.
    data_dir : path, optional
        Data/cache folder (default ``$FUSI_NMF_DATA`` or ``~/.cache/fusi-nmf``).
    progress : bool, optional
        Print progress lines (default: the ``FUSI_NMF_PROGRESS`` setting).

    Returns
    -------
    pathlib.Path
        The BIDS root; the recording is ``recording_path(root)`` and the ground
        truth loads with :func:`load_ground_truth`.
    """
    _check_preset(preset)
    seed = _check_int(seed, "seed", 0)
    root = data_home(data_dir) / "simulated" / f"{preset}-seed{seed}"
    problem = _verify(root, preset, seed)
    if problem is None:
        return root
    if root.exists() and any(root.iterdir()):
        status(f"simulated dataset at {root} is not intact ({problem}); regenerating", progress)
        # remove only what this function writes
        (root / MANIFEST_NAME).unlink(missing_ok=True)
        for f in _manifest_files(root):
            f.unlink(missing_ok=True)
        shutil.rmtree(root / "derivatives" / "simulation", ignore_errors=True)
    else:
        status(f"generating simulated dataset {preset!r} (seed {seed}) in {root}", progress)
    write_simulated_dataset(root, preset=preset, seed=seed, progress=progress)
    files = {f.relative_to(root).as_posix(): file_digest(f) for f in _manifest_files(root)}
    write_json(
        root / MANIFEST_NAME,
        {
            "simulator_version": SIMULATOR_VERSION,
            "fusi_nmf_version": __version__,
            "preset": preset,
            "seed": seed,
            "files": files,
        },
    )
    return root


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``python -m fusi_nmf simulate``."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated recording (BIDS layout) with ground truth",
        description=(
            "Simulate a fUSI Power Doppler recording with ground truth and write it in the "
            "real dataset's BIDS layout. Without --out it goes to the cache "
            "($FUSI_NMF_DATA or ~/.cache/fusi-nmf)/simulated/<preset>-seed<seed>."
        ),
    )
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="BIDS root to write (default: the cache)")
    p.add_argument("--data-dir", type=Path, default=None, help="cache folder (without --out)")
    p.add_argument("--n-frames", type=int, default=None)
    p.add_argument("--dropped-frames", type=int, default=0,
                   help="drop this many frames (recording and truth), needs --out")
    p.add_argument("--regular-timing", action="store_true",
                   help="write RepetitionTime on a regular grid instead of the converter's "
                   "irregular VolumeTiming (needs --out)")
    for flag in ("motion", "drift", "global-signal", "surges", "noise"):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"switch {flag} off")
    p.set_defaults(func=_cli)
    return p


def _cli(args: argparse.Namespace) -> int:
    flags = {
        "motion": not args.no_motion,
        "drift": not args.no_drift,
        "global_signal": not args.no_global_signal,
        "surges": not args.no_surges,
        "noise": not args.no_noise,
    }
    if args.out is None:
        if (args.n_frames is not None or not all(flags.values()) or args.dropped_frames
                or args.regular_timing):
            raise ValueError(
                "--n-frames, --dropped-frames, --regular-timing and --no-* options need "
                "--out DIR (the cache holds presets only)."
            )
        root = simulated_dataset(args.preset, args.seed, args.data_dir)
        print(recording_path(root))
        return 0
    sim = simulate_recording(args.preset, args.seed, n_frames=args.n_frames, **flags)
    print(write_simulated_dataset(args.out, sim, dropped_frames=args.dropped_frames,
                                  timing="regular" if args.regular_timing else "converter"))
    return 0
