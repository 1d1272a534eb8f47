"""Write recordings and maps as NIfTI + sidecar (:func:`save_nifti`, :func:`save_recording`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from fusi_nmf._atomic import atomic_path, write_json
from fusi_nmf._xr import SPATIAL_DIMS
from fusi_nmf.io._base import RECORDING_DIMS
from fusi_nmf.io._header import _affine_for, _coord_values, _json_attrs, _jsonable, _pixdim_time
from fusi_nmf.io._sidecar import _INTERNAL_ATTRS, _sidecar_from_attrs, sidecar_path


def save_nifti(
    data: xr.DataArray, path: str | os.PathLike, *, affine: Any = None, qform_only: bool = False
) -> Path:
    """Write a volume, series or map DataArray as NIfTI, atomically.

    Parameters
    ----------
    data : xarray.DataArray
        Must have dims ``x``, ``y`` and ``z``; every other dim (``time``,
        ``component``, ``sign``, ... at most 4) goes on the 4th, 5th, ... NIfTI axis
        in the order it appears in ``data``: ``(time, z, y, x)`` is written as
        ``(x, y, z, time)``, ``(component, sign, z, y, x)`` as
        ``(x, y, z, component, sign)``.
    path : str or path-like
        Output ``.nii.gz`` or ``.nii`` file; its folder is created.
    affine : array-like, optional
        4x4 voxel-to-mm affine. Default: ``data.attrs["affine"]`` (shifted if the
        data were cropped), else one built from the x/y/z coords (spacing, origin).
    qform_only : bool, default False
        Write the affine as the qform only (``sform_code`` 0), as the fUSI-BIDS
        converter does; default: both sform and qform.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Both sform and qform are set (code 1, scanner; sform code 0 with ``qform_only``),
    ``xyzt_units`` are mm and s, and ``pixdim[4]`` is the frame period when the 4th
    axis is a regularly sampled ``time``, 0 when the onsets are irregular (no single
    repetition time: the onsets go to the sidecar's ``VolumeTiming``). The extra
    dims' names and coords, the dtype, the name and the JSON-like attrs are kept in
    a JSON header extension so :func:`load_nifti` restores them exactly. Values are
    written in their dtype (no scaling), so the round trip is exact; bool is
    stored as uint8.
    """
    if not isinstance(data, xr.DataArray):
        raise TypeError(
            f"save_nifti needs an xarray.DataArray with dims x, y, z, got {type(data).__name__}."
        )
    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: the output name must end in .nii.gz or .nii.")
    missing = [d for d in SPATIAL_DIMS if d not in data.dims]
    if missing:
        raise ValueError(
            f"cannot write {path}: data has dims {tuple(data.dims)}, missing {missing}; "
            "add them with data.expand_dims(...) (a single slice has z of size 1)."
        )
    extra = [d for d in data.dims if d not in SPATIAL_DIMS]
    if len(extra) > 4:
        raise ValueError(
            f"cannot write {path}: NIfTI holds at most 7 axes, data has {data.ndim} "
            f"({tuple(data.dims)}); stack or select some dims first."
        )
    dtype = data.dtype
    if dtype.kind == "b":
        file_dtype = np.dtype(np.uint8)
    elif dtype.kind == "f" and dtype.itemsize < 4:
        file_dtype = np.dtype(np.float32)  # NIfTI-1 has no float16; dtype restored on load
    elif dtype.kind in "fiu" and dtype.itemsize <= 8:
        file_dtype = dtype
    else:
        raise TypeError(f"cannot write {path}: dtype {dtype} has no NIfTI equivalent.")

    aff = _affine_for(data, affine)
    # (e_n, ..., e_1, z, y, x) in C order is (x, y, z, e_1, ..., e_n) in Fortran order
    values = np.asarray(data.transpose(*extra[::-1], *SPATIAL_DIMS).values)
    if file_dtype != dtype:
        values = values.astype(file_dtype)
    arr = values.T

    img = nib.Nifti1Image(arr, aff, dtype=file_dtype)
    hdr = img.header
    hdr.set_data_dtype(file_dtype)
    img.set_sform(aff, code=0 if qform_only else 1)
    img.set_qform(aff, code=1)
    hdr.set_xyzt_units("mm", "sec")
    zooms = list(hdr.get_zooms()[:3])
    for i, dim in enumerate(extra):
        zooms.append(_pixdim_time(_coord_values(data, dim)) if dim == "time" and i == 0 else 1.0)
    hdr.set_zooms(zooms)

    meta: dict[str, Any] = {
        "fusi_nmf": 1,
        "dims": [str(d) for d in data.dims],
        "dtype": str(dtype),
        "name": data.name if isinstance(data.name, str) else None,
        "affine": [float(v) for v in aff.ravel()],
        "coords": {},
        "attrs": _json_attrs(
            {k: v for k, v in data.attrs.items() if k not in _INTERNAL_ATTRS}, str(path)
        ),
    }
    for dim in (*extra, *("x", "y", "z")):
        if dim in data.coords:
            try:
                meta["coords"][dim] = {
                    "values": _jsonable(data[dim].values),
                    "attrs": _json_attrs(data[dim].attrs, f"{path} coord {dim!r}"),
                }
            except TypeError:
                warnings.warn(
                    f"{path}: coord {dim!r} has non-JSON values and was not stored.",
                    UserWarning,
                    stacklevel=2,
                )
    ext = nib.nifti1.Nifti1Extension(6, json.dumps(meta, allow_nan=True).encode("utf-8"))
    hdr.extensions.append(ext)

    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def save_recording(
    data: xr.DataArray, path: str | os.PathLike, *, qform_only: bool | None = None
) -> Path:
    """Write a recording as a fUSI-BIDS NIfTI plus its JSON sidecar.

    Parameters
    ----------
    data : xarray.DataArray
        Dims ``(time, z, y, x)`` (any order), with a ``time`` coord in s.
    path : str or path-like
        Output ``*_pwd.nii.gz``; the sidecar goes beside it with ``.json``.
    qform_only : bool, optional
        Write the affine as the qform only (``sform_code`` 0, the fUSI-BIDS
        converter's convention). Default: as the data came (qform only when
        ``attrs["affine_source"] == "qform"``), else sform and qform.

    Returns
    -------
    pathlib.Path
        ``path`` (the sidecar is :func:`sidecar_path` of it).

    Notes
    -----
    The attrs become BIDS CamelCase keys (the original names in
    ``attrs["bids_sidecar_keys"]`` win, else a known-key table, else the words
    capitalized). Timing is written from the ``time`` coord: ``RepetitionTime``
    (+ ``DelayAfterTrigger`` for a non-zero first onset) when regular, else (or if
    the data came with it) ``VolumeTiming``, and then ``pixdim[4]`` is 0, as the
    converter writes it. A recording loaded from such a file and saved again keeps
    its onsets, header conventions and sidecar keys. ``source_file``, ``affine`` and
    ``affine_source`` are not written to the sidecar.
    """
    if not isinstance(data, xr.DataArray):
        raise TypeError(
            f"save_recording needs an xarray.DataArray (time, z, y, x), got {type(data).__name__}."
        )
    if set(data.dims) != set(RECORDING_DIMS):
        raise ValueError(
            f"save_recording needs dims {RECORDING_DIMS}, got {tuple(data.dims)}; "
            "use save_nifti for maps with other dims."
        )
    if "time" not in data.coords:
        raise ValueError(
            "save_recording needs a 'time' coord in s to write the sidecar timing; "
            "assign one with data.assign_coords(time=onsets)."
        )
    time = np.asarray(data["time"].values, dtype=np.float64)
    if time.size > 1 and not np.all(np.diff(time) > 0):
        raise ValueError("save_recording: the time coord must be strictly increasing.")
    sidecar = _sidecar_from_attrs(data)
    if qform_only is None:
        qform_only = data.attrs.get("affine_source") == "qform"
    path = save_nifti(data.transpose(*RECORDING_DIMS), path, qform_only=bool(qform_only))
    write_json(sidecar_path(path), sidecar)
    return path
