"""Frame quality control and the brain mask.

* :func:`dvars` - per-frame root-mean-square change of the image (in % of each
  voxel's mean), which catches the brief power surges at motion events.
* :func:`flag_frames` - combine FD and DVARS thresholds into a boolean per frame.
* :func:`censor` - drop (or linearly interpolate) flagged frames, keeping the
  ``time`` coord honest and reporting how many frames were censored.
* :func:`brain_mask` - a simple intensity/variance mask ``(z, y, x)`` usable as
  NMF's ``mask=``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from fusi_nmf._progress import status
from fusi_nmf._xr import (
    SPATIAL_DIMS,
    append_history,
    check_dataarray,
    column_blocks,
    frame_blocks,
    mask_features,
    time_matrix,
)

__all__ = [
    "brain_mask",
    "censor",
    "dvars",
    "flag_frames",
    "robust_zscore",
]

CENSOR_METHODS = ("drop", "interpolate")


# --------------------------------------------------------------------------- DVARS


def dvars(data: xr.DataArray, mask: xr.DataArray | None = None, dim: str = "time") -> xr.DataArray:
    """DVARS: how much the whole image changes from one frame to the next.

    ``DVARS[t] = sqrt(mean_v ((x[t, v] - x[t-1, v]) / mean_t(x[:, v]) * 100)^2)``,
    the root mean square over voxels of the frame-to-frame change, each voxel's
    change expressed in percent of its temporal mean (Power Doppler spans orders
    of magnitude between vessels and parenchyma; the relative change weighs them
    alike). Voxels with zero mean are skipped. ``DVARS[0] = 0``.

    Parameters
    ----------
    data : xarray.DataArray
        Recording ``(time, z, y, x)`` (before standardization).
    mask : xarray.DataArray of bool, optional
        Voxels to average over (e.g. :func:`brain_mask`); default all.
    dim : str, default "time"

    Returns
    -------
    xarray.DataArray
        ``(time,)`` float64 named ``"dvars"`` with the time coord, ``units="%"``.
    """
    data = check_dataarray(data, dim=dim)
    x, _ = time_matrix(data, dim)
    n_time, n_feat = x.shape
    mean = np.empty(n_feat)
    for cols, block in column_blocks(x):
        mean[cols] = block.mean(axis=0)
    keep = np.abs(mean) > 0
    if mask is not None:
        keep &= mask_features(mask, data, dim)
    if not keep.any():
        raise ValueError("no voxel with a non-zero mean (inside the mask) to compute DVARS on.")
    mean = mean[keep]
    # in blocks of frames (each frame's mean over voxels is its own reduction), so no
    # float64 copy of the whole recording is made
    values = np.zeros(n_time)
    for frames in frame_blocks(n_time, n_feat):
        start, stop = max(frames.start, 1), frames.stop
        if start >= stop:
            continue
        rel = np.asarray(x[start - 1 : stop][:, keep], dtype=np.float64)
        rel /= mean
        step = np.diff(rel, axis=0)
        step **= 2
        values[start:stop] = 100.0 * np.sqrt(np.mean(step, axis=1))
    coords = {dim: data[dim]} if dim in data.coords else None
    return xr.DataArray(
        values,
        dims=(dim,),
        coords=coords,
        name="dvars",
        attrs={"units": "%", "long_name": "RMS frame-to-frame change, % of voxel mean"},
    )


def robust_zscore(series: xr.DataArray) -> xr.DataArray:
    """``(s - median) / (1.4826 * MAD)``: a z-score that outliers do not inflate."""
    values = np.asarray(series.values, dtype=np.float64)
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if mad == 0:
        mad = values.std() or 1.0
    return series.copy(data=(values - med) / mad)


def flag_frames(
    *,
    fd: xr.DataArray | None = None,
    fd_mm: float | None = None,
    dvars: xr.DataArray | None = None,
    dvars_z: float | None = None,
) -> xr.DataArray:
    """Frames to censor: FD above ``fd_mm`` or DVARS above ``dvars_z`` robust z.

    Parameters
    ----------
    fd : xarray.DataArray, optional
        Framewise displacement ``(time,)`` in mm (see
        :func:`fusi_nmf.registration.framewise_displacement`).
    fd_mm : float, optional
        Flag frames whose FD exceeds this many mm.
    dvars : xarray.DataArray, optional
        DVARS ``(time,)`` from :func:`dvars`.
    dvars_z : float, optional
        Flag frames whose DVARS exceeds the median by more than ``dvars_z`` robust
        standard deviations (1.4826 MAD), see :func:`robust_zscore`.

    Returns
    -------
    xarray.DataArray
        Boolean ``(time,)``, True where a frame should be censored.
    """
    flags = None
    for name, series, threshold in (("fd", fd, fd_mm), ("dvars", dvars, dvars_z)):
        if threshold is None:
            continue
        if series is None:
            raise ValueError(f"a {name} threshold was given but no {name}= series.")
        if not np.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"the {name} threshold must be a positive number, got {threshold!r}.")
        score = robust_zscore(series) if name == "dvars" else series
        flagged = (score > threshold).astype(bool)
        flags = flagged if flags is None else (flags | flagged)
    if flags is None:
        raise ValueError("flag_frames needs fd= with fd_mm= and/or dvars= with dvars_z=.")
    return flags.rename("censor")


# --------------------------------------------------------------------------- censor


def _flags_from(
    frames_or_threshold, n: int, dim: str, fd: xr.DataArray | None, dvars_: xr.DataArray | None
) -> tuple[np.ndarray, str]:
    """Boolean flags (n,) and a description from the many accepted forms."""
    spec = frames_or_threshold
    if isinstance(spec, float | int | np.floating | np.integer) and not isinstance(
        spec, bool | np.bool_
    ):
        if (fd is None) == (dvars_ is None):
            raise ValueError(
                "a numeric threshold needs exactly one series to apply to: pass fd= (mm) or "
                "dvars= (%), or pass a boolean mask / frame indices instead."
            )
        name, series = ("fd", fd) if fd is not None else ("dvars", dvars_)
        values = np.asarray(series.values, dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"{name} has {values.size} values but data has {n} frames.")
        return values > float(spec), f"{name} > {float(spec):g}"
    if isinstance(spec, xr.DataArray):
        if spec.dims != (dim,):
            raise ValueError(f"a DataArray of flags must have the single dim {dim!r}.")
        spec = spec.values
    arr = np.asarray(spec)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean flags have shape {arr.shape}; data has {n} frames.")
        return arr.copy(), "given frame mask"
    if arr.size == 0:
        return np.zeros(n, dtype=bool), "no frames given"
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 1:
        raise TypeError(
            "frames_or_threshold must be a boolean mask over time, a 1-D sequence of integer "
            f"frame indices, or a number (threshold for fd=/dvars=); got {arr.dtype} {arr.shape}."
        )
    if arr.min() < -n or arr.max() >= n:
        raise ValueError(f"frame indices must lie in [0, {n}); got {arr.min()}..{arr.max()}.")
    flags = np.zeros(n, dtype=bool)
    flags[arr] = True
    return flags, "given frame indices"


def censor(
    data: xr.DataArray,
    frames_or_threshold: float | Sequence[int] | np.ndarray | xr.DataArray,
    *,
    method: str = "drop",
    fd: xr.DataArray | None = None,
    dvars: xr.DataArray | None = None,
    dim: str = "time",
    progress: bool | None = None,
) -> xr.DataArray:
    """Censor flagged frames: drop them, or replace them by linear interpolation.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with a ``dim`` dimension and coordinate.
    frames_or_threshold : bool mask, int sequence or number
        Which frames to censor: a boolean mask over time (True = censor, e.g. from
        :func:`flag_frames`), integer frame indices, or a threshold applied to the
        one series given as ``fd=`` (mm) or ``dvars=`` (frames above it are censored).
    method : {"drop", "interpolate"}, default "drop"
        ``"drop"`` removes the frames; the ``time`` coord keeps the true onsets of
        the frames that remain (so it becomes irregular). ``"interpolate"`` keeps
        every frame and replaces each flagged one, voxel by voxel, by linear
        interpolation in time between the nearest kept frames (the nearest kept
        frame at the ends).
    fd, dvars : xarray.DataArray, optional
        Series ``(time,)`` a numeric threshold applies to.
    dim : str, default "time"
    progress : bool, optional
        Print the censoring summary line (default: ``FUSI_NMF_PROGRESS``).

    Returns
    -------
    xarray.DataArray
        float32 with attrs ``censored_frames`` (count), ``censored_share``
        (fraction of the input frames), ``censored_indices`` (comma-separated frame
        indices in the input), ``censor_method``, and one more history line.

    Raises
    ------
    ValueError
        Unknown method, flags of the wrong length, or flags that would leave fewer
        than 2 frames (a threshold that censors everything).
    """
    if method not in CENSOR_METHODS:
        raise ValueError(f"method={method!r} is not known; use one of {CENSOR_METHODS}.")
    data = check_dataarray(data, dim=dim)
    n = data.sizes[dim]
    flags, why = _flags_from(frames_or_threshold, n, dim, fd, dvars)
    n_bad = int(flags.sum())
    if n - n_bad < 2:
        raise ValueError(
            f"censoring ({why}) would flag {n_bad} of {n} frames, leaving {n - n_bad}; at least "
            "2 must remain. Raise the threshold (or check the FD/DVARS units)."
        )
    idx = np.flatnonzero(flags)
    share = n_bad / n
    if method == "drop":
        out = data.isel({dim: np.flatnonzero(~flags)}).astype(np.float32)
    else:
        out = data.astype(np.float32, copy=True)
        if n_bad:
            if dim in data.coords:
                t = np.asarray(data[dim].values, dtype=np.float64)
            else:
                t = np.arange(n, dtype=np.float64)
            # the flagged frames of the output (a view: time first), from the kept
            # frames of the input in float64; nothing else is copied
            frames = np.moveaxis(out.values, data.get_axis_num(dim), 0)
            source = np.moveaxis(np.asarray(data.values), data.get_axis_num(dim), 0)
            good = np.flatnonzero(~flags)
            # nearest kept frame before / after each flagged one (clipped at the ends)
            pos = np.searchsorted(good, idx)
            before = good[np.clip(pos - 1, 0, good.size - 1)]
            after = good[np.clip(pos, 0, good.size - 1)]
            span = t[after] - t[before]
            w = np.where(span > 0, (t[idx] - t[before]) / np.where(span > 0, span, 1.0), 0.0)
            w = w.reshape(-1, *([1] * (frames.ndim - 1)))
            frames[idx] = (1 - w) * np.asarray(source[before], dtype=np.float64) + w * np.asarray(
                source[after], dtype=np.float64
            )
    attrs = append_history(
        data.attrs,
        f"censor: {method} {n_bad}/{n} frames ({100 * share:.1f} %) flagged by {why}",
    )
    attrs.update(
        censored_frames=n_bad,
        censored_share=float(share),
        censored_indices=",".join(str(i) for i in idx),
        censor_method=method,
    )
    out.attrs = attrs
    status(f"censor: {n_bad} of {n} frames ({100 * share:.1f} %) {method}", progress)
    return out


# --------------------------------------------------------------------------- brain mask


def brain_mask(
    data: xr.DataArray,
    threshold: float = 0.05,
    *,
    fill_holes: bool = True,
    dim: str = "time",
) -> xr.DataArray:
    """A simple brain mask from the mean Power Doppler image.

    A voxel is in the mask when (1) its temporal mean exceeds ``threshold`` times
    the 99th percentile of the mean image (over voxels with a positive mean),
    and (2) it varies over time (std > 0). Out-of-brain background (gel, skull
    shadow, zero padding) has a Power Doppler level one or more orders of
    magnitude below perfused tissue, so a low fraction separates them without
    cutting out dark parenchyma between vessels; (2) drops constant/padded
    voxels. With ``fill_holes`` the holes enclosed in each slice's (y, x) mask are
    filled (dark parenchyma surrounded by brain).

    Parameters
    ----------
    data : xarray.DataArray
        Recording ``(time, z, y, x)`` before standardization (raw or cleaned).
    threshold : float, default 0.05
        Fraction (0, 1) of the bright reference level.
    fill_holes : bool, default True
    dim : str, default "time"

    Returns
    -------
    xarray.DataArray
        Boolean ``(z, y, x)`` (the data's non-time dims) named ``"brain_mask"``
        with the spatial coords; pass it as NMF's ``mask=``.
    """
    # imported here: qc is on the CLI's start-up path (pipeline -> signal -> qc) and
    # scipy.ndimage adds ~0.7 s there (python -X importtime, loaded machine)
    from scipy.ndimage import binary_fill_holes

    data = check_dataarray(data, dim=dim)
    if "sign" in data.dims:
        raise ValueError("brain_mask needs the recording before split_sign (no 'sign' dim).")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be a fraction in (0, 1), got {threshold!r}.")
    mean = data.mean(dim)
    std = data.std(dim)
    positive = mean.values[mean.values > 0]
    if positive.size == 0:
        raise ValueError("the mean image has no positive voxel: is this Power Doppler data?")
    ref = float(np.percentile(positive, 99))
    mask = (mean > threshold * ref) & (std > 0)
    if fill_holes and "y" in mask.dims and "x" in mask.dims:
        mask = xr.apply_ufunc(
            binary_fill_holes,
            mask,
            input_core_dims=[["y", "x"]],
            output_core_dims=[["y", "x"]],
            vectorize=True,
        ).transpose(*mean.dims)
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError(f"brain_mask is empty at threshold={threshold}; lower the threshold.")
    order = [d for d in SPATIAL_DIMS if d in mask.dims] + [
        d for d in mask.dims if d not in SPATIAL_DIMS
    ]
    mask = mask.transpose(*order)
    mask.name = "brain_mask"
    mask.attrs = {
        "description": (
            f"temporal mean > {threshold:g} x 99th percentile of the mean image ({ref:.4g}) "
            f"and std > 0{', holes filled per slice' if fill_holes else ''}"
        ),
        "n_voxels": int(mask.sum()),
    }
    return mask
