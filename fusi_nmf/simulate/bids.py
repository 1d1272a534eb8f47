"""Write a simulation in the real dataset's BIDS layout, and read its ground truth back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fusi_nmf import __version__
from fusi_nmf._atomic import atomic_path, write_json
from fusi_nmf._progress import status
from fusi_nmf.io import save_recording
from fusi_nmf.simulate._base import _STEM, SESSION, SIMULATOR_VERSION, SUBJECT, TASK
from fusi_nmf.simulate.model import simulate_recording
from fusi_nmf.simulate.onsets import TIMINGS, converter_timing

# --------------------------------------------------------------------------- files


def recording_path(root: str | os.PathLike) -> Path:
    """Path of the ``_pwd.nii.gz`` inside a simulated (or real-layout) BIDS root."""
    return Path(root) / f"sub-{SUBJECT}" / f"ses-{SESSION}" / "fusi" / f"{_STEM}_pwd.nii.gz"


def ground_truth_path(root: str | os.PathLike) -> Path:
    """Path of the ground-truth NetCDF inside a simulated BIDS root."""
    return (
        Path(root)
        / "derivatives"
        / "simulation"
        / f"sub-{SUBJECT}"
        / f"ses-{SESSION}"
        / "fusi"
        / f"{_STEM}_desc-groundtruth.nc"
    )


def _netcdf_safe(value: Any) -> Any:
    """Attribute values netCDF3 can store: str, numbers, 1-D numeric arrays."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, str | int | float | np.number):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        arr = np.asarray(value)
        if arr.dtype.kind in "iuf" and arr.ndim == 1:
            return arr
    return json.dumps(value, default=str)


def _ground_truth_dataset(sim: xr.Dataset) -> xr.Dataset:
    gt = sim.drop_vars("power_doppler").copy()
    gt["motion_events"] = gt["motion_events"].astype(np.int8)
    gt.attrs = {k: _netcdf_safe(v) for k, v in gt.attrs.items()}
    for var in gt.variables.values():
        var.attrs = {k: _netcdf_safe(v) for k, v in var.attrs.items()}
    return gt



