"""What registration compares: a robust intensity feature and the reference volume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage


def robust_scale(arr: np.ndarray) -> float:
    """Median absolute power of (up to) 64 evenly spaced frames; 1 if that is 0."""
    a = np.abs(arr[:: max(1, arr.shape[0] // 64)])
    s = float(np.median(a))
    if not s > 0:
        s = float(a.mean()) or 1.0
    return s


def feature(x: np.ndarray, scale: float) -> np.ndarray:
    """Heavy-tail-robust intensity ``asinh(P / s)``: log-like for vessels, linear near 0."""
    out = np.multiply(x, np.float32(1.0 / scale), dtype=np.float32)
    return np.arcsinh(out, out=out)  # in place: one array of the recording's size, not two


def smooth(images: np.ndarray, sigma_vox: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of ``(..., *S)`` images along the last ``len(sigma_vox)`` axes."""
    if not any(s > 0 for s in sigma_vox):
        return images
    lead = images.ndim - len(sigma_vox)
    return ndimage.gaussian_filter(images, sigma=(0,) * lead + tuple(sigma_vox), mode="nearest")


def frame_correlation(feat: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson correlation of each frame ``(T, ...)`` with a reference of the frame's shape."""
    f = feat.reshape(feat.shape[0], -1).astype(np.float32, copy=False)
    r = ref.ravel().astype(np.float32)
    r = r - r.mean()
    # corr = (f - mean f) . r / (|f - mean f| |r|), with sum(r) = 0
    mean = f.mean(axis=1, dtype=np.float64)
    num = (f @ r).astype(np.float64)
    ss = np.einsum("ij,ij->i", f, f, dtype=np.float64) - f.shape[1] * mean**2
    den = np.sqrt(np.maximum(ss, 0.0) * float(r @ r))
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def lowest_motion_window(feat: np.ndarray, window: int) -> tuple[int, int]:
    """Start/stop of the ``window``-frame stretch with the smallest frame-to-frame change."""
    t = feat.shape[0]
    w = min(window, t)
    if t <= 1 or w >= t:
        return 0, t
    diff = np.diff(feat.reshape(t, -1), axis=0)
    diff = np.abs(diff, out=diff).mean(axis=1)  # (t - 1,)
    csum = np.concatenate([[0.0], np.cumsum(diff)])
    cost = csum[w - 1:] - csum[: t - w + 1]  # sum of w - 1 diffs inside each window
    start = int(np.argmin(cost))
    return start, start + w


def reference_volume(arr: np.ndarray, reference: Any, data: xr.DataArray, window: int,
                     scale: float) -> tuple[np.ndarray, str]:
    """The template as a (z, y, x) power volume, and a description of it.

    Parameters
    ----------
    arr : ndarray (time, z, y, x)
        The recording's power.
    reference : {"median"} or int or DataArray
        See :func:`fusi_nmf.registration.register_volumewise`.
    data : DataArray
        The recording (for sizes in error messages and dims of a given volume).
    window : int
        Length of the low-motion stretch for ``"median"``.
    scale : float
        Feature scale (:func:`robust_scale`) used to find the low-motion stretch.

    Returns
    -------
    volume : ndarray (z, y, x)
    description : str
    """
    t = arr.shape[0]
    if isinstance(reference, str):
        if reference != "median":
            raise ValueError(
                f"reference must be 'median', a frame index or a (z, y, x) DataArray; "
                f"got {reference!r}."
            )
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}.")
        # choose the stretch on a cheap, downsampled feature
        small = feature(arr[:, :, ::2, ::2], scale)
        start, stop = lowest_motion_window(small, int(window))
        ref = np.median(arr[start:stop], axis=0)
        return ref, f"temporal median of frames {start}..{stop - 1} (lowest-motion stretch)"
    if isinstance(reference, bool | np.bool_):
        raise TypeError("reference must be 'median', an int frame index or a DataArray, not bool.")
    if isinstance(reference, int | np.integer):
        i = int(reference)
        if not -t <= i < t:
            raise ValueError(
                f"reference frame index {i} is out of range for {t} frames "
                f"(valid: 0..{t - 1}, or negative from the end)."
            )
        i %= t
        return arr[i].copy(), f"frame {i}"
    if isinstance(reference, xr.DataArray):
        return _given_volume(reference, data), "given volume"
    raise TypeError(
        "reference must be 'median', an int frame index or an xarray.DataArray volume "
        f"(z, y, x); got {type(reference).__name__}."
    )


def _given_volume(reference: xr.DataArray, data: xr.DataArray) -> np.ndarray:
    ref = reference
    if "time" in ref.dims:
        if ref.sizes["time"] != 1:
            raise ValueError(
                "reference DataArray has a time dim of length "
                f"{ref.sizes['time']}; pass one volume (z, y, x), e.g. data.median('time')."
            )
        ref = ref.isel(time=0)
    if "z" not in ref.dims and data.sizes["z"] == 1:
        ref = ref.expand_dims("z")
    if set(ref.dims) != {"z", "y", "x"}:
        raise ValueError(f"reference DataArray must have dims (z, y, x); got {ref.dims}.")
    ref = ref.transpose("z", "y", "x")
    want = tuple(data.sizes[d] for d in ("z", "y", "x"))
    if ref.shape != want:
        raise ValueError(
            f"reference volume has shape {ref.shape}, data volumes are {want} (z, y, x)."
        )
    vol = np.asarray(ref.values, dtype=np.float64)
    if not np.all(np.isfinite(vol)):
        raise ValueError("reference volume contains NaN or inf; fill or crop it first.")
    if np.ptp(vol) == 0:
        raise ValueError("reference volume is constant; it has no structure to register to.")
    return vol
