"""Signal preparation before NMF: standardization, sign split and cleaning.

Every function takes an :class:`xarray.DataArray` with a ``time`` dim (a
recording ``(time, z, y, x)`` or anything with a ``time`` dim), returns a new
``DataArray`` with the same dims, coords and attrs (float32), and appends one
line describing what it did to ``attrs["history"]`` (a single string, one line
per step, so it survives netCDF/NIfTI-sidecar round trips).

Standardization (issue 2)
    :func:`standardize` (z-score or percent signal change per voxel over time)
    and :func:`split_sign` (non-negative ``pos``/``neg`` channels for NMF).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = [
    "append_history",
    "split_sign",
    "standardize",
]

STANDARDIZE_METHODS = ("zscore", "psc")

# A voxel whose temporal std is below this fraction of |mean| carries no signal
# above float32 rounding; it is treated as constant (output 0, not noise blown up).
_REL_FLAT = 1e-6


# --------------------------------------------------------------------------- helpers


def append_history(attrs: dict, line: str) -> dict:
    """Return a copy of ``attrs`` with ``line`` appended to ``attrs["history"]``.

    The history is one string with one processing step per line (a string, not a
    list, so it survives netCDF and JSON sidecars unchanged).
    """
    out = dict(attrs)
    previous = out.get("history")
    if isinstance(previous, list | tuple):
        previous = "\n".join(str(p) for p in previous)
    out["history"] = f"{previous}\n{line}" if previous else line
    return out


def _check_dataarray(data, name: str = "data", dim: str = "time") -> xr.DataArray:
    """Validate a DataArray input: right type, has ``dim``, finite values."""
    if not isinstance(data, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.DataArray with a {dim!r} dim, got {type(data).__name__}; "
            "load a recording with fusi_nmf.io.load_recording or wrap your array in "
            "xarray.DataArray(..., dims=('time', 'z', 'y', 'x'))."
        )
    if dim not in data.dims:
        raise ValueError(
            f"{name} has no {dim!r} dim (dims are {tuple(data.dims)}); "
            f"rename the time axis to {dim!r} or pass dim=<name of the time axis>."
        )
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}.")
    values = np.asarray(data.values)
    if not np.all(np.isfinite(values)):
        n_bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(
            f"{name} contains {n_bad} NaN/Inf value(s); fill or drop them "
            "(e.g. data.fillna(0) or fusi_nmf.qc.censor) before this step."
        )
    return data


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
    data = _check_dataarray(data, dim=dim)
    n = data.sizes[dim]
    if n < 2:
        raise ValueError(
            f"data has {n} sample(s) along {dim!r}; standardizing needs at least 2."
        )
    axis = data.get_axis_num(dim)
    x = np.asarray(data.values, dtype=np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    centred = x - mean
    if method == "zscore":
        std = np.sqrt((centred**2).sum(axis=axis, keepdims=True) / (n - 1))
        flat = std <= _REL_FLAT * np.abs(mean)
        flat |= std == 0
        scale = np.where(flat, 1.0, std)
        out = np.where(flat, 0.0, centred / scale)
        line = (
            f"standardize: zscore over {dim!r} (ddof=1); "
            f"{int(flat.sum())} constant voxel(s) -> 0"
        )
    else:
        zero = mean == 0
        scale = np.where(zero, 1.0, mean)
        out = np.where(zero, 0.0, 100.0 * centred / scale)
        line = (
            f"standardize: psc over {dim!r} (100*(x-mean)/mean); "
            f"{int(zero.sum())} zero-mean voxel(s) -> 0"
        )
    attrs = append_history(data.attrs, line)
    attrs["standardize"] = method
    if method == "psc":
        attrs["units"] = "%"
    else:
        attrs["units"] = "1"
    return xr.DataArray(
        out.astype(np.float32), dims=data.dims, coords=data.coords, attrs=attrs, name=data.name
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
    z = _check_dataarray(z, name="z")
    if "sign" in z.dims:
        raise ValueError(
            "z already has a 'sign' dim; split_sign expects a signed signal such as the "
            "output of standardize(), not an already split one."
        )
    x = np.asarray(z.values, dtype=np.float32)
    pos = np.maximum(x, 0)
    neg = np.maximum(-x, 0)
    axis = z.get_axis_num("time") + 1
    stacked = np.stack([pos, neg], axis=axis)
    dims = (*z.dims[:axis], "sign", *z.dims[axis:])
    coords = {name: coord for name, coord in z.coords.items()}
    coords["sign"] = ("sign", np.array(["pos", "neg"]))
    attrs = append_history(z.attrs, "split_sign: pos=max(z,0), neg=max(-z,0) on new dim 'sign'")
    return xr.DataArray(stacked, dims=dims, coords=coords, attrs=attrs, name=z.name)
