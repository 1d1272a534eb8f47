"""Sampling batches of images at warped voxel coordinates (linear and cubic B-spline).

Images are ``(B, C, *S)``: ``B`` frames, ``C`` channels that share one transform
(the slices of a multi-slice recording under the in-plane model; ``C = 1``
otherwise) and the registered axes ``S``. Coordinates are ``(B, d, N)`` voxel
indices, one set per frame, shared by its channels. Coordinates outside the grid
are clamped, i.e. they take the nearest edge value.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
from scipy import ndimage


def default_threads() -> int:
    """Threads for the per-frame cubic loop: ``OMP_NUM_THREADS`` if set, else the cores.

    The same rule BLAS follows, so ``OMP_NUM_THREADS=1`` keeps the whole registration
    on one core. :func:`scipy.ndimage.map_coordinates` releases the GIL, so threads
    run in parallel (measured: 256 frames 1.26 s -> 0.56 s wall on 2 cores).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return min(int(env), 8)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _corner_bases(images: np.ndarray, idx: np.ndarray
                  ) -> tuple[np.ndarray, list[np.ndarray | None], list[int]]:
    """Flat index of the lower corner (B, C, N) and per-axis fractions (B, 1, N)."""
    b, c = images.shape[:2]
    shape = images.shape[2:]
    npix = int(np.prod(shape))
    strides = [int(np.prod(shape[ax + 1:])) for ax in range(len(shape))]
    itype = np.int32 if images.size < 2**31 - 1 else np.intp  # int32: faster gathers
    base = np.zeros((b, idx.shape[2]), dtype=itype)
    fracs: list[np.ndarray | None] = []
    for ax, n in enumerate(shape):
        if n == 1:
            fracs.append(None)
            continue
        q = np.clip(idx[:, ax], 0.0, n - 1)
        lo = np.minimum(q.astype(itype), n - 2)  # q >= 0, so truncation == floor
        q -= lo
        fracs.append(q.astype(images.dtype, copy=False)[:, None, :])
        lo *= strides[ax]
        base += lo
    offsets = (np.arange(b, dtype=itype) * (c * npix))[:, None, None] + (
        np.arange(c, dtype=itype) * npix)[None, :, None]
    return base[:, None, :] + offsets, fracs, strides


#: points (frames x channels x voxels) sampled at once by :func:`interp_linear`: its
#: int32/float32 temporaries stay 256 kB each instead of growing with the batch, and in
#: cache (128 frames of 114 x 80, one core: 57 ms in one pass, 17 ms in blocks of 2**16)
LINEAR_BLOCK_POINTS = 2**16


def interp_linear(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(Bi/tri)linear interpolation of a batch of images at voxel index coordinates.

    Parameters
    ----------
    images : ndarray (B, C, *S)
        Images; every channel of frame ``b`` is sampled at the same coordinates.
    idx : ndarray (B, d, N)
        Voxel index coordinates, axis-major; points outside the grid are clamped
        (nearest edge value).

    Returns
    -------
    ndarray (B, C, N)
        Interpolated values, dtype of ``images``: a convex combination of
        neighbours, so no new extremes.

    Notes
    -----
    Every value depends on its own frame and coordinates only, so frames are sampled
    in blocks of about :data:`LINEAR_BLOCK_POINTS` points: the same numbers as one
    pass over the batch, with temporaries of a block's size (a 128-frame chunk of the
    default recording: 44 MB -> ~3 MB at the peak, and 3x faster).
    """
    b, c = images.shape[:2]
    per_frame = max(1, c * idx.shape[2])
    step = max(1, LINEAR_BLOCK_POINTS // per_frame)
    if step >= b:
        return _interp_linear_block(images, idx)
    out = np.empty((b, c, idx.shape[2]), dtype=images.dtype)
    for lo in range(0, b, step):
        out[lo:lo + step] = _interp_linear_block(images[lo:lo + step], idx[lo:lo + step])
    return out


def _interp_linear_block(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`interp_linear` of one block of frames, in one pass."""
    flat = images.reshape(-1)
    base, fracs, strides = _corner_bases(images, idx)
    axes = [ax for ax, f in enumerate(fracs) if f is not None]
    # gather the 2^k corners (bit j of the corner number = upper neighbour along
    # axes[j]), then lerp pairwise along one axis at a time, in place
    vals = []
    for corner in range(2 ** len(axes)):
        off = sum(((corner >> j) & 1) * strides[ax] for j, ax in enumerate(axes))
        vals.append(np.take(flat, base + off if off else base))
    for ax in axes:
        fr = fracs[ax]
        merged = []
        for v0, v1 in zip(vals[0::2], vals[1::2], strict=True):
            v1 -= v0
            v1 *= fr
            v1 += v0
            merged.append(v1)
        vals = merged
    return vals[0]


def spline_coefficients(images: np.ndarray, n_lead: int = 2) -> np.ndarray:
    """Cubic B-spline coefficients (float32, mirror boundary) along the spatial axes.

    ``n_lead`` leading axes (frames, channels) are not filtered.
    """
    out = images
    for ax in range(n_lead, images.ndim):
        if images.shape[ax] > 1:
            out = ndimage.spline_filter1d(out, order=3, axis=ax, mode="mirror",
                                          output=np.float32)
    return out.astype(np.float32, copy=False)


def interp_cubic(coeffs: np.ndarray, idx: np.ndarray, n_threads: int | None = None
                 ) -> np.ndarray:
    """Cubic B-spline interpolation with the interface of :func:`interp_linear`.

    ``coeffs`` from :func:`spline_coefficients`. Image by image with
    :func:`scipy.ndimage.map_coordinates` (measured as fast as a vectorised
    16-neighbour gather in numpy: 0.51 vs 0.51 s per 128 frames of 114 x 80, and
    simpler), frames split over ``n_threads`` threads (default
    :func:`default_threads`); every frame is computed the same way whatever the
    split, so the result does not depend on it.
    """
    b, c = coeffs.shape[:2]
    shape = coeffs.shape[2:]
    hi = (np.asarray(shape, np.float32) - 1)[:, None]
    out = np.empty((b, c, idx.shape[2]), dtype=np.float32)

    def run(frames: range) -> None:
        for i in frames:
            q = np.clip(idx[i], 0.0, hi)
            for j in range(c):
                out[i, j] = ndimage.map_coordinates(coeffs[i, j], q, order=3, prefilter=False,
                                                    mode="mirror")

    n = min(n_threads or default_threads(), b)
    if n <= 1:
        run(range(b))
        return out
    bounds = np.linspace(0, b, n + 1).round().astype(int)
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(run, [range(lo, up) for lo, up in pairwise(bounds)]))
    return out
