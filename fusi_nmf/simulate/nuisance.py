"""Rigid motion, its resampling, and the correlated measurement noise of the simulator."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fusi_nmf.simulate._base import _NOISE_AR1, _NOISE_SIGMA_MM, _PSF_MM, _Grid, _lowpass_series

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
