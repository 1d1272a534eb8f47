"""BIDS JSON sidecars: key names (CamelCase <-> snake_case attrs), reading, writing."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fusi_nmf.io._header import _json_attrs, _regular_step

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


def _snake_attrs(meta: dict) -> dict:
    attrs = {}
    for key, value in meta.items():
        name = to_snake_case(str(key))
        if name in attrs or name in _INTERNAL_ATTRS:
            name = f"sidecar_{name}"
        attrs[name] = value
    return attrs


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
