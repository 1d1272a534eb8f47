"""Signal preparation before NMF: standardization, sign split and cleaning.

Every function takes an :class:`xarray.DataArray` with a ``time`` dim (a
recording ``(time, z, y, x)`` or anything with a ``time`` dim), returns a new
``DataArray`` with the same dims, coords and attrs (float32), and appends one
line describing what it did to ``attrs["history"]`` (a single string, one line
per step, so it survives netCDF/NIfTI-sidecar round trips).

Standardization (issue 2)
    :func:`standardize` (z-score or percent signal change per voxel over time)
    and :func:`split_sign` (non-negative ``pos``/``neg`` channels for NMF).

Cleaning before standardization (issue 8)
    :func:`detrend` (polynomial), :func:`filter_temporal` (zero-phase
    Butterworth), :func:`regress_global` (optional global-signal regression),
    :func:`smooth_spatial` (Gaussian, FWHM in mm, anisotropic voxels) and
    :func:`clean`, which chains them (with frame censoring from
    :mod:`fusi_nmf.qc`) in one documented order. Frame QC (DVARS, framewise
    displacement, censoring) and the brain mask live in :mod:`fusi_nmf.qc`.

The temporal steps keep each voxel's temporal mean (they remove slow trends and
fluctuations, not the baseline), so the output is still a Power Doppler image
whose intensity means something (brain mask, percent signal change).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr

from fusi_nmf import qc
from fusi_nmf._progress import status
from fusi_nmf._xr import (
    SPATIAL_DIMS,
    append_history,
    as_time_matrix,
    check_dataarray,
    column_blocks,
    frame_blocks,
    from_time_matrix,
    mask_features,
    time_matrix,
)
from fusi_nmf.timing import REGULAR_RTOL

__all__ = [
    "CENSOR_WARN_SHARE",
    "CLEAN_DEFAULTS",
    "append_history",
    "clean",
    "detrend",
    "filter_temporal",
    "regress_global",
    "smooth_spatial",
    "split_sign",
    "standardize",
    "voxel_size",
]

STANDARDIZE_METHODS = ("zscore", "psc")

# A voxel whose temporal std is below this fraction of |mean| carries no signal
# above float32 rounding; it is treated as constant (output 0, not noise blown up).
_REL_FLAT = 1e-6


# --------------------------------------------------------------------------- standardize


def standardize(data: xr.DataArray, method: str = "zscore", dim: str = "time") -> xr.DataArray:
    """Standardize every voxel over time.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with a ``dim`` dimension (usually ``(time, z, y, x)``).
    method : {"zscore", "psc"}, default "zscore"
        ``"zscore"``: ``(x - mean) / std`` with the sample standard deviation
        (``ddof=1``). ``"psc"``: percent signal change from the temporal mean,
        ``100 * (x - mean) / mean``.
    dim : str, default "time"
        Dimension to standardize over.

    Returns
    -------
    xarray.DataArray
        float32, same dims, coords and attrs as ``data``; ``attrs["standardize"]``
        holds the method and ``attrs["history"]`` gains one line. Voxels with zero
        variance (``zscore``; in practice std below 1e-6 of the mean's magnitude,
        i.e. below float32 resolution) or zero mean (``psc``) give 0, never NaN.

    Raises
    ------
    TypeError
        ``data`` is not a numeric DataArray.
    ValueError
        Unknown ``method``, no ``dim`` dimension, fewer than 2 samples along it,
        or NaN/Inf values.
    """
    if method not in STANDARDIZE_METHODS:
        raise ValueError(
            f"method={method!r} is not known; use one of {STANDARDIZE_METHODS} "
            "('zscore': per-voxel z-score, 'psc': percent signal change)."
        )
    data = check_dataarray(data, dim=dim)
    n = data.sizes[dim]
    if n < 2:
        raise ValueError(f"data has {n} sample(s) along {dim!r}; standardizing needs at least 2.")
    x, axis = time_matrix(data, dim)
    out = np.empty(x.shape, dtype=np.float32)
    n_special = 0  # constant (zscore) or zero-mean (psc) voxels, set to 0
    for cols, block in column_blocks(x):  # each voxel on its own: same numbers, less memory
        mean = block.mean(axis=0, keepdims=True)
        centred = block - mean
        if method == "zscore":
            std = np.sqrt((centred**2).sum(axis=0, keepdims=True) / (n - 1))
            special = std <= _REL_FLAT * np.abs(mean)
            special |= std == 0
            out[:, cols] = np.where(special, 0.0, centred / np.where(special, 1.0, std))
        else:
            special = mean == 0
            out[:, cols] = np.where(special, 0.0, 100.0 * centred / np.where(special, 1.0, mean))
        n_special += int(special.sum())
    if method == "zscore":
        line = f"standardize: zscore over {dim!r} (ddof=1); {n_special} constant voxel(s) -> 0"
    else:
        line = (
            f"standardize: psc over {dim!r} (100*(x-mean)/mean); "
            f"{n_special} zero-mean voxel(s) -> 0"
        )
    attrs = append_history(data.attrs, line)
    attrs["standardize"] = method
    if method == "psc":
        attrs["units"] = "%"
    else:
        attrs["units"] = "1"
    return xr.DataArray(
        np.ascontiguousarray(from_time_matrix(out, data, axis)),
        dims=data.dims,
        coords=data.coords,
        attrs=attrs,
        name=data.name,
    )


def split_sign(z: xr.DataArray) -> xr.DataArray:
    """Split a signed signal into two non-negative channels for NMF.

    Parameters
    ----------
    z : xarray.DataArray
        Signed signal (usually z-scored) with a ``time`` dim, e.g. ``(time, z, y, x)``.

    Returns
    -------
    xarray.DataArray
        float32 with a new ``sign`` dim (coords ``["pos", "neg"]``) inserted right
        after ``time``, e.g. ``(time, sign, z, y, x)``. ``pos = max(z, 0)`` and
        ``neg = max(-z, 0)``, both non-negative, and ``pos - neg == z``. Coords and
        attrs are kept; ``attrs["history"]`` gains one line.

    Raises
    ------
    ValueError
        No ``time`` dim, a ``sign`` dim already present, or NaN/Inf values.
    """
    z = check_dataarray(z, name="z")
    if "sign" in z.dims:
        raise ValueError(
            "z already has a 'sign' dim; split_sign expects a signed signal such as the "
            "output of standardize(), not an already split one."
        )
    x = np.asarray(z.values, dtype=np.float32)
    axis = z.get_axis_num("time") + 1
    # written straight into the stacked array: no separate pos/neg copies
    stacked = np.empty((*x.shape[:axis], 2, *x.shape[axis:]), dtype=np.float32)
    pos, neg = np.moveaxis(stacked, axis, 0)
    np.maximum(x, 0, out=pos)
    np.negative(x, out=neg)
    np.maximum(neg, 0, out=neg)
    dims = (*z.dims[:axis], "sign", *z.dims[axis:])
    coords = {name: coord for name, coord in z.coords.items()}
    coords["sign"] = ("sign", np.array(["pos", "neg"]))
    attrs = append_history(z.attrs, "split_sign: pos=max(z,0), neg=max(-z,0) on new dim 'sign'")
    return xr.DataArray(stacked, dims=dims, coords=coords, attrs=attrs, name=z.name)


# --------------------------------------------------------------------------- cleaning helpers


def _rebuild(data: xr.DataArray, values: np.ndarray, line: str, **attrs) -> xr.DataArray:
    """New float32 DataArray like ``data`` with ``values``, history ``line`` and extra attrs."""
    new_attrs = append_history(data.attrs, line)
    new_attrs.update(attrs)
    return xr.DataArray(
        np.asarray(values, dtype=np.float32),
        dims=data.dims,
        coords=data.coords,
        attrs=new_attrs,
        name=data.name,
    )


def _time_values(data: xr.DataArray, dim: str, *, need: str) -> np.ndarray:
    """The ``dim`` coord as float seconds; a clear error when it is missing."""
    if dim not in data.coords:
        raise ValueError(
            f"data has no {dim!r} coordinate; {need} needs frame times in seconds "
            f"(assign them with data.assign_coords({dim}=onsets_in_s))."
        )
    t = np.asarray(data[dim].values)
    if np.issubdtype(t.dtype, np.datetime64) or np.issubdtype(t.dtype, np.timedelta64):
        t = (t - t[0]) / np.timedelta64(1, "s")
    t = t.astype(np.float64)
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError(f"the {dim!r} coordinate must increase strictly; sort the frames first.")
    return t


def _sampling_rate(t: np.ndarray, dim: str, censored: bool = False) -> float:
    """Sampling rate in Hz of a regularly sampled time axis (``censored``: frames were dropped)."""
    if t.size < 2:
        raise ValueError(f"need at least 2 frames along {dim!r} to know the sampling rate.")
    dt = np.diff(t)
    step = float(np.median(dt))
    if np.max(np.abs(dt - step)) > REGULAR_RTOL * step:
        if censored:
            advice = ("Frames were dropped by censoring: censor with method='interpolate' "
                      "before filtering and drop afterwards (fusi_nmf.signal.clean does this).")
        else:
            advice = ("The frame onsets are irregular: resample onto a uniform grid first "
                      "with fusi_nmf.timing.resample_uniform. The pipeline does this unless "
                      "it was switched off (resample_time=False, --no-resample-time).")
        raise ValueError(
            f"the {dim!r} coordinate is not regularly sampled (steps from {dt.min():.4g} to "
            f"{dt.max():.4g} s); temporal filtering needs a regular grid. {advice}"
        )
    return 1.0 / step


# --------------------------------------------------------------------------- detrend


def detrend(data: xr.DataArray, order: int = 1, dim: str = "time") -> xr.DataArray:
    """Remove a polynomial trend over time from every voxel, keeping its mean.

    A least-squares polynomial of degree ``order`` in the frame times (Legendre
    basis on times scaled to [-1, 1], well conditioned for any order) is fitted
    to each voxel and removed; the voxel's temporal mean is then added back. A
    trend that *is* a polynomial of degree <= ``order`` is removed exactly
    (up to float32 rounding) and a constant voxel is unchanged.

    Keeping the mean keeps the output a Power Doppler image: intensities stay
    positive and comparable across voxels (brain mask, percent signal change),
    and a later z-score is unaffected by it.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with a ``dim`` dimension and coordinate (frame times in s; frames
        may be irregular, e.g. after dropping censored frames).
    order : int, default 1
        Polynomial degree: 0 does nothing (the mean is kept), 1 removes a linear
        drift, 2 a quadratic one, ...
    dim : str, default "time"

    Returns
    -------
    xarray.DataArray
        float32, same dims, coords and attrs, one more line in ``attrs["history"]``.
    """
    data = check_dataarray(data, dim=dim)
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 0:
        raise ValueError(
            f"order must be a non-negative integer (polynomial degree), got {order!r}."
        )
    n = data.sizes[dim]
    if order >= n:
        raise ValueError(
            f"order={order} needs more than {order} frames along {dim!r}, data has {n}; "
            "use a lower order."
        )
    t = _time_values(data, dim, need="detrend")
    span = t[-1] - t[0]
    tn = 2.0 * (t - t[0]) / span - 1.0 if span > 0 else np.zeros_like(t)
    basis = np.polynomial.legendre.legvander(tn, order)
    x, axis = time_matrix(data, dim)
    out = np.empty(x.shape, dtype=np.float32)
    for cols, block in column_blocks(x):  # each voxel on its own: same numbers, less memory
        coef, *_ = np.linalg.lstsq(basis, block, rcond=None)
        out[:, cols] = block - basis @ coef + block.mean(axis=0, keepdims=True)
    return _rebuild(
        data,
        from_time_matrix(out, data, axis),
        f"detrend: polynomial order {order} over {dim!r} removed, temporal mean kept",
    )


# --------------------------------------------------------------------------- temporal filter

# Up to this many frames filter_temporal applies the filter as an (n, n) matrix (a GEMM,
# cost ~ n^2 per voxel; still faster than sosfiltfilt at 3000 frames, 3.7 vs 5.2 s); longer
# recordings run sosfiltfilt itself (cost ~ n per voxel).
_FILTER_MATRIX_MAX_FRAMES = 3000


def filter_temporal(
    data: xr.DataArray,
    high_pass: float | None = None,
    low_pass: float | None = None,
    order: int = 4,
    dim: str = "time",
) -> xr.DataArray:
    """Zero-phase Butterworth filter of every voxel over time.

    Designed with :func:`scipy.signal.butter` (second-order sections) and run
    forward and backward with :func:`scipy.signal.sosfiltfilt`, so there is no
    phase shift and the effective order is doubled. The sampling rate comes from
    the ``dim`` coordinate (seconds), which must be regular. A high-pass
    (or band-pass) removes the mean along with the slow fluctuations; the
    temporal mean of each voxel is added back, as in :func:`detrend`.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with a regularly sampled ``dim`` coordinate in seconds.
    high_pass : float, optional
        Cut-off in Hz below which fluctuations are removed (e.g. 0.01).
    low_pass : float, optional
        Cut-off in Hz above which fluctuations are removed.
    order : int, default 4
        Butterworth order (per pass).
    dim : str, default "time"

    Returns
    -------
    xarray.DataArray
        float32, same dims, coords and attrs, one more line in ``attrs["history"]``.

    Raises
    ------
    ValueError
        No cut-off given; a cut-off <= 0 or >= the Nyquist frequency; ``high_pass
        >= low_pass``; irregular frame times; too few frames for the filter's
        padding.
    """
    # scipy.signal/ndimage are imported where used: this module is on the CLI's start-up
    # path (pipeline imports it), and python -X importtime measured scipy.signal at
    # more than xarray + pandas together, scipy.ndimage at +0.7 s on a loaded machine
    from scipy.signal import butter, sosfiltfilt

    data = check_dataarray(data, dim=dim)
    if high_pass is None and low_pass is None:
        raise ValueError("filter_temporal needs high_pass and/or low_pass (cut-offs in Hz).")
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"order must be a positive integer (Butterworth order), got {order!r}.")
    fs = _sampling_rate(_time_values(data, dim, need="filter_temporal"), dim,
                        censored=data.attrs.get("censor_method") == "drop")
    nyquist = fs / 2.0
    for name, value in (("high_pass", high_pass), ("low_pass", low_pass)):
        if value is None:
            continue
        if not np.isfinite(value) or value <= 0 or value >= nyquist:
            raise ValueError(
                f"{name}={value!r} Hz is outside (0, Nyquist); frames are {1 / fs:.4g} s apart "
                f"(sampling rate {fs:.4g} Hz), so cut-offs must lie strictly between 0 and "
                f"{nyquist:.4g} Hz."
            )
    if high_pass is not None and low_pass is not None:
        if high_pass >= low_pass:
            raise ValueError(
                f"high_pass={high_pass} Hz must be below low_pass={low_pass} Hz for a band-pass."
            )
        sos = butter(order, [high_pass, low_pass], btype="bandpass", fs=fs, output="sos")
        what = f"band-pass {high_pass:g}-{low_pass:g} Hz"
    elif high_pass is not None:
        sos = butter(order, high_pass, btype="highpass", fs=fs, output="sos")
        what = f"high-pass {high_pass:g} Hz"
    else:
        sos = butter(order, low_pass, btype="lowpass", fs=fs, output="sos")
        what = f"low-pass {low_pass:g} Hz"
    x, axis = time_matrix(data, dim)
    padlen = 3 * (2 * len(sos) + 1)
    if x.shape[0] <= padlen:
        raise ValueError(
            f"data has {x.shape[0]} frames along {dim!r}; an order-{order} zero-phase filter "
            f"needs more than {padlen}. Lower the order or use detrend() instead."
        )
    # Filter around the mean (no step at the padded edges), then set each voxel's
    # temporal mean back to the input's exactly (a high-/band-pass removes it).
    # Mirror-pad the whole recording: far smaller edge transients than scipy's short
    # odd extension for cut-offs near 1/duration (0.01 Hz on a few minutes).
    n = x.shape[0]
    op = None
    if n <= _FILTER_MATRIX_MAX_FRAMES:
        # The zero-phase filter with its padding is linear in the signal: filtering the
        # identity gives the (n, n) matrix that filters every voxel by a GEMM. Same
        # numbers to float64 rounding; 751 x 9120 voxels: 0.18 s instead of 0.3 s plus
        # ~1 s to allocate the tripled, transposed copy sosfiltfilt works on.
        op = sosfiltfilt(sos, np.eye(n), axis=0, padtype="even", padlen=n - 1)
    out = np.empty(x.shape, dtype=np.float32)
    for cols, block in column_blocks(x):  # each voxel on its own: same numbers, less memory
        mean = block.mean(axis=0, keepdims=True)
        block -= mean
        if op is not None:
            filtered = op @ block
        else:
            filtered = sosfiltfilt(sos, block, axis=0, padtype="even", padlen=n - 1)
        filtered += mean - filtered.mean(axis=0, keepdims=True)
        out[:, cols] = filtered
    return _rebuild(
        data,
        from_time_matrix(out, data, axis),
        f"filter_temporal: zero-phase Butterworth order {order} {what} over {dim!r} "
        f"(fs {fs:.4g} Hz), temporal mean kept",
    )


# --------------------------------------------------------------------------- global signal


def regress_global(
    data: xr.DataArray, mask: xr.DataArray | None = None, dim: str = "time"
) -> xr.DataArray:
    """Regress the global signal out of every voxel (optional, off by default).

    The global signal ``g(t)`` is the mean over all non-time dims (within
    ``mask`` if given). Each voxel's time course is regressed on ``g - mean(g)``
    and the fitted part removed; the voxel's temporal mean is kept.

    Trade-offs: global-signal regression removes fluctuations shared by the whole
    field of view (physiological noise, gain changes, residual motion surges), but
    also any true activity that is widespread, and it forces the residuals of all
    voxels to be anti-correlated on average, which can create negative
    "sources" that are not in the data (Murphy et al. 2009, NeuroImage 44:893).
    Prefer it only when a global fluctuation is known to dominate; it is off in
    :func:`clean` unless asked for.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with a ``dim`` dimension, e.g. ``(time, z, y, x)``.
    mask : xarray.DataArray of bool, optional
        Voxels that define the global signal (e.g. :func:`fusi_nmf.qc.brain_mask`);
        all voxels are still cleaned.
    dim : str, default "time"

    Returns
    -------
    xarray.DataArray
        float32, same dims, coords and attrs; ``attrs["history"]`` gains one line.
    """
    data = check_dataarray(data, dim=dim)
    x, axis = as_time_matrix(data, dim)
    if mask is not None:
        keep = mask_features(mask, data, dim)
        if not keep.any():
            raise ValueError("mask selects no voxel; the global signal would be empty.")
        g = x[:, keep].mean(axis=1)
        where = f"mean over {int(keep.sum())} masked voxels"
    else:
        g = x.mean(axis=1)
        where = "mean over all voxels"
    gc = g - g.mean()
    norm = float(gc @ gc)
    if norm > 0:
        beta = (gc @ (x - x.mean(axis=0, keepdims=True))) / norm
        x = x - np.outer(gc, beta)
    return _rebuild(
        data,
        from_time_matrix(x, data, axis),
        f"regress_global: global signal ({where}) regressed out, temporal mean kept",
    )


# --------------------------------------------------------------------------- spatial smoothing

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def voxel_size(data: xr.DataArray, dim: str) -> float:
    """Voxel size in mm along ``dim``: the coord's ``voxdim`` attr, else its spacing."""
    if dim not in data.coords:
        raise ValueError(
            f"data has no {dim!r} coordinate; smoothing in mm needs voxel positions in mm."
        )
    coord = data[dim]
    if "voxdim" in coord.attrs:
        size = float(coord.attrs["voxdim"])
    elif coord.size > 1:
        steps = np.diff(np.asarray(coord.values, dtype=np.float64))
        size = float(np.median(np.abs(steps)))
    else:
        raise ValueError(
            f"cannot tell the voxel size along {dim!r}: one voxel and no 'voxdim' attr."
        )
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"voxel size along {dim!r} is {size!r} mm; it must be positive.")
    return size


