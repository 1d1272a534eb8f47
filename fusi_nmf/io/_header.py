"""NIfTI header <-> xarray coordinates: affine, voxel coordinates, time units, extension."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from fusi_nmf._atomic import _json_default


def _affine_from_header(img: nib.Nifti1Image, path: Path) -> tuple[np.ndarray, str]:
    hdr = img.header
    sform_code = int(hdr["sform_code"])
    qform_code = int(hdr["qform_code"])
    if sform_code > 0 or qform_code > 0:
        source = "sform" if sform_code > 0 else "qform"
        aff = hdr.get_sform() if sform_code > 0 else hdr.get_qform()
        aff = np.asarray(aff, dtype=np.float64)
        # The header holds float32; save_nifti also stores the float64 affine in the
        # extension: use it when it is the same matrix (exact round trip).
        saved = (_read_extension(img) or {}).get("affine")
        if saved is not None and np.size(saved) == 16:
            saved = np.asarray(saved, dtype=np.float64).reshape(4, 4)
            scale = max(float(np.abs(aff).max()), 1.0)
            if np.allclose(saved, aff, rtol=0, atol=1e-6 * scale):
                aff = saved
        return aff, source
    zooms = [float(z) for z in hdr["pixdim"][1:4]]
    bad = [z for z in zooms if not (np.isfinite(z) and z > 0)]
    warnings.warn(
        f"{path}: sform_code and qform_code are both 0, so the header has no affine; "
        f"using the voxel sizes in pixdim ({zooms[0]:g}, {zooms[1]:g}, {zooms[2]:g} mm) "
        "with the first voxel at 0 mm. Set the sform in the file to place it in space."
        + (" Non-positive pixdim replaced by 1 mm." if bad else ""),
        UserWarning,
        stacklevel=3,
    )
    zooms = [z if (np.isfinite(z) and z > 0) else 1.0 for z in zooms]
    return np.diag([*zooms, 1.0]), "pixdim"


def _axis_coords(affine: np.ndarray, shape_xyz: tuple[int, int, int]) -> dict[str, tuple]:
    """Coordinates (mm) of the voxel centres along x, y, z from an affine.

    Returns ``{dim: (values, voxdim, base, step)}`` where ``values = base + index * step``.
    """
    lin = affine[:3, :3]
    voxdim = np.sqrt((lin**2).sum(axis=0))
    if np.allclose(lin, np.diag(np.diag(lin)), rtol=0, atol=1e-9 * max(voxdim.max(), 1)):
        voxdim = np.abs(np.diag(lin))  # exact, no sqrt(x**2) rounding
        aligned = bool(np.all(np.diag(lin) > 0))
    else:
        aligned = False
    out = {}
    for a, dim in enumerate(("x", "y", "z")):
        if aligned:
            base, step = float(affine[a, 3]), float(lin[a, a])
        else:
            base, step = 0.0, float(voxdim[a])
        values = base + np.arange(shape_xyz[a], dtype=np.float64) * step
        out[dim] = (values, float(voxdim[a]), base, step)
    return out


def _read_extension(img: nib.Nifti1Image) -> dict | None:
    """Return the fusi_nmf JSON metadata stored in a header extension, if any."""
    for ext in img.header.extensions:
        if ext.get_code() != 6:
            continue
        raw = ext.get_content()
        try:
            meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(meta, dict) and "fusi_nmf" in meta:
            return meta
    return None


def _spatial_coords(
    affine: np.ndarray, source: str, shape_xyz: tuple[int, int, int], meta: dict | None
) -> dict[str, xr.Variable]:
    coords = {}
    stored = (meta or {}).get("coords", {})
    for dim, (values, voxdim, _, _) in _axis_coords(affine, shape_xyz).items():
        # Prefer the exact values written by save_nifti when they agree with the header.
        saved = stored.get(dim, {}).get("values")
        if saved is not None and len(saved) == len(values):
            saved = np.asarray(saved, dtype=np.float64)
            if np.allclose(saved, values, rtol=1e-6, atol=1e-6 * max(voxdim, 1e-12)):
                values = saved
                saved_voxdim = stored[dim].get("attrs", {}).get("voxdim")
                if isinstance(saved_voxdim, float) and math.isclose(
                    saved_voxdim, voxdim, rel_tol=1e-6
                ):
                    voxdim = saved_voxdim
        coords[dim] = xr.Variable(dim, values, attrs={"units": "mm", "voxdim": voxdim})
    return coords


def _time_unit_factor(img: nib.Nifti1Image) -> float:
    t_unit = img.header.get_xyzt_units()[1]
    return {"msec": 1e-3, "usec": 1e-6}.get(t_unit, 1.0)  # "sec" or "unknown" -> s


def _jsonable(value: Any) -> Any:
    """Plain-JSON copy of ``value`` (numpy scalars/arrays -> Python); raise TypeError if not."""
    if isinstance(value, np.generic | np.ndarray | os.PathLike):
        return _jsonable(_json_default(value))  # the conversion every JSON writer here uses
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON-like")


def _json_attrs(attrs: Mapping, what: str) -> dict:
    out = {}
    for key, value in attrs.items():
        try:
            out[str(key)] = _jsonable(value)
        except TypeError:
            warnings.warn(
                f"{what}: attr {key!r} ({type(value).__name__}) is not JSON-like and was "
                "not written; convert it to a number, string or list to keep it.",
                UserWarning,
                stacklevel=4,
            )
    return out


def _affine_for(data: xr.DataArray, affine: Any) -> np.ndarray:
    """The affine that places ``data``'s first voxel where its coords say it is."""
    shape_xyz = tuple(data.sizes[d] for d in ("x", "y", "z"))
    if affine is not None:
        aff = np.asarray(affine, dtype=np.float64)
        if aff.shape == (16,):
            aff = aff.reshape(4, 4)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}.")
        return aff
    stored = data.attrs.get("affine")
    if stored is not None:
        aff = np.asarray(stored, dtype=np.float64)
        if aff.size == 16 and np.all(np.isfinite(aff)):
            aff = aff.reshape(4, 4)
            fitted = _shift_to_coords(aff, data, shape_xyz)
            if fitted is not None:
                return fitted
            warnings.warn(
                "attrs['affine'] does not match the x/y/z coords (the data were resampled "
                "or the coords edited); writing an axis-aligned affine built from the coords.",
                UserWarning,
                stacklevel=3,
            )
    return _affine_from_coords(data)


