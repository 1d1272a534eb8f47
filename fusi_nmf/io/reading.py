"""Read NIfTI recordings and maps into xarray (:func:`load_recording`, :func:`load_nifti`)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from fusi_nmf._provenance import dataset_attrs
from fusi_nmf._xr import SPATIAL_DIMS
from fusi_nmf.io._base import RECORDING_DIMS, RECORDING_NAME
from fusi_nmf.io._header import (
    _affine_from_header,
    _read_extension,
    _spatial_coords,
    _time_unit_factor,
)
from fusi_nmf.io._sidecar import _load_sidecar, _snake_attrs


def _check_nifti_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; check the path, or fetch/simulate the recording first "
            "(python -m fusi_nmf fetch / python -m fusi_nmf simulate)."
        )
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a NIfTI file; pass the *_pwd.nii.gz file.")
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(
            f"{path} is not a NIfTI file (expected a .nii or .nii.gz name); "
            "pass the *_pwd.nii.gz image, not its sidecar or another format."
        )
    return path


def _open_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path, mmap=False)
    except Exception as exc:  # nibabel raises several types for broken files
        raise ValueError(
            f"{path} could not be read as NIfTI ({type(exc).__name__}: {exc}); "
            "the file is damaged or not a NIfTI image: download or export it again."
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(
            f"{path} is a {type(img).__name__}, not a NIfTI image; convert it to NIfTI "
            "(e.g. with nibabel) first."
        )
    return img


def _read_voxels(img: nib.Nifti1Image, path: Path, dtype: Any) -> np.ndarray:
    """Read the voxel array (scaled, in ``dtype``) without an intermediate float64 copy."""
    try:
        return np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:
        raise ValueError(
            f"{path}: the header was read but the voxel data could not be "
            f"({type(exc).__name__}: {exc}); the file is truncated or damaged: "
            "download or export it again."
        ) from exc


def _as_positive_float(value: Any, key: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not (np.isfinite(out) and out > 0):
        raise ValueError(
            f"{where}: {key} must be a positive number of seconds, got {value!r}; fix the sidecar."
        )
    return out


def _time_coord(img: nib.Nifti1Image, meta: dict, n_frames: int, path: Path, where: str):
    """Frame onsets in s from the sidecar or pixdim[4] (see the fusi_nmf.io docstring)."""
    pixdim_t = float(img.header["pixdim"][4]) * _time_unit_factor(img)
    rt = meta.get("RepetitionTime")
    if "VolumeTiming" in meta:
        vt = meta["VolumeTiming"]
        try:
            time = np.asarray(vt, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: VolumeTiming must be a list of numbers (s).") from exc
        if time.ndim != 1 or time.size != n_frames:
            raise ValueError(
                f"{where}: VolumeTiming has {time.size} onsets but {path} has {n_frames} "
                "frames; the sidecar does not belong to this image or the image was cut: "
                "make VolumeTiming list one onset (s) per frame."
            )
        how = "VolumeTiming"
    elif rt is not None:
        tr = _as_positive_float(rt, "RepetitionTime", where)
        delay = meta.get("DelayAfterTrigger", 0.0)
        try:
            delay = float(delay if delay is not None else 0.0)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{where}: DelayAfterTrigger must be a number of seconds, got {delay!r}."
            ) from exc
        time = delay + np.arange(n_frames, dtype=np.float64) * tr
        how = "RepetitionTime"
    else:
        if not (np.isfinite(pixdim_t) and pixdim_t > 0):
            raise ValueError(
                f"{path}: no timing information (no VolumeTiming or RepetitionTime in a "
                f"sidecar, and pixdim[4] = {img.header['pixdim'][4]}); add RepetitionTime "
                "(s) to the JSON sidecar or set pixdim[4] in the header."
            )
        time = np.arange(n_frames, dtype=np.float64) * pixdim_t
        how = "pixdim"
    if not np.all(np.isfinite(time)):
        raise ValueError(f"{where}: frame times contain NaN/Inf; fix {how} in the sidecar.")
    if n_frames > 1 and not np.all(np.diff(time) > 0):
        i = int(np.flatnonzero(np.diff(time) <= 0)[0])
        raise ValueError(
            f"{where}: frame times from {how} are not strictly increasing "
            f"(frame {i} at {time[i]:g} s, frame {i + 1} at {time[i + 1]:g} s); "
            "list one increasing onset (s) per frame."
        )
    if rt is not None and np.isfinite(pixdim_t) and pixdim_t > 0:
        tr = float(rt)
        if abs(tr - pixdim_t) > 1e-3 * tr:
            warnings.warn(
                f"{path}: the sidecar's RepetitionTime ({tr:g} s) and the header's "
                f"pixdim[4] ({pixdim_t:g} s) disagree by {abs(tr - pixdim_t) / tr:.2%}; "
                f"using the sidecar ({how}). Fix whichever one is wrong.",
                UserWarning,
                stacklevel=3,
            )
    return time


def _check_finite(values: np.ndarray, dims: tuple[str, ...], path: Path) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = ~finite
    n_bad = int(bad.sum())
    n_nan = int(np.isnan(values).sum())
    first = np.unravel_index(int(np.flatnonzero(bad)[0]), values.shape)
    where = ", ".join(f"{d}={int(i)}" for d, i in zip(dims, first, strict=True))
    extra = ""
    if dims[0] == "time":
        frames = np.flatnonzero(bad.reshape(values.shape[0], -1).any(axis=1))
        listed = ", ".join(str(int(f)) for f in frames[:10]) + (" ..." if frames.size > 10 else "")
        extra = f" in {frames.size} of {values.shape[0]} frames ({listed})"
    raise ValueError(
        f"{path}: {n_bad} non-finite voxel values ({n_nan} NaN, {n_bad - n_nan} Inf){extra}; "
        f"first at {where} (index). Power Doppler must be finite: replace them "
        "(e.g. interpolate the bad frames or drop the voxels) and save the file again."
    )


def _squeeze_trailing(shape: tuple[int, ...], keep: int) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > keep and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def load_recording(
    path: str | os.PathLike, *, sidecar: str | os.PathLike | Mapping | None = None
) -> xr.DataArray:
    """Load a fUSI-BIDS Power Doppler recording (NIfTI + JSON sidecar) as a DataArray.

    Parameters
    ----------
    path : str or path-like
        The ``*_pwd.nii.gz`` (or ``.nii``) image, 4-D ``(x, y, z, time)``.
    sidecar : str, path-like or mapping, optional
        The BIDS JSON sidecar. Default: the file beside ``path`` with ``.json``
        instead of ``.nii.gz``; if that is missing, a warning is issued and the
        timing comes from ``pixdim[4]``. A mapping is used as the sidecar content.

    Returns
    -------
    xarray.DataArray
        Named ``power_doppler``, dims ``(time, z, y, x)``, float32. Coords ``time``
        (s) and ``x``, ``y``, ``z`` (mm, with ``voxdim``); attrs: the sidecar keys
        in snake_case, ``source_file``, ``affine`` (16 floats, row-major),
        ``affine_source`` and ``bids_sidecar_keys``. See :mod:`fusi_nmf.io` for
        the rules.

    Raises
    ------
    FileNotFoundError
        ``path`` (or an explicit ``sidecar``) does not exist.
    ValueError
        Not a NIfTI image; not 4-D; NaN/Inf voxels; a sidecar that is not a JSON
        object, whose ``VolumeTiming`` length differs from the number of frames, or
        whose timing is not strictly increasing.

    Warns
    -----
    UserWarning
        No sidecar; no sform/qform; sidecar ``RepetitionTime`` and ``pixdim[4]``
        differ by more than 0.1 %.
    """
    path = _check_nifti_path(path)
    img = _open_nifti(path)
    shape = _squeeze_trailing(img.shape, 4)
    if len(shape) < 4:
        raise ValueError(
            f"{path} is a {len(shape)}-D image {tuple(img.shape)} with no time axis; "
            "load_recording needs a 4-D (x, y, z, time) Power Doppler series. "
            "For a single volume or a map use fusi_nmf.io.load_nifti."
        )
    if len(shape) > 4:
        raise ValueError(
            f"{path} is a {len(shape)}-D image {tuple(img.shape)}; load_recording needs "
            "4-D (x, y, z, time). For maps with extra dims use fusi_nmf.io.load_nifti."
        )
    ext_meta = _read_extension(img)
    saved_dims = (ext_meta or {}).get("dims")
    if saved_dims and "time" not in saved_dims:
        raise ValueError(
            f"{path} holds a map with dims {tuple(saved_dims)}, not a (time, z, y, x) "
            "recording; read it with fusi_nmf.io.load_nifti."
        )
    meta, json_path = _load_sidecar(path, sidecar)
    where = str(json_path) if json_path is not None else f"sidecar of {path}"
    time = _time_coord(img, meta, shape[3], path, where)
    # save_nifti also stores the exact time coord; use it when the sidecar agrees with it
    # (RepetitionTime rebuilds onsets only up to float rounding).
    saved_time = (ext_meta or {}).get("coords", {}).get("time", {}).get("values")
    if saved_time is not None and len(saved_time) == time.size:
        saved_time = np.asarray(saved_time, dtype=np.float64)
        tol = 1e-6 * (float(np.median(np.diff(time))) if time.size > 1 else 1.0)
        if np.allclose(saved_time, time, rtol=0, atol=tol):
            time = saved_time

    values = _read_voxels(img, path, np.float32).reshape(shape, order="A")
    # The file is (x, y, z, t) in Fortran order, so the reversed view is C-contiguous
    # (t, z, y, x): no copy.
    values = values.transpose(3, 2, 1, 0)
    _check_finite(values, RECORDING_DIMS, path)

    affine, source = _affine_from_header(img, path)
    coords: dict[str, Any] = {"time": xr.Variable("time", time, attrs={"units": "s"})}
    coords.update(_spatial_coords(affine, source, shape[:3], ext_meta))

    attrs = _snake_attrs(meta)
    attrs["bids_sidecar_keys"] = [str(k) for k in meta]
    attrs["source_file"] = str(path)
    attrs["affine"] = [float(v) for v in affine.ravel()]
    attrs["affine_source"] = source
    # A recording inside a fetched dataset carries its citation and licence.
    attrs.update(dataset_attrs(path))
    return xr.DataArray(
        values, dims=RECORDING_DIMS, coords=coords, name=RECORDING_NAME, attrs=attrs
    )


def load_nifti(path: str | os.PathLike) -> xr.DataArray:
    """Load any NIfTI volume, series or map as a DataArray with named dims.

    Files written by :func:`save_nifti` come back exactly (dims, coords, name,
    attrs, dtype). Other files get dims ``(z, y, x)`` for 3-D,
    ``(volume, z, y, x)`` for 4-D and ``(volume, dim_5, z, y, x)`` ... beyond, with
    integer coords on the non-spatial dims. The spatial dims always come back last,
    as ``(z, y, x)``, with mm coords (also when the saved DataArray had none). NaN
    values are allowed (masked maps).

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    xarray.DataArray
        Non-spatial dims first, then ``(z, y, x)``; ``x, y, z`` coords in mm as in
        :func:`load_recording`; attrs ``source_file``, ``affine``, ``affine_source``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a NIfTI image, or fewer than 3 dims.
    """
    path = _check_nifti_path(path)
    img = _open_nifti(path)
    meta = _read_extension(img)
    saved_dims = list((meta or {}).get("dims", []))
    extra_saved = [d for d in saved_dims if d not in SPATIAL_DIMS]
    shape = _squeeze_trailing(img.shape, max(3, 3 + len(extra_saved)))
    if len(shape) < 3:
        shape = shape + (1,) * (3 - len(shape))
    n_extra = len(shape) - 3
    if len(extra_saved) == n_extra and set(saved_dims) >= set(SPATIAL_DIMS):
        extra = extra_saved
    else:
        extra = ["volume", *[f"dim_{4 + i}" for i in range(1, n_extra)]][:n_extra]
        saved_dims = []
    meta_coords = (meta or {}).get("coords", {}) if saved_dims else {}

    dtype_name = (meta or {}).get("dtype") if saved_dims else None
    raw = _read_voxels(img, path, None).reshape(shape, order="A")
    if dtype_name == "bool":
        raw = raw.astype(bool)
    elif dtype_name and np.dtype(dtype_name) != raw.dtype:
        raw = raw.astype(dtype_name)
    # file (x, y, z, e1, e2, ...) -> memory (e1, e2, ..., z, y, x); a view, no copy
    values = raw.transpose(*range(3, len(shape)), 2, 1, 0)
    dims = (*extra, *SPATIAL_DIMS)

    affine, source = _affine_from_header(img, path)
    coords: dict[str, Any] = _spatial_coords(affine, source, shape[:3], meta)
    for i, dim in enumerate(extra):
        info = meta_coords.get(dim)
        if info is not None and len(info.get("values", [])) == shape[3 + i]:
            coords[dim] = xr.Variable(dim, np.asarray(info["values"]), attrs=info.get("attrs", {}))
        elif dim == "time" and i == 0:
            pixdim_t = float(img.header["pixdim"][4]) * _time_unit_factor(img)
            coords[dim] = xr.Variable(dim, np.arange(shape[3]) * pixdim_t, attrs={"units": "s"})
        else:
            coords[dim] = xr.Variable(dim, np.arange(shape[3 + i]))
    attrs = dict((meta or {}).get("attrs", {})) if saved_dims else {}
    attrs["source_file"] = str(path)
    attrs["affine"] = [float(v) for v in affine.ravel()]
    attrs["affine_source"] = source
    name = (meta or {}).get("name") if saved_dims else None
    return xr.DataArray(values, dims=dims, coords=coords, name=name, attrs=attrs)