def smooth_spatial(data: xr.DataArray, fwhm_mm: float | Mapping[str, float]) -> xr.DataArray:
    """Gaussian smoothing of every frame with a FWHM in millimetres.

    Voxels are anisotropic (x 0.1, y 0.04832, z 0.4 mm), so the kernel width is
    set per axis in voxel units: ``sigma = fwhm / (2 sqrt(2 ln 2)) / voxdim``.
    Voxel sizes come from the coords' ``voxdim`` attr (else their spacing). An axis
    with a single voxel (a single-slice recording's ``z``) is not smoothed. The
    boundary mode is ``"reflect"``, so the spatial mean of each frame is preserved.

    Parameters
    ----------
    data : xarray.DataArray
        Signal with spatial dims among ``z, y, x`` (other dims, e.g. ``time`` or
        ``sign``, are not smoothed).
    fwhm_mm : float or mapping of dim -> float
        Full width at half maximum in mm, the same for every spatial axis, or per
        axis (e.g. ``{"x": 0.2, "y": 0.2, "z": 0}``). 0 means no smoothing.

    Returns
    -------
    xarray.DataArray
        float32, same dims, coords and attrs; ``attrs["history"]`` gains one line.
    """
    from scipy.ndimage import gaussian_filter  # start-up cost: see filter_temporal

    if not isinstance(data, xr.DataArray):
        raise TypeError(f"data must be an xarray.DataArray, got {type(data).__name__}.")
    spatial = [d for d in SPATIAL_DIMS if d in data.dims]
    if not spatial:
        raise ValueError(f"data has no spatial dim among {SPATIAL_DIMS} (dims {tuple(data.dims)}).")
    if isinstance(fwhm_mm, Mapping):
        unknown = [d for d in fwhm_mm if d not in spatial]
        if unknown:
            raise ValueError(f"fwhm_mm names dims {unknown} that are not spatial dims {spatial}.")
        fwhm = {d: fwhm_mm.get(d, 0.0) for d in spatial}
    else:
        fwhm = dict.fromkeys(spatial, fwhm_mm)
    for d, value in fwhm.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"fwhm_mm for {d!r} must be a number in mm, got {value!r}.") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(
                f"fwhm_mm={value!r} for {d!r} is invalid; give a non-negative width in mm "
                "(0 = no smoothing)."
            )
        fwhm[d] = value
    check_dataarray(data, dim=spatial[0])
    sigma = [0.0] * data.ndim
    parts = []
    for d in spatial:
        if fwhm[d] == 0 or data.sizes[d] == 1:
            continue
        s = fwhm[d] * FWHM_TO_SIGMA / voxel_size(data, d)
        sigma[data.get_axis_num(d)] = s
        parts.append(f"{d} {fwhm[d]:g} mm (sigma {s:.3g} vox)")
    values = np.asarray(data.values)
    out = np.empty(values.shape, dtype=np.float32)
    # in blocks along the first axis when it is not smoothed (time, usually): every
    # frame is filtered on its own, so the numbers are the same with less memory
    n_first = values.shape[0]
    frames = [slice(0, n_first)] if sigma[0] else frame_blocks(n_first, values[0].size)
    for part in frames:
        block = np.asarray(values[part], dtype=np.float64)
        if any(sigma):
            block = gaussian_filter(block, sigma=sigma, mode="reflect", truncate=4.0)
        out[part] = block
    values = out
    line = "smooth_spatial: Gaussian FWHM " + (", ".join(parts) if parts else "none (no-op)")
    return _rebuild(data, values, line)