def write_simulated_dataset(
    root: str | os.PathLike,
    sim: xr.Dataset | None = None,
    *,
    preset: str = "default",
    seed: int = 0,
    timing: str = "converter",
    dropped_frames: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write a simulated recording in the real dataset's BIDS layout and file conventions.

    Writes ``root/dataset_description.json``, the recording
    ``root/sub-sim01/ses-20201011/fusi/sub-sim01_ses-20201011_task-spontaneous_acq-slice03_pwd.nii.gz``
    with its JSON sidecar (via :func:`fusi_nmf.io.save_recording`), and the
    ground truth as NetCDF under ``root/derivatives/simulation/...`` (read it
    with :func:`load_ground_truth`). Every file is written atomically.

    By default (``timing="converter"``) the files follow the real dataset's converter:
    the affine as the qform only (``sform_code`` 0), ``pixdim[4] = 0``, the frame
    onsets as ``VolumeTiming`` with jitter and one long interval (see
    :func:`converter_timing`), ``FrameAcquisitionDuration``/``PowerDopplerIntegration*``
    0.3 s and no ``RepetitionTime``; so the default book exercises the path real data
    take (the pipeline's timing stage). The ground truth is written on the same onsets.

    Parameters
    ----------
    root : path
        BIDS root folder (created if needed).
    sim : xarray.Dataset, optional
        Output of :func:`simulate_recording`; simulated from ``preset`` and
        ``seed`` when not given.
    preset, seed
        Passed to :func:`simulate_recording` when ``sim`` is None.
    timing : {"converter", "regular"}, default "converter"
        ``"regular"`` writes ``sim`` on its own (regular) time grid with
        ``RepetitionTime``, sform and qform.
    dropped_frames : int, default 0
        With ``timing="converter"``: frames removed (recording and truth), as an
        acquisition that drops frames.
    progress : bool, optional
        Print progress lines (default: the ``FUSI_NMF_PROGRESS`` setting).

    Returns
    -------
    pathlib.Path
        Path of the ``_pwd.nii.gz``.
    """
    root = Path(root)
    if sim is None:
        status(f"simulating preset={preset!r} seed={seed} ...", progress)
        sim = simulate_recording(preset, seed)
    elif not isinstance(sim, xr.Dataset) or "power_doppler" not in sim:
        raise TypeError(
            "sim must be the xarray.Dataset returned by simulate_recording (with a "
            f"'power_doppler' variable), got {type(sim).__name__}."
        )
    preset = str(sim.attrs.get("preset", preset))
    seed = int(sim.attrs.get("seed", seed))
    if timing not in TIMINGS:
        raise ValueError(f"timing={timing!r} is not one of {TIMINGS}.")
    if timing == "converter":
        sim = converter_timing(sim, dropped_frames=dropped_frames, seed=seed)
    elif dropped_frames:
        raise ValueError("dropped_frames needs timing='converter'.")
    root.mkdir(parents=True, exist_ok=True)
    write_json(
        root / "dataset_description.json",
        {
            "Name": f"fusi-nmf simulated fUSI recording (preset {preset}, seed {seed})",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0-1.0",
            "Authors": ["fusi-nmf simulator"],
            "GeneratedBy": [
                {
                    "Name": "fusi-nmf",
                    "Version": __version__,
                    "Description": f"fusi_nmf.simulate.simulate_recording v{SIMULATOR_VERSION}",
                }
            ],
            "SimulationNote": (
                "SIMULATED data, not a measurement (subject sim01). Shape, voxel size, frame "
                "timing conventions and file layout mimic sub-CR022 ses-20201011 slice03 of the "
                "real fUSI dataset; the ground truth (source maps and time courses, motion, clean "
                "signal, at the frame onsets) is in derivatives/simulation."
            ),
        },
    )
    nii = recording_path(root)
    status(f"writing {nii}", progress)
    save_recording(sim["power_doppler"], nii, qform_only=timing == "converter")
    _ensure_sidecar(nii)

    deriv = root / "derivatives" / "simulation"
    write_json(
        deriv / "dataset_description.json",
        {
            "Name": "fusi-nmf simulation ground truth",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fusi-nmf", "Version": __version__}],
            "License": "CC0-1.0",
        },
    )
    gt_path = ground_truth_path(root)
    with atomic_path(gt_path) as tmp:
        _ground_truth_dataset(sim).to_netcdf(tmp, engine="scipy")
    return nii


def _sidecar_path(nii: Path) -> Path:
    return nii.with_name(nii.name[: -len(".nii.gz")] + ".json")


def _ensure_sidecar(nii: Path) -> None:
    """Make sure the sidecar names the task and says the data are simulated."""
    side = _sidecar_path(nii)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    if meta.get("TaskName") != TASK or "SimulationNote" not in meta:
        meta["TaskName"] = TASK
        meta["SimulationNote"] = "Simulated by fusi_nmf.simulate; not a measurement."
        write_json(side, meta)


def load_ground_truth(path: str | os.PathLike) -> xr.Dataset:
    """Load a simulated recording's ground truth.

    Parameters
    ----------
    path : path
        The simulated BIDS root, its ``_pwd.nii.gz``, or the ground-truth ``.nc``.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`simulate_recording` except ``power_doppler``
        (load that with :func:`fusi_nmf.io.load_recording`), fully in memory.
    """
    path = Path(path)
    if path.is_dir():
        nc = ground_truth_path(path)
        if not nc.exists():
            found = sorted(path.glob("derivatives/simulation/**/*_desc-groundtruth.nc"))
            if len(found) != 1:
                raise FileNotFoundError(
                    f"No ground truth under {path}: expected {nc}. Is this a simulated dataset "
                    "(made by fusi_nmf.simulate.simulated_dataset or write_simulated_dataset)?"
                )
            nc = found[0]
    elif path.name.endswith("_pwd.nii.gz"):
        root = path.parents[3]
        nc = (
            root
            / "derivatives"
            / "simulation"
            / path.parents[2].name
            / path.parents[1].name
            / path.parent.name
            / (path.name[: -len("_pwd.nii.gz")] + "_desc-groundtruth.nc")
        )
    else:
        nc = path
    if not nc.exists():
        raise FileNotFoundError(
            f"Ground-truth file {nc} not found (from {path}); only simulated recordings have "
            "one. Regenerate with fusi_nmf.simulate.simulated_dataset()."
        )
    with xr.open_dataset(nc, engine="scipy") as ds:
        gt = ds.load()
    if "motion_events" in gt:
        gt["motion_events"] = gt["motion_events"].astype(bool)
    gt["parameter"] = gt["parameter"].astype(str)
    return gt
