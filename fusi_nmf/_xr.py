"""Private xarray helpers shared by signal, qc, metrics and plotting.

One definition of each: the spatial dim names, the history attr, the input check,
the (time, features) matrix view of a recording and the motion-parameters check.
Kept in a private module at the bottom of the dependency graph so that
:mod:`fusi_nmf.signal` and :mod:`fusi_nmf.qc` both import it instead of importing
each other, and metrics and plotting check motion the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import xarray as xr

__all__ = [
    "SPATIAL_DIMS",
    "append_history",
    "as_time_matrix",
    "check_dataarray",
    "column_blocks",
    "frame_blocks",
    "from_time_matrix",
    "mask_features",
    "motion_parameters",
    "time_matrix",
]

# Spatial dims of a recording, in the order of its arrays (time first, then these).
SPATIAL_DIMS = ("z", "y", "x")


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


def check_dataarray(data, name: str = "data", dim: str = "time") -> xr.DataArray:
    """Validate a DataArray input: right type, has ``dim``, finite real values."""
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


def time_matrix(data: xr.DataArray, dim: str) -> tuple[np.ndarray, int]:
    """Matrix (n_time, n_features) in the data's own dtype, and the axis of ``dim``.

    A view of ``data.values`` when ``dim`` is the first axis (the usual layout), so
    per-block work (:func:`column_blocks`) needs no float64 copy of the whole recording.
    """
    axis = data.get_axis_num(dim)
    x = np.moveaxis(np.asarray(data.values), axis, 0)
    return x.reshape(x.shape[0], -1), axis


def as_time_matrix(data: xr.DataArray, dim: str) -> tuple[np.ndarray, int]:
    """float64 matrix (n_time, n_features) and the axis of ``dim`` (see :func:`time_matrix`)."""
    x, axis = time_matrix(data, dim)
    return x.astype(np.float64, copy=False), axis


# float64 bytes of one block of :func:`column_blocks` / :func:`frame_blocks` (a few MB:
# stays in cache and keeps a stage's peak memory near its input and output)
_BLOCK_BYTES = 4 * 2**20


def _slices(n: int, values_each: int) -> list[slice]:
    """Slices of ``range(n)``, each about ``_BLOCK_BYTES`` of float64 when every item
    holds ``values_each`` values."""
    width = max(1, _BLOCK_BYTES // (8 * max(1, values_each)))
    return [slice(j, min(j + width, n)) for j in range(0, n, width)]


def frame_blocks(n_frames: int, frame_size: int) -> list[slice]:
    """Slices of frames (the first axis), each about ``_BLOCK_BYTES`` as float64."""
    return _slices(n_frames, frame_size)


def column_blocks(x: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """``(columns, float64 copy of x[:, columns])`` for blocks of the columns of ``x``.

    Per-voxel computations (every column from its own values, in the same order) give
    the same numbers block by block as on the whole matrix, at a fraction of the
    memory: fresh memory is slow on some machines (each first touch of a page costs a
    fault), and a float64 copy of a recording is twice its float32 size.
    """
    for cols in _slices(x.shape[1], x.shape[0]):
        # always a copy (np.array): callers work on it in place, and with float64 data
        # x[:, cols] is a view of the caller's array
        yield cols, np.array(x[:, cols], dtype=np.float64)


def from_time_matrix(matrix: np.ndarray, data: xr.DataArray, axis: int) -> np.ndarray:
    """Inverse of :func:`as_time_matrix`."""
    shape = list(data.shape)
    moved = [shape[axis], *shape[:axis], *shape[axis + 1 :]]
    return np.moveaxis(matrix.reshape(moved), 0, axis)


def mask_features(mask, data: xr.DataArray, dim: str) -> np.ndarray:
    """Boolean mask over the flattened non-time features of ``data``."""
    if not isinstance(mask, xr.DataArray):
        raise TypeError("mask must be a boolean xarray.DataArray over the non-time dims.")
    other = [d for d in data.dims if d != dim]
    missing = [d for d in mask.dims if d not in other]
    if missing:
        raise ValueError(f"mask has dims {missing} that data lacks (data dims {tuple(data.dims)}).")
    full = mask.astype(bool).broadcast_like(data.isel({dim: 0}, drop=True)).transpose(*other)
    return np.asarray(full.values).reshape(-1)


def motion_parameters(motion: xr.Dataset | xr.DataArray, name: str) -> xr.DataArray:
    """The ``(time, parameter)`` DataArray of ``Workspace.motion()``, a truth or a DataArray."""
    if isinstance(motion, xr.Dataset):
        for key in ("parameters", "motion"):
            if key in motion:
                return motion[key]
        raise ValueError(
            f"{name} is a Dataset without a 'parameters' (or 'motion') variable "
            f"(variables: {list(motion.data_vars)}); pass Workspace.motion()."
        )
    if not isinstance(motion, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.Dataset or DataArray, got {type(motion).__name__}."
        )
    if set(motion.dims) != {"time", "parameter"}:
        raise ValueError(
            f"{name} must have dims ('time', 'parameter'), got {tuple(motion.dims)}."
        )
    return motion