# --------------------------------------------------------------------------- chain

#: Defaults of :func:`clean`, chosen out of sample. Tuned with
#: ``benchmarks/measure_cleaning.py --rows tune --preset default --seeds 0 1`` (simulator
#: v3, every real-data trait on, k=10), by the mean chance-corrected matched time-course
#: |r| over both NMF modes (``(r - chance) / (1 - chance)``; chance ~0.19): high-pass
#: 0.01 Hz + detrend 1 + FD > 0.05 mm / DVARS > 4 z censoring by interpolation + 0.2 mm
#: FWHM smoothing of z-scores scored 0.335 (smoothing raw power instead: 0.277; 0.3 mm:
#: 0.315; 0.1 mm: 0.287; high-pass 0.02 Hz: 0.332; no censoring: 0.268). Global-signal
#: regression on top scored 0.605, but it is left off by a rule fixed before tuning: the
#: simulator has no widespread true activity, which real brains do have and which the
#: regression would remove (and it creates anticorrelations, see :func:`regress_global`),
#: so its gain here is an artefact of what the simulator leaves out. The effect of the
#: chosen defaults is reported on seeds 10-12 (:func:`fusi_nmf.metrics.validation_table`) and
#: across signal-to-noise (``benchmarks/snr_sweep.py``).
CLEAN_DEFAULTS: dict[str, object] = {
    "detrend_order": 1,
    "high_pass": 0.01,
    "low_pass": None,
    "censor_fd": 0.05,
    "censor_dvars": 4.0,
    "censor_method": "interpolate",
    "smooth_fwhm_mm": 0.2,
    "smooth_after_zscore": True,
    "global_regression": False,
}

