"""Rigid-transform geometry: rotation matrices, the physical voxel grid, warped coordinates.

Conventions (``DEVELOPING.md``, shared with the simulator's ground truth): content
at reference position ``p`` sits at ``R (p - c) + c + t`` in a frame, ``c`` the
field-of-view centre, ``R = Rz(rz) Ry(ry) Rx(rx)`` (right-handed, rotate about x
first), a positive ``rz`` turns ``+x`` towards ``+y``. Internally matrices and
vectors are in array axis order, ``(y, x)`` or ``(z, y, x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: parameter names of the in-plane model (single slice, or slices moving together)
PARAMS_2D = ("tx", "ty", "rz")
#: parameter names of the full 3-D rigid model
PARAMS_3D = ("tx", "ty", "tz", "rx", "ry", "rz")


def rot_xyz(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrices ``Rz Ry Rx`` (xyz order) for angles ``(..., 3) = (rx, ry, rz)``."""
    rx, ry, rz = (angles_rad[..., i] for i in range(3))
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r = np.empty((*angles_rad.shape[:-1], 3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def rotation_array_order(angles_rad: np.ndarray, ndim: int) -> np.ndarray:
    """Rotation in array axis order, ``(y, x)`` or ``(z, y, x)``, from angles.

    ``angles_rad`` is ``(..., 1) = (rz,)`` for ``ndim`` 2 and ``(..., 3) = (rx, ry, rz)``
    for ``ndim`` 3.
    """
    if ndim == 2:
        full = np.zeros((*angles_rad.shape[:-1], 3))
        full[..., 2] = angles_rad[..., 0]
        return rot_xyz(full)[..., :2, :2][..., ::-1, ::-1].copy()
    return rot_xyz(angles_rad)[..., ::-1, ::-1].copy()


def angles_from_rotation(r_arr: np.ndarray, ndim: int) -> np.ndarray:
    """Inverse of :func:`rotation_array_order` (radians)."""
    if ndim == 2:
        rx = r_arr[..., ::-1, ::-1]
        return np.arctan2(rx[..., 1, 0], rx[..., 0, 0])[..., None]
    r = r_arr[..., ::-1, ::-1]
    ry = -np.arcsin(np.clip(r[..., 2, 0], -1.0, 1.0))
    rx = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    rz = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([rx, ry, rz], axis=-1)


def generators(ndim: int) -> np.ndarray:
    """``dR / d angle`` at zero in array order, one matrix per rotation parameter."""
    n_rot = 1 if ndim == 2 else 3
    eps = 1e-6
    gens = []
    for k in range(n_rot):
        a = np.zeros(n_rot)
        a[k] = eps
        gens.append((rotation_array_order(a, ndim) - rotation_array_order(-a, ndim)) / (2 * eps))
    return np.array(gens)


class Grid:
    """Physical geometry (mm) of the registered axes, in array order.

    Parameters
    ----------
    shape : sequence of int
        Voxels per axis.
    first, step : sequence of float
        Coordinate of the first voxel and voxel size per axis (mm).
    """

    def __init__(self, shape: Sequence[int], first: Sequence[float], step: Sequence[float]):
        self.shape = tuple(int(s) for s in shape)
        self.first = np.asarray(first, float)
        self.step = np.asarray(step, float)
        self.ndim = len(self.shape)
        self.factors = [1] * self.ndim
        self.centre = self.first + self.step * (np.asarray(self.shape) - 1) / 2.0
        axes = [np.arange(n) * s + f - c for n, s, f, c in
                zip(self.shape, self.step, self.first, self.centre, strict=True)]
        mesh = np.meshgrid(*axes, indexing="ij")
        self.points = np.stack([m.ravel() for m in mesh], axis=-1)  # (N, d) centred mm
        self.points_f32 = np.ascontiguousarray(self.points.T, dtype=np.float32)  # (d, N)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    def downsample(self) -> Grid:
        """Grid of a 2x block average along every axis of at least 16 voxels."""
        factors = [2 if n >= 16 else 1 for n in self.shape]
        shape = [n // f for n, f in zip(self.shape, factors, strict=True)]
        first = [f0 + s * (f - 1) / 2 for f0, s, f in zip(self.first, self.step, factors,
                                                           strict=True)]
        step = [s * f for s, f in zip(self.step, factors, strict=True)]
        g = Grid(shape, first, step)
        g.factors = factors
        return g


def block_mean(images: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Average ``(..., *S)`` images over blocks of ``factors`` along the last axes."""
    out = images
    lead = images.ndim - len(factors)
    for i, f in enumerate(factors):
        if f == 1:
            continue
        ax = lead + i
        n = out.shape[ax] // f
        out = np.take(out, np.arange(n * f), axis=ax)
        shape = (*out.shape[:ax], n, f, *out.shape[ax + 1:])
        out = out.reshape(shape).mean(axis=ax + 1)
    return out


def index_coords(rot: np.ndarray, trans: np.ndarray, grid: Grid) -> np.ndarray:
    """Voxel index coordinates ``(B, d, N)`` of the warped reference grid in each frame.

    ``rot`` (B, d, d) and ``trans`` (B, d) map centred reference points to centred
    frame points (mm).
    """
    # idx_i = sum_j (R_ij / s_i) p_j + (t_i + c_i - f_i) / s_i, in float32 (fast, and
    # ~1e-6 voxel rounding is far below the accuracy target)
    pts = grid.points_f32
    a = (rot / grid.step[None, :, None]).astype(np.float32)
    off = ((trans + grid.centre - grid.first) / grid.step).astype(np.float32)
    d = grid.ndim
    n = pts.shape[1]
    out = np.empty((rot.shape[0], d, n), dtype=np.float32)
    # blocks of frames: each value is its own frame's, and the product temporary stays
    # small (128 frames of 9120 voxels: 4.5 MB -> 0.25 MB)
    step = max(1, 2**16 // max(1, n))
    for lo in range(0, rot.shape[0], step):
        b = slice(lo, lo + step)
        tmp = np.empty((len(out[b]), n), dtype=np.float32)
        for i in range(d):
            acc = out[b, i]
            np.multiply(a[b, i, 0, None], pts[0], out=acc)
            for j in range(1, d):
                acc += np.multiply(a[b, i, j, None], pts[j], out=tmp)
            acc += off[b, i, None]
    return out
