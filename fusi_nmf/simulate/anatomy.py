"""The simulated anatomy and activity: grid, vessels, baseline, sources and their time courses."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special

from fusi_nmf.simulate._base import (
    _MIN_DISTANCE,
    _PAIR_DISTANCE,
    _PSF_MM,
    _SLOW_WEIGHT,
    _Grid,
    _lowpass_series,
    _smooth_noise,
)

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