#: Share of censored frames above which :func:`clean` warns: with more than a fifth
#: of the frames invented by interpolation (or dropped), the time courses say more
#: about the interpolation than about the brain (a common exclusion rule in fMRI,
#: e.g. Power et al. 2014, NeuroImage 84:320, excludes runs with too few clean frames).
CENSOR_WARN_SHARE = 0.2


def clean(
    data: xr.DataArray,
    *,
    detrend_order: int | None = CLEAN_DEFAULTS["detrend_order"],
    high_pass: float | None = CLEAN_DEFAULTS["high_pass"],
    low_pass: float | None = CLEAN_DEFAULTS["low_pass"],
    censor_fd: float | None = CLEAN_DEFAULTS["censor_fd"],
    censor_dvars: float | None = CLEAN_DEFAULTS["censor_dvars"],
    censor_method: str = CLEAN_DEFAULTS["censor_method"],
    smooth_fwhm_mm: float | Mapping[str, float] | None = CLEAN_DEFAULTS["smooth_fwhm_mm"],
    smooth_after_zscore: bool = CLEAN_DEFAULTS["smooth_after_zscore"],
    global_regression: bool = CLEAN_DEFAULTS["global_regression"],
    motion: xr.DataArray | xr.Dataset | None = None,
    fd: xr.DataArray | None = None,
    mask: xr.DataArray | None = None,
    progress: bool | None = None,
) -> xr.DataArray:
    """Apply the cleaning chain before :func:`standardize`, in a fixed order.

    Order (each step skipped when its parameter is ``None``/``False``/0):

    1. **Frame censoring** - frames with framewise displacement above
       ``censor_fd`` mm (from ``motion`` or ``fd``; skipped, with a status line,
       when neither is given) or DVARS (computed on the input, see
       :func:`fusi_nmf.qc.dvars`) above ``censor_dvars`` robust z are replaced by
       linear interpolation, so the brief power surges at motion events do not
       ring through the temporal filter.
    2. **Detrending** - polynomial of degree ``detrend_order``.
    3. **Temporal filtering** - zero-phase Butterworth ``high_pass``/``low_pass`` (Hz).
    4. **Global-signal regression** - only if ``global_regression`` (see
       :func:`regress_global` for the trade-offs), over ``mask`` if given.
    5. **Spatial smoothing** - Gaussian, ``smooth_fwhm_mm`` in mm. With
       ``smooth_after_zscore=True`` the smoothing acts on each voxel's z-score,
       not on raw power: the recording is z-scored, smoothed, and mapped back
       with each voxel's own temporal mean and s.d. (so the output is still
       power and the later :func:`standardize` sees the smoothed z-scores).
       Smoothing raw power lets a vessel ten times brighter than the
       parenchyma beside it impose its fluctuations on it, which is the
       bright-vessel dominance the z-score exists to remove.
    6. If ``censor_method="drop"``, the censored frames are dropped last (the
       temporal filter needs a regular grid, so they are interpolated first).

    Every step keeps the temporal mean, so the result is still a Power Doppler
    recording and goes straight into :func:`standardize`. The defaults
    (:data:`CLEAN_DEFAULTS`) come from the recovery measurement in
    ``benchmarks/measure_cleaning.py``.

    Parameters
    ----------
    data : xarray.DataArray
        Registered recording ``(time, z, y, x)``.
    detrend_order, high_pass, low_pass, censor_fd, censor_dvars, censor_method,
    smooth_fwhm_mm, global_regression
        See the steps above and the functions they call.
    motion : xarray.DataArray or xarray.Dataset, optional
        Registration parameters ``(time, parameter)``, or the motion Dataset of
        :func:`fusi_nmf.registration.register_volumewise`, for FD censoring.
    fd : xarray.DataArray, optional
        Precomputed framewise displacement ``(time,)`` in mm, instead of ``motion``.
    mask : xarray.DataArray of bool, optional
        Brain mask for DVARS and the global signal.
    progress : bool, optional
        Print one status line per step.

    Returns
    -------
    xarray.DataArray
        The cleaned recording, float32; ``attrs["history"]`` lists the steps.
        When frames were censored, ``attrs`` records them (``censored_frames``
        count, ``censored_share``, ``censored_indices`` as comma-separated
        input frame indices, ``censor_method``) and a ``censored`` bool coord
        over ``time`` marks the interpolated frames (with ``"drop"`` they are gone).

    Warns
    -----
    UserWarning
        More than :data:`CENSOR_WARN_SHARE` of the frames were censored.
    """
    data = check_dataarray(data)
    out = data
    flags = None
    if censor_fd is not None or censor_dvars is not None:
        if censor_method not in qc.CENSOR_METHODS:
            raise ValueError(
                f"censor_method={censor_method!r} is not known; use one of {qc.CENSOR_METHODS}."
            )
        fd_series = None
        if censor_fd is not None and motion is None and fd is None:
            # an unregistered recording has no motion estimate: DVARS still catches surges
            status("clean: no motion= or fd= given, FD censoring skipped", progress)
            censor_fd = None
        if censor_fd is not None:
            fd_series = _framewise_displacement(motion, fd)
        dv = qc.dvars(data, mask=mask) if censor_dvars is not None else None
        if censor_fd is not None or censor_dvars is not None:
            flags = qc.flag_frames(fd=fd_series, fd_mm=censor_fd, dvars=dv, dvars_z=censor_dvars)
            out = qc.censor(out, flags, method="interpolate", progress=progress)
            share = float(np.mean(np.asarray(flags.values)))
            if share > CENSOR_WARN_SHARE:
                warnings.warn(
                    f"clean: {share:.0%} of the frames ({int(flags.sum())} of {flags.size}) were "
                    f"censored (FD > {censor_fd} mm, DVARS > {censor_dvars} z), above the "
                    f"{CENSOR_WARN_SHARE:.0%} this package trusts: the time courses are largely "
                    "interpolated. Check the motion estimate, raise the thresholds, or use "
                    "censor_method='drop' and treat the recording with caution.",
                    UserWarning,
                    stacklevel=2,
                )
    if detrend_order:
        status(f"clean: detrend order {detrend_order}", progress)
        out = detrend(out, order=detrend_order)
    if high_pass is not None or low_pass is not None:
        status(f"clean: filter high_pass={high_pass} low_pass={low_pass} Hz", progress)
        out = filter_temporal(out, high_pass=high_pass, low_pass=low_pass)
    if global_regression:
        status("clean: global-signal regression", progress)
        out = regress_global(out, mask=mask)
    if smooth_fwhm_mm and smooth_after_zscore:
        status(f"clean: spatial smoothing of z-scores FWHM {smooth_fwhm_mm} mm", progress)
        out = _smooth_zscores(out, smooth_fwhm_mm)
    elif smooth_fwhm_mm:
        status(f"clean: spatial smoothing FWHM {smooth_fwhm_mm} mm", progress)
        out = smooth_spatial(out, smooth_fwhm_mm)
    if flags is not None:
        out = out.assign_coords(censored=("time", np.asarray(flags.values, dtype=bool)))
    if flags is not None and censor_method == "drop" and bool(flags.any()):
        keep = np.flatnonzero(~np.asarray(flags.values))
        attrs = append_history(
            out.attrs, f"clean: dropped the {int(flags.sum())} censored frame(s)"
        )
        attrs["censor_method"] = "drop"
        out = out.isel(time=keep)
        out.attrs = attrs
    return out


