"""Motion estimation: phase-correlation start, then inverse-compositional Gauss-Newton.

Every function works on batches of feature images ``(B, C, *S)``: ``C`` channels
share one transform (the slices of a multi-slice recording under the in-plane
model; ``C = 1`` otherwise), ``S`` are the registered axes of a :class:`Grid`.
A transform is a rotation ``rot`` (B, d, d) and translation ``trans`` (B, d) that map
centred reference points to centred frame points (mm, array axis order).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from fusi_nmf.registration.geometry import (
    Grid,
    block_mean,
    generators,
    index_coords,
    rotation_array_order,
)
from fusi_nmf.registration.interpolation import interp_cubic, interp_linear, spline_coefficients

#: frames x voxels transformed at once by :func:`phase_correlation`
FFT_BLOCK_POINTS = 2**16
#: the linear stage stops at this multiple of ``tol`` when the cubic polish follows (it
#: only has to come close: 1x and 10x gave the same accuracy, 5.3 vs 3.1 iterations)
LINEAR_TOL_FACTOR = 10.0


# --------------------------------------------------------------------------- start values
def phase_correlation(frames: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Sub-voxel shift ``s`` (voxels, array order) with ``frame(x) ~ template(x - s)``.

    Hann-windowed phase correlation of ``(B, C, *S)`` frames with a ``(C, *S)``
    template (cross-power spectra summed over channels), sub-voxel by a parabolic
    fit of the peak. Returns ``(B, d)``.
    """
    shape = template.shape[1:]
    d = len(shape)
    win = np.ones(shape, dtype=np.float32)
    for ax, n in enumerate(shape):
        if n > 1:
            w = np.hanning(n).astype(np.float32)
            win = win * w.reshape([n if a == ax else 1 for a in range(d)])
    axes = tuple(range(-d, 0))
    t = (template - template.mean(axis=axes, keepdims=True)) * win
    tspec = np.conj(np.fft.rfftn(t, axes=axes))
    # Blocks of frames: every frame's transforms, products and sums are its own (the
    # FFT works line by line), so the numbers are those of one pass over the batch,
    # with temporaries of a block's size (128 frames of 114 x 80: 32 -> 10 MB).
    b = frames.shape[0]
    step = max(1, FFT_BLOCK_POINTS // max(1, frames[0].size))
    cross = None
    for lo in range(0, b, step):
        block = frames[lo:lo + step]
        f = block - block.mean(axis=axes, keepdims=True)
        f *= win
        spec = np.fft.rfftn(f, axes=axes)
        if np.result_type(spec, tspec) == spec.dtype:
            spec *= tspec
        else:
            spec = spec * tspec
        summed = spec.sum(axis=1)
        if cross is None:
            cross = np.empty((b, *summed.shape[1:]), dtype=summed.dtype)
        cross[lo:lo + step] = summed
    norm = np.abs(cross)
    norm += 1e-12 * norm.max()  # the largest of the whole batch, as in one pass
    cross /= norm
    del norm
    corr = None
    for lo in range(0, b, step):
        part = np.fft.irfftn(cross[lo:lo + step], s=shape, axes=axes)  # (block, *S)
        if corr is None:
            corr = np.empty((b, *shape), dtype=part.dtype)
        corr[lo:lo + step] = part
    peak = np.array(np.unravel_index(np.argmax(corr.reshape(b, -1), axis=1), shape)).T
    shifts = peak.astype(float)
    rows = np.arange(b)
    for ax, n in enumerate(shape):
        if n < 3:
            shifts[:, ax] = 0.0
            continue
        idx_c = [peak[:, a] for a in range(d)]
        idx_m = list(idx_c)
        idx_p = list(idx_c)
        idx_m[ax] = (peak[:, ax] - 1) % n
        idx_p[ax] = (peak[:, ax] + 1) % n
        c0 = corr[(rows, *idx_c)]
        cm = corr[(rows, *idx_m)]
        cp = corr[(rows, *idx_p)]
        denom = cm - 2 * c0 + cp
        safe = np.where(denom == 0, 1, denom)
        delta = np.where(np.abs(denom) > 1e-12, 0.5 * (cm - cp) / safe, 0.0)
        shifts[:, ax] += np.clip(delta, -0.5, 0.5)
        shifts[:, ax] = (shifts[:, ax] + n / 2) % n - n / 2  # wrap to [-n/2, n/2)
    return shifts


# --------------------------------------------------------------------------- template
@dataclass
class Template:
    """A reference feature image with everything Gauss-Newton precomputes from it.

    Attributes
    ----------
    grid : Grid
    values : ndarray (C, N) float32
        The template, flattened per channel.
    sd : ndarray (C * N, k) float32
        Steepest-descent images: ``d template / d parameter`` (translations per
        axis, then rotations, then an additive intensity offset).
    outer : ndarray (N, k * k) float32
        ``sd sd^T`` per voxel, summed over channels (the Hessian is its mask-weighted sum).
    interior : ndarray (N,) bool
        Voxels with a two-sided gradient (the outermost layer is excluded).
    n_rot : int
        Number of rotation parameters (0 for translation only).
    """

    grid: Grid
    values: np.ndarray
    sd: np.ndarray
    outer: np.ndarray
    interior: np.ndarray
    n_rot: int

    @classmethod
    def build(cls, image: np.ndarray, grid: Grid, rigid: bool, spline: bool = False
              ) -> Template:
        """Precompute the template terms of a ``(C, *S)`` feature image.

        ``spline``: take the gradient of the cubic B-spline through the template
        (central differences of its spline coefficients), the derivative that matches
        cubic interpolation of the frames.
        """
        d = grid.ndim
        c = image.shape[0]
        pts = grid.points
        gens = generators(d) if rigid else np.zeros((0, d, d))
        sd_channels = []
        source = image.astype(np.float64)
        if spline:
            source = spline_coefficients(source[None], n_lead=2)[0].astype(np.float64)
        for ch in source:
            grads = np.gradient(ch, *grid.step) if d > 1 else [np.gradient(ch, grid.step[0])]
            grads = np.stack([g.ravel() for g in grads], axis=-1)  # (N, d), per mm
            cols = [grads[:, a] for a in range(d)]
            cols += [np.einsum("na,ab,nb->n", grads, g, pts) for g in gens]
            cols.append(np.ones(len(pts)))  # additive intensity offset
            sd_channels.append(np.stack(cols, axis=-1))
        sd = np.stack(sd_channels)  # (C, N, k)
        k = sd.shape[-1]
        outer = np.einsum("cni,cnj->nij", sd, sd).reshape(len(pts), k * k)
        interior = np.ones(grid.shape, dtype=bool)
        for ax, n in enumerate(grid.shape):
            if n > 2:
                sl = [slice(None)] * d
                sl[ax] = slice(0, 1)
                interior[tuple(sl)] = False
                sl[ax] = slice(n - 1, n)
                interior[tuple(sl)] = False
        return cls(grid=grid, values=image.reshape(c, -1).astype(np.float32),
                   sd=np.ascontiguousarray(sd.reshape(c * len(pts), k), dtype=np.float32),
                   outer=np.ascontiguousarray(outer, dtype=np.float32),
                   interior=interior.ravel(), n_rot=len(gens))

    def downsample(self, image: np.ndarray, rigid: bool) -> tuple[Template, np.ndarray]:
        """Template of the next coarser pyramid level, and the block-averaged image."""
        g = self.grid.downsample()
        small = block_mean(image, g.factors)
        return Template.build(small, g, rigid), small


def _valid_mask(idx: np.ndarray, grid: Grid, interior: np.ndarray, margin: float) -> np.ndarray:
    """(B, N) True where the warped point lies ``margin`` voxels inside the frame."""
    valid = np.broadcast_to(interior, idx[:, 0].shape).copy()
    for ax, n in enumerate(grid.shape):
        if n > 1:
            q = idx[:, ax]
            valid &= q >= margin - 1
            valid &= q <= n - margin
    return valid


# --------------------------------------------------------------------------- Gauss-Newton
def gauss_newton(frames: np.ndarray, tpl: Template, rot: np.ndarray, trans: np.ndarray, *,
                 max_iter: int, tol: float, radius: float, margin: float = 1.0,
                 cubic: bool = False, n_threads: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-compositional Gauss-Newton for a batch of frames on one grid level.

    Parameters
    ----------
    frames : ndarray (B, C, *S)
        Feature images on ``tpl.grid``.
    tpl : Template
    rot, trans : ndarray (B, d, d), (B, d)
        Start transforms; updated in place and returned.
    max_iter : int
        Iteration cap per frame.
    tol : float
        A frame has converged when its update moved it by less than ``tol`` mm
        (translations plus rotations times ``radius``).
    radius : float
        Lever arm (mm) of rotations in the convergence test.
    margin : float
        Points closer than this to the frame edge (voxels) are ignored.
    cubic : bool
        Sample the frames with cubic B-splines (unbiased sub-voxel estimates) instead
        of linear interpolation (faster, biased by a few 0.01 degree).
    n_threads : int, optional
        Threads of the cubic sampling (:func:`interp_cubic`; default its own).

    Returns
    -------
    rot, trans, converged, n_iter
    """
    interp: Callable[[np.ndarray, np.ndarray], np.ndarray] = interp_linear
    if cubic:
        interp = partial(interp_cubic, n_threads=n_threads)
        frames = spline_coefficients(frames)
    grid = tpl.grid
    d = grid.ndim
    b, c = frames.shape[:2]
    k = tpl.sd.shape[1]
    n_rot = tpl.n_rot
    converged = np.zeros(b, dtype=bool)
    n_iter = np.zeros(b, dtype=int)
    offset = np.zeros(b)
    # last accepted state per frame: a Gauss-Newton step that raises the cost (it can
    # cycle across the kinks of linear interpolation) is retried at half length
    best_cost = np.full(b, np.inf)
    best_rot, best_trans, best_off = rot.copy(), trans.copy(), offset.copy()
    last_delta = np.zeros((b, k))
    lam = np.ones(b)
    eye = np.eye(k)
    active = np.arange(b)
    for _ in range(max_iter):
        if active.size == 0:
            break
        idx = index_coords(rot[active], trans[active], grid)
        valid = _valid_mask(idx, grid, tpl.interior, margin)
        err = interp(frames[active], idx)  # (A, C, N) float32
        err -= tpl.values
        err -= offset[active].astype(np.float32)[:, None, None]
        err *= valid[:, None, :]
        err = err.reshape(active.size, -1)
        n_valid = np.maximum(valid.sum(axis=1) * c, 1)
        cost = np.add.reduce(err * err, axis=1, dtype=np.float64) / n_valid
        worse = cost > best_cost[active] * (1 + 1e-9)
        ok = ~worse
        acc, rej = active[ok], active[worse]
        best_cost[acc] = cost[ok]
        best_rot[acc], best_trans[acc], best_off[acc] = rot[acc], trans[acc], offset[acc]
        lam[acc] = 1.0
        delta = np.zeros((active.size, k))
        if acc.size:
            # float32 GEMMs: the step direction needs no more; the fixed point is set by
            # g = 0, whose rounding (~1e-6 relative) is far below the noise
            hess = (valid.astype(np.float32) @ tpl.outer).astype(np.float64)
            hess = hess[ok].reshape(-1, k, k)
            g = (err @ tpl.sd).astype(np.float64)[ok]
            hess += eye * (1e-9 * np.trace(hess, axis1=1, axis2=2) / k + 1e-300)[:, None, None]
            try:
                delta[ok] = np.linalg.solve(hess, g[..., None])[..., 0]
            except np.linalg.LinAlgError:  # a frame with (almost) no overlap
                delta[ok] = np.stack([np.linalg.lstsq(h, gg, rcond=None)[0]
                                      for h, gg in zip(hess, g, strict=True)])
            last_delta[acc] = delta[ok]
        lam[rej] *= 0.5
        delta[worse] = lam[rej, None] * last_delta[rej]
        dt = delta[:, :d]
        da = delta[:, d:d + n_rot]
        offset[active] = best_off[active] + delta[:, -1]
        if n_rot:
            r_d = rotation_array_order(da, d)
        else:
            r_d = np.broadcast_to(np.eye(d), (active.size, d, d))
        # W <- W o W_delta^-1 from the last accepted state: R' = R R_d^T, t' = t - R' t_d
        r_new = np.einsum("bij,bkj->bik", best_rot[active], r_d)
        t_new = best_trans[active] - np.einsum("bij,bj->bi", r_new, dt)
        rot[active] = r_new
        trans[active] = t_new
        n_iter[active] += 1
        step = np.abs(dt).sum(axis=1) + radius * np.abs(da).sum(axis=1)
        # converged: the update is below tol, or a step of < 2 tol raised the cost
        # (the cost cannot resolve finer steps: noise, mask and interpolation kinks)
        done = (step < tol) | (worse & (step < 2 * tol))
        fin = active[done & worse]  # converged on a rejected step: keep the accepted state
        rot[fin], trans[fin], offset[fin] = best_rot[fin], best_trans[fin], best_off[fin]
        converged[active[done]] = True
        active = active[~done]
    return rot, trans, converged, n_iter


# --------------------------------------------------------------------------- driver
@dataclass
class Estimate:
    """Per-frame transforms and solver status from :func:`estimate_motion`."""

    rot: np.ndarray  # (T, d, d)
    trans: np.ndarray  # (T, d), mm
    converged: np.ndarray  # (T,) bool
    n_iter: np.ndarray  # (T,) int


def estimate_motion(chunks: Iterable[tuple[np.ndarray, np.ndarray]], n_frames: int,
                    pyramid: list[Template], polish: Template | None, *, max_iter: int,
                    tol: float, radius: float, n_threads: int = 1,
                    sample_threads: int | None = None) -> Estimate:
    """Estimate every frame's rigid transform to the template.

    Parameters
    ----------
    chunks : iterable of (frame indices, feature images (B, C, *S))
        The recording's features on the finest grid, chunk by chunk.
    n_frames : int
        Total number of frames.
    pyramid : list of Template
        Finest level first; Gauss-Newton with linear interpolation on each.
    polish : Template or None
        The finest template with spline gradients (``Template.build(...,
        spline=True)``): polish the linear-interpolation solution with cubic
        B-splines. None: no polish.
    max_iter, tol, radius : see :func:`gauss_newton`.
    n_threads : int, default 1
        Chunks estimated at once in threads (the interpolation releases the GIL).
    sample_threads : int, optional
        Threads of each chunk's cubic sampling (default :func:`interp_cubic`'s own).
        Every chunk and frame is solved on its own, so neither number changes the result.

    Returns
    -------
    Estimate
    """
    d = pyramid[0].grid.ndim
    rot = np.broadcast_to(np.eye(d), (n_frames, d, d)).copy()
    trans = np.zeros((n_frames, d))
    converged = np.zeros(n_frames, dtype=bool)
    n_iter = np.zeros(n_frames, dtype=int)

    def solve(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, tuple]:
        sel, feat = chunk
        return sel, _estimate_chunk(feat, rot[sel], pyramid, polish, max_iter=max_iter,
                                    tol=tol, radius=radius, n_threads=sample_threads)

    if n_threads > 1:
        # at most n_threads chunks taken from ``chunks`` at a time (Executor.map would
        # draw them all at once: every chunk's feature images alive together)
        solved = []
        pending: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for chunk in chunks:
                if len(pending) >= n_threads:
                    solved.append(pending.popleft().result())
                pending.append(pool.submit(solve, chunk))
            solved += [future.result() for future in pending]
    else:
        solved = [solve(chunk) for chunk in chunks]
    for sel, (rot_c, trans_c, conv, nit) in solved:
        rot[sel], trans[sel], converged[sel], n_iter[sel] = rot_c, trans_c, conv, nit
    return Estimate(rot=rot, trans=trans, converged=converged, n_iter=n_iter)


def _estimate_chunk(feat: np.ndarray, rot_c: np.ndarray, pyramid: list[Template],
                    polish: Template | None, *, max_iter: int, tol: float, radius: float,
                    n_threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rotations, translations, converged, iterations) of one chunk's frames."""
    cubic = polish is not None
    n_iter = np.zeros(len(feat), dtype=int)
    feats = [feat]
    for tpl in pyramid[1:]:
        feats.append(block_mean(feats[-1], tpl.grid.factors))
    # translation start on the coarsest level
    coarse = pyramid[-1]
    trans_c = phase_correlation(feats[-1], coarse.values.reshape(
        (-1, *coarse.grid.shape))) * coarse.grid.step
    for lev in range(len(pyramid) - 1, -1, -1):
        # the linear stage only has to come close when the cubic polish follows
        lev_tol = tol * 10 * 2 ** lev if lev else tol * (LINEAR_TOL_FACTOR if cubic else 1)
        rot_c, trans_c, conv, nit = gauss_newton(
            feats[lev], pyramid[lev], rot_c, trans_c, max_iter=max_iter, tol=lev_tol,
            radius=radius)
        n_iter += nit
    if polish is not None:
        # a few cubic iterations remove the linear-interpolation bias; convergence
        # is judged on this stage
        rot_c, trans_c, conv, nit = gauss_newton(
            feats[0], polish, rot_c, trans_c, max_iter=max_iter, tol=tol,
            radius=radius, cubic=True, n_threads=n_threads)
        n_iter += nit
    return rot_c, trans_c, conv, n_iter