def _coord_values(data: xr.DataArray, dim: str) -> np.ndarray | None:
    if dim not in data.coords:
        return None
    return np.asarray(data[dim].values, dtype=np.float64)


def _shift_to_coords(aff: np.ndarray, data: xr.DataArray, shape_xyz) -> np.ndarray | None:
    """Shift ``aff`` by a whole number of voxels so it matches cropped coords, or None."""
    ref = _axis_coords(aff, shape_xyz)
    offset = np.zeros(3)
    for a, dim in enumerate(("x", "y", "z")):
        values = _coord_values(data, dim)
        if values is None:
            continue  # no coord: trust the affine
        _, _, base, step = ref[dim]
        k = (values[0] - base) / step
        k_int = round(k)
        tol = 1e-4
        if abs(k - k_int) > tol:
            return None
        expected = base + (k_int + np.arange(values.size)) * step
        if not np.allclose(values, expected, rtol=0, atol=tol * abs(step)):
            return None
        offset[a] = k_int
    out = aff.copy()
    out[:3, 3] = aff[:3, :3] @ offset + aff[:3, 3]
    return out


def _affine_from_coords(data: xr.DataArray) -> np.ndarray:
    aff = np.eye(4)
    for a, dim in enumerate(("x", "y", "z")):
        values = _coord_values(data, dim)
        voxdim = data[dim].attrs.get("voxdim") if dim in data.coords else None
        if values is None:
            step, origin = 1.0, 0.0
        elif values.size > 1:
            steps = np.diff(values)
            step = float(steps.mean())
            if not np.allclose(steps, step, rtol=1e-4, atol=0) or step == 0:
                raise ValueError(
                    f"coord {dim!r} is not evenly spaced, so no NIfTI affine describes it; "
                    "resample onto a regular grid or pass affine=."
                )
            origin = float(values[0])
            # mean(diff) carries rounding noise (0.1 -> 0.10000000000000002): prefer the
            # voxdim attr, else the step rounded to 12 significant digits
            if isinstance(voxdim, int | float) and math.isclose(voxdim, step, rel_tol=1e-6):
                step = float(voxdim)
            else:
                step = float(f"{step:.12g}")
        else:
            step = float(voxdim) if voxdim else 1.0
            origin = float(values[0])
        aff[a, a] = step
        aff[a, 3] = origin
    return aff


def _time_step(time: np.ndarray | None) -> float:
    if time is None or time.size < 2:
        return 1.0
    step = float(np.median(np.diff(time)))
    return step if np.isfinite(step) and step > 0 else 1.0


def _pixdim_time(time: np.ndarray | None) -> float:
    """pixdim[4]: the frame period of a regular time coord, 0 for irregular onsets."""
    if time is None or time.size < 2:
        return 1.0
    return _regular_step(time, None) or 0.0


def _regular_step(time: np.ndarray, tr_attr: Any) -> float | None:
    """The frame period that rebuilds ``time`` as ``time[0] + i * TR``, or None if irregular.

    Candidates: the recording's ``repetition_time`` attr, the median step rounded to
    12 significant digits, the median step. The first that rebuilds the coord
    bit-for-bit wins (exact round trip); else the first within 1e-6 TR.
    """
    step = _time_step(time)
    candidates = [float(f"{step:.12g}"), step]
    try:
        if tr_attr is not None and float(tr_attr) > 0:
            candidates.insert(0, float(tr_attr))
    except (TypeError, ValueError):
        pass
    index = np.arange(time.size, dtype=np.float64)
    for exact in (True, False):
        for tr in candidates:
            rebuilt = time[0] + index * tr
            if exact and np.array_equal(rebuilt, time):
                return tr
            if not exact and np.allclose(rebuilt, time, rtol=0, atol=1e-6 * tr):
                return tr
    return None