def _framewise_displacement(
    motion: xr.DataArray | xr.Dataset | None, fd: xr.DataArray | None
) -> xr.DataArray:
    """FD ``(time,)`` in mm from ``motion`` (parameters or motion Dataset) or a given ``fd``.

    The computation is :func:`fusi_nmf.registration.framewise_displacement` (the one
    definition); this only picks the input.
    """
    if (motion is None) == (fd is None):
        raise ValueError("pass exactly one of motion= (parameters) or fd= (precomputed FD).")
    if isinstance(motion, xr.Dataset):
        if "framewise_displacement" in motion:
            fd = motion["framewise_displacement"]
        elif "parameters" in motion:
            motion = motion["parameters"]
        else:
            raise ValueError(
                "the motion Dataset has neither 'framewise_displacement' nor 'parameters' "
                f"(variables: {list(motion.data_vars)})."
            )
    if fd is None:
        # registration pulls in scipy.ndimage (start-up cost: see filter_temporal)
        from fusi_nmf.registration import framewise_displacement

        return framewise_displacement(motion)
    if not isinstance(fd, xr.DataArray) or fd.dims != ("time",):
        raise TypeError("fd must be an xarray.DataArray with the single dim 'time' (in mm).")
    return check_dataarray(fd, name="fd")


def _smooth_zscores(data: xr.DataArray, fwhm_mm) -> xr.DataArray:
    """Smooth each voxel's z-score and map back with its own mean and s.d. (power units)."""
    x, axis = time_matrix(data, "time")
    mean = np.empty((1, x.shape[1]))
    std = np.empty((1, x.shape[1]))
    z = np.empty(x.shape, dtype=np.float32)
    for cols, block in column_blocks(x):  # each voxel on its own: same numbers, less memory
        m = block.mean(axis=0, keepdims=True)
        sd = block.std(axis=0, ddof=1, keepdims=True)
        sd = np.where(sd > _REL_FLAT * np.abs(m), sd, 0.0)
        z[:, cols] = np.where(sd > 0, (block - m) / np.where(sd > 0, sd, 1.0), 0.0)
        mean[:, cols], std[:, cols] = m, sd
    zda = data.copy(data=from_time_matrix(z, data, axis))
    del z
    smoothed, _ = time_matrix(smooth_spatial(zda, fwhm_mm), "time")
    out = np.empty(x.shape, dtype=np.float32)
    for cols, block in column_blocks(smoothed):
        out[:, cols] = block * std[:, cols] + mean[:, cols]
    return _rebuild(
        data,
        from_time_matrix(out, data, axis),
        f"smooth_spatial: Gaussian FWHM {fwhm_mm} mm on per-voxel z-scores, mapped back "
        "with each voxel's temporal mean and s.d.",
    )
