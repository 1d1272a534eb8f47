"""Resampling the original power with the estimated transforms (linear or Fourier)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fusi_nmf.registration.geometry import Grid, angles_from_rotation, index_coords
from fusi_nmf.registration.interpolation import LINEAR_BLOCK_POINTS, interp_linear

#: resampling methods of :func:`resample`
METHODS = ("linear", "fourier")


def _fourier_shift_lines(a: np.ndarray, shifts: np.ndarray, axis: int, pad: int) -> np.ndarray:
    """Shift every 1-D line of ``a`` along ``axis`` by its own sub-voxel amount.

    ``out[..., i] = a[..., i + s]`` by band-limited (Fourier) interpolation, which is
    unitary: it neither smooths nor changes the noise variance, whatever ``s``.
    ``shifts`` has the shape of ``a`` without ``axis``; lines are padded with their
    edge values (``pad`` voxels each side) so content from outside is the edge value.
    """
    moved = np.moveaxis(a, axis, -1)
    n0 = moved.shape[-1]
    padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(pad, pad)], mode="edge")
    n = padded.shape[-1]
    spec = np.fft.rfft(padded, axis=-1)
    spec *= np.exp(2j * np.pi * np.fft.rfftfreq(n)[None, None, :] * shifts[..., None]).astype(
        spec.dtype)
    out = np.fft.irfft(spec, n=n, axis=-1)[..., pad:pad + n0]
    return np.moveaxis(out, -1, axis)


def fourier_resample_2d(frames: np.ndarray, trans: np.ndarray, angles: np.ndarray,
                        grid: Grid) -> np.ndarray:
    """``registered(p) = frame(R p + t)`` for (B, y, x) frames by four 1-D Fourier passes.

    The rotation (in mm, anisotropic voxels) is the three-shear decomposition
    ``R = Sx(a) Sy(b) Sx(a)``, ``a = -tan(theta/2)``, ``b = sin(theta)`` (Paeth /
    Unser et al. 1995), the translation is folded into the first passes:
    ``h(x, y) = f(x, y + ty)``; ``g1 = h(x + a y + tx, y)``; ``g2 = g1(x, y + b x)``;
    ``out = g2(x + a y, y)``. Returns (B, y * x).
    """
    (sy, sx), (ny, nx) = grid.step, grid.shape
    yc = grid.first[0] - grid.centre[0] + sy * np.arange(ny)
    xc = grid.first[1] - grid.centre[1] + sx * np.arange(nx)
    a = -np.tan(angles / 2.0)[:, None]
    b = np.sin(angles)[:, None]
    ty, tx = trans[:, 0][:, None], trans[:, 1][:, None]
    max_shift = np.abs(trans).max(initial=0.0) / min(abs(sx), abs(sy)) + np.abs(a).max(
        initial=0.0) * max(np.abs(yc).max() / abs(sx), np.abs(xc).max() / abs(sy)) * 2
    pad = int(np.ceil(max_shift)) + 8
    out = frames.astype(np.float32)
    out = _fourier_shift_lines(out, np.broadcast_to(ty / sy, (len(out), nx)), 1, pad)
    out = _fourier_shift_lines(out, (tx + a * yc[None, :]) / sx, 2, pad)
    out = _fourier_shift_lines(out, b * xc[None, :] / sy, 1, pad)
    out = _fourier_shift_lines(out, a * yc[None, :] / sx, 2, pad)
    return out.reshape(len(out), -1)


def resample(arr: np.ndarray, rot: np.ndarray, trans: np.ndarray, grid: Grid,
             chunks: Sequence[np.ndarray], method: str, out_dtype: type) -> np.ndarray:
    """Resample every frame of the original power onto the reference grid.

    Parameters
    ----------
    arr : ndarray (time, z, y, x)
        Original power.
    rot, trans : ndarray (time, d, d), (time, d)
        Estimated transforms on ``grid`` (``d = 2``: every slice moves the same way
        in-plane; ``d = 3``: the volume moves rigidly).
    grid : Grid
        The registered axes.
    chunks : sequence of index arrays
        Frames processed together.
    method : {"linear", "fourier"}
        ``"linear"``: bi/tri-linear, a convex combination of neighbours;
        ``"fourier"`` (``d = 2`` only): band-limited shifts, rotation as three shears.
    out_dtype : dtype
        dtype of the result.

    Returns
    -------
    ndarray (time, z, y, x)
        Negative values are clipped to 0 when ``arr`` is non-negative; content from
        outside the field of view takes the nearest edge value.
    """
    out = np.empty(arr.shape, dtype=out_dtype)
    n_z = arr.shape[1]
    step = max(1, LINEAR_BLOCK_POINTS // max(1, int(np.prod(arr.shape[1:]))))
    for sel in chunks:
        if method == "fourier":
            ang = np.repeat(angles_from_rotation(rot[sel], 2)[:, 0], n_z)
            vals = fourier_resample_2d(arr[sel].reshape(-1, *arr.shape[2:]),
                                       np.repeat(trans[sel], n_z, axis=0), ang, grid)
            out[sel] = vals.reshape((len(sel), *arr.shape[1:]))
            continue
        # edges clamped = nearest edge value; frames in small blocks: every value comes
        # from its own frame's transform, so the numbers are those of the whole chunk at
        # once, with coordinates of a block's size (128 frames: 9 MB -> 0.5 MB)
        for i in range(0, len(sel), step):
            sub = sel[i:i + step]
            src = arr[sub] if grid.ndim == 2 else arr[sub][:, None]
            vals = interp_linear(src, index_coords(rot[sub], trans[sub], grid))
            out[sub] = vals.reshape((len(sub), *arr.shape[1:]))
    if arr.min() >= 0:
        np.maximum(out, 0, out=out)
    return out
