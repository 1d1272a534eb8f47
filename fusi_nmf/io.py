"""Read and write fUSI Power Doppler recordings and maps (NIfTI + BIDS JSON sidecar).

Axis conventions
----------------
NIfTI stores voxels in Fortran order along the voxel axes ``(i, j, k, t, u, ...)``.
In this package the voxel axes are named ``i -> x``, ``j -> y``, ``k -> z`` and the
4th axis is ``time`` for a recording. In memory a recording is an
:class:`xarray.DataArray` named ``power_doppler`` with dims ``(time, z, y, x)``
(C order, float32): the exact reverse of the file's ``(x, y, z, time)``, so reading
and writing is a transpose, not a copy.

Maps with extra dims, e.g. NMF maps ``(component, sign, z, y, x)``, are written with
the spatial axes first and the extra dims on the 4th, 5th, ... NIfTI axes in the
order they appear in the DataArray, i.e. the file holds ``(x, y, z, component,
sign)``. Standard viewers then show one 3-D volume per component (and sign). The
names and coordinate values of the extra dims (and the DataArray's name, dtype,
attrs, exact float64 affine and x/y/z/time coords) are stored in a JSON NIfTI header
extension (code 6, "comment"), which :func:`load_nifti` and :func:`load_recording`
read to restore the DataArray exactly. The header (and the BIDS sidecar) stay the
source of truth: stored values are used only when they agree with them, so a file
edited by another tool is read from its header.

Spatial coordinates
-------------------
``x``, ``y`` and ``z`` are in mm (attrs ``units="mm"``, ``voxdim=<voxel size in
mm>``), taken from the sform when ``sform_code > 0``, else from the qform when
``qform_code > 0``, else (with a warning) from ``pixdim`` with the first voxel at 0.
When the affine is axis-aligned with positive voxel sizes (the usual case) the
coordinates are the scanner coordinates of the voxel centres,
``affine[a, 3] + index * affine[a, a]``. When the affine rotates, flips or permutes
the axes, the coordinates are the distance in mm along each voxel axis from the
first voxel (``index * voxdim``, always increasing); the orientation is not lost:
the full 4x4 affine is kept in ``attrs["affine"]`` (flat list of 16 floats,
row-major) with ``attrs["affine_source"]`` (``"sform"``, ``"qform"`` or
``"pixdim"``), and :func:`save_nifti` writes it back (shifted to the first voxel
if the data were cropped with ``isel``/``sel``).

Time
----
``time`` is in s (attrs ``units="s"``), from the JSON sidecar: ``VolumeTiming`` if
present, else ``RepetitionTime`` with ``DelayAfterTrigger`` (default 0) as the first
onset, else ``pixdim[4]`` converted to s according to ``xyzt_units``. A warning is
issued when the sidecar's ``RepetitionTime`` and ``pixdim[4]`` disagree by more than
0.1 %. The fUSI-BIDS converter of the real dataset writes irregular onsets as
``VolumeTiming`` with ``pixdim[4] = 0`` (no single repetition time) and the affine as
the qform only (``sform_code`` 0); :func:`save_recording` writes the same for such a
recording, so it round-trips. The onsets are kept as they are: making them regular is
the job of :mod:`fusi_nmf.timing`.

Sidecar keys become snake_case attrs (``RepetitionTime -> repetition_time``);
values stay JSON-like (numbers, strings, lists, dicts). The original key names
are kept in ``attrs["bids_sidecar_keys"]`` so :func:`save_recording` writes the
same CamelCase keys back.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from fusi_nmf._atomic import _json_default, atomic_path, write_json
from fusi_nmf._provenance import dataset_attrs
from fusi_nmf._xr import SPATIAL_DIMS

__all__ = [
    "load_nifti",
    "load_recording",
    "save_nifti",
    "save_recording",
    "sidecar_path",
    "snake_to_bids",
    "to_snake_case",
]

RECORDING_DIMS = ("time", *SPATIAL_DIMS)
RECORDING_NAME = "power_doppler"

# attrs that describe the file/array, not the acquisition: never written to the sidecar
_INTERNAL_ATTRS = frozenset({"source_file", "affine", "affine_source", "bids_sidecar_keys"})
# timing keys are recomputed from the time coord on save (the coord is the truth)
_TIMING_KEYS = ("VolumeTiming", "RepetitionTime", "DelayAfterTrigger")

# Known BIDS / fUSI-BIDS sidecar keys whose CamelCase cannot be recovered by
# capitalizing the snake_case words (acronyms), or that are common enough to list.
_KNOWN_BIDS_KEYS = (
    "RepetitionTime",
    "VolumeTiming",
    "DelayAfterTrigger",
    "DelayTime",
    "AcquisitionDuration",
    "SliceTiming",
    "SliceEncodingDirection",
    "TaskName",
    "TaskDescription",
    "Instructions",
    "CogAtlasID",
    "CogPOID",
    "Manufacturer",
    "ManufacturersModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ProbeType",
    "ProbeModel",
    "ProbeCentralFrequency",
    "ProbeNumberOfElements",
    "ProbePitch",
    "ProbeRadiusOfCurvature",
    "UltrasoundPulseRepetitionFrequency",
    "PlaneWaveAngles",
    "UltrafastSamplingFrequency",
    "ProbeVoltage",
    "SequenceName",
    "ClutterFilters",
    "PowerDopplerIntegrationDuration",
    "NumberOfFrames",
    "FrameRate",
    "Units",
    "HED",
    "DOI",
    "URL",
    "Sources",
)


def to_snake_case(key: str) -> str:
    """Convert a BIDS CamelCase key to snake_case (``RepetitionTime -> repetition_time``).

    Acronyms stay together (``CogPOID -> cog_poid``, ``HTTPServer -> http_server``).
    """
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^0-9A-Za-z]+", "_", s)
    return s.strip("_").lower()


_SNAKE_TO_KNOWN = {to_snake_case(k): k for k in _KNOWN_BIDS_KEYS}


def snake_to_bids(name: str, known: Mapping[str, str] | None = None) -> str:
    """Convert a snake_case attr name back to its BIDS CamelCase key.

    Parameters
    ----------
    name : str
        snake_case attribute name, e.g. ``"repetition_time"``.
    known : mapping, optional
        Extra ``snake_case -> CamelCase`` pairs (e.g. built from the keys of the
        sidecar the data came from); they win over the built-in table.

    Returns
    -------
    str
        ``known[name]`` if given, else a known BIDS key, else the words capitalized
        and joined (``"repetition_time" -> "RepetitionTime"``).
    """
    if known and name in known:
        return known[name]
    if name in _SNAKE_TO_KNOWN:
        return _SNAKE_TO_KNOWN[name]
    return "".join(w[:1].upper() + w[1:] for w in name.split("_"))


def sidecar_path(path: str | os.PathLike) -> Path:
    """Return the JSON sidecar path of a NIfTI file (``x_pwd.nii.gz -> x_pwd.json``)."""
    path = Path(path)
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_name(name + ".json")


# --------------------------------------------------------------------------- reading


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


def _load_sidecar(
    path: Path, sidecar: str | os.PathLike | Mapping | None
) -> tuple[dict, Path | None]:
    if isinstance(sidecar, Mapping):
        return dict(sidecar), None
    explicit = sidecar is not None
    json_path = Path(sidecar) if explicit else sidecar_path(path)
    if not json_path.exists():
        if explicit:
            raise FileNotFoundError(
                f"sidecar {json_path} (for {path}) does not exist; pass the right "
                "sidecar= path, or sidecar=None to look for the default one."
            )
        warnings.warn(
            f"{path}: no JSON sidecar {json_path.name} found beside it; timing comes from "
            "pixdim[4] and there are no acquisition attrs. Put the BIDS sidecar next to "
            "the image to use its RepetitionTime/VolumeTiming.",
            UserWarning,
            stacklevel=3,
        )
        return {}, None
    text = json_path.read_text(encoding="utf-8")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"sidecar {json_path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); fix the file (a JSON object of BIDS keys) or remove it."
        ) from exc
    if not isinstance(meta, dict):
        raise ValueError(
            f"sidecar {json_path} holds a JSON {type(meta).__name__}, not an object of "
            'BIDS keys ({"RepetitionTime": ...}); fix the file or remove it.'
        )
    return meta, json_path


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
    """Frame onsets in s from the sidecar or pixdim[4] (see module docstring)."""
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


def _snake_attrs(meta: dict) -> dict:
    attrs = {}
    for key, value in meta.items():
        name = to_snake_case(str(key))
        if name in attrs or name in _INTERNAL_ATTRS:
            name = f"sidecar_{name}"
        attrs[name] = value
    return attrs


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
        ``affine_source`` and ``bids_sidecar_keys``. See the module docstring for
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


# --------------------------------------------------------------------------- writing


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


def _sidecar_from_attrs(data: xr.DataArray) -> dict:
    attrs = data.attrs
    known = {}
    for key in attrs.get("bids_sidecar_keys", []) or []:
        known[to_snake_case(str(key))] = str(key)
        known[f"sidecar_{to_snake_case(str(key))}"] = str(key)  # renamed on load (clash)
    timing_snake = {to_snake_case(k) for k in _TIMING_KEYS}
    out: dict[str, Any] = {}
    body = {k: v for k, v in attrs.items() if k not in _INTERNAL_ATTRS and k not in timing_snake}
    for key, value in _json_attrs(body, "save_recording").items():
        out[snake_to_bids(key, known)] = value

    # Timing always from the time coord (it is the truth after slicing).
    time = np.asarray(data["time"].values, dtype=np.float64)
    tr = _regular_step(time, attrs.get("repetition_time"))
    regular = tr is not None
    if "volume_timing" in attrs or not regular:
        out["VolumeTiming"] = [float(t) for t in time]
    else:
        out["RepetitionTime"] = tr
        if time[0] != 0 or "delay_after_trigger" in attrs:
            out["DelayAfterTrigger"] = float(time[0])
    return out


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
