"""Input checks shared by the registration modules: clear errors before any work."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

DIMS = ("time", "z", "y", "x")


def check_data(data: Any) -> xr.DataArray:
    """Return ``data`` as a (time, z, y, x) DataArray or raise a clear error.

    Parameters
    ----------
    data : Any
        Candidate recording.

    Returns
    -------
    DataArray
        ``data`` transposed to (time, z, y, x).

    Raises
    ------
    TypeError
        Not a real-valued numeric DataArray.
    ValueError
        Wrong dims, no frames, or fewer than 4 voxels along y or x.
    """
    if not isinstance(data, xr.DataArray):
        raise TypeError(
            f"data must be an xarray.DataArray with dims {DIMS}, got {type(data).__name__}; "
            "load a recording with fusi_nmf.io or fusi_nmf.simulate first."
        )
    missing = [d for d in DIMS if d not in data.dims]
    extra = [d for d in data.dims if d not in DIMS]
    if missing or extra:
        raise ValueError(
            f"data must have dims {DIMS}; got {tuple(data.dims)} "
            f"(missing {missing}, unexpected {extra}). Add a length-1 'z' dim for a "
            "single slice with data.expand_dims('z')."
        )
    if data.sizes["time"] < 1:
        raise ValueError("data has no frames (time has length 0).")
    if data.sizes["y"] < 4 or data.sizes["x"] < 4:
        raise ValueError(
            f"data is too small to register: y={data.sizes['y']}, x={data.sizes['x']} "
            "(need at least 4 voxels along y and x)."
        )
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise TypeError(f"data must be real-valued numeric, got dtype {data.dtype}.")
    return data.transpose(*DIMS)


def check_frames(arr: np.ndarray) -> None:
    """Raise if any frame of a (time, ...) array is non-finite or constant."""
    n_t = arr.shape[0]
    flat = arr.reshape(n_t, -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"data has NaN or inf in frames {bad_frames(~finite)}; drop or interpolate "
            "those frames before registration."
        )
    const = flat.max(axis=1) == flat.min(axis=1)
    if const.any():
        raise ValueError(
            f"frames {bad_frames(const)} are constant (no image structure to register); "
            "drop them (e.g. data.drop_isel(time=[...])) before registration."
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}.")


def check_positive_int(name: str, value: Any) -> None:
    """Raise unless ``value`` is an int >= 1 (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_non_negative(name: str, value: Any) -> None:
    """Raise unless ``value`` is a finite number >= 0."""
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")


def axis_geometry(data: xr.DataArray, dim: str) -> tuple[float, float]:
    """Return (first coordinate, step) in mm along ``dim`` (a regular grid is required)."""
    n = data.sizes[dim]
    if dim in data.coords and n > 1:
        c = np.asarray(data[dim].values, dtype=float)
        step = (c[-1] - c[0]) / (n - 1)
        if not np.isfinite(step) or step == 0:
            raise ValueError(f"coordinate '{dim}' must be finite and strictly monotonic.")
        if not np.allclose(np.diff(c), step, rtol=1e-3, atol=1e-9 * abs(step)):
            raise ValueError(
                f"coordinate '{dim}' is not regularly spaced; rigid registration needs a "
                "regular voxel grid."
            )
        return float(c[0]), float(step)
    voxdim = data[dim].attrs.get("voxdim") if dim in data.coords else None
    step = float(voxdim) if voxdim else 1.0
    first = float(data[dim].values[0]) if dim in data.coords else 0.0
    return first, step


def bad_frames(mask: np.ndarray, limit: int = 10) -> str:
    """Comma-separated indices of the True entries, shortened after ``limit``."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    return shown + (f", ... ({idx.size} in total)" if idx.size > limit else "")
