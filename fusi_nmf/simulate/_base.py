"""Constants and small helpers shared by the simulator's model and its writers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

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


# Point-spread function (Gaussian sigma, mm) of the Power Doppler image.
_PSF_MM = {"x": 0.05, "y": 0.035, "z": 0.15}
# Peak fractional change of the sources (drawn uniformly in this range).
SOURCE_AMPLITUDE = (0.2, 0.35)
_SLOW_WEIGHT = 0.05  # weight of the slow fluctuation in the source activity
_PAIR_DISTANCE = 1.3  # sources 0 and 1 overlap: centre distance in sigmas
_MIN_DISTANCE = 1.6  # other sources: minimum centre distance in mean sigmas
#: Default s.d. of the multiplicative per-frame noise (fraction of power).
SPECKLE_SD = 1.0 / math.sqrt(250.0)  # 0.063, see "Noise" in the package docstring
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
