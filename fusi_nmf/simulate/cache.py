"""The cached simulated dataset: generated once per (preset, seed), checked by a manifest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fusi_nmf import __version__
from fusi_nmf._atomic import FileLock, write_json
from fusi_nmf._paths import data_home
from fusi_nmf._progress import status
from fusi_nmf._util import file_digest
from fusi_nmf.simulate._base import SIMULATOR_VERSION, _check_int, _check_preset
from fusi_nmf.simulate.bids import (
    _sidecar_path,
    ground_truth_path,
    recording_path,
    write_simulated_dataset,
)

MANIFEST_NAME = ".fusi_nmf_manifest.json"


# --------------------------------------------------------------------------- cache


def _manifest_files(root: Path) -> list[Path]:
    nii = recording_path(root)
    return [
        root / "dataset_description.json",
        nii,
        _sidecar_path(nii),
        root / "derivatives" / "simulation" / "dataset_description.json",
        ground_truth_path(root),
    ]


def _verify(root: Path, preset: str, seed: int) -> str | None:
    """Return None when ``root`` holds a complete, intact dataset, else the reason it does not."""
    manifest = root / MANIFEST_NAME
    if not manifest.exists():
        return "no manifest (never generated, or generation was interrupted)"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable manifest"
    expected = {"simulator_version": SIMULATOR_VERSION, "preset": preset, "seed": seed}
    for key, value in expected.items():
        if meta.get(key) != value:
            return f"manifest {key}={meta.get(key)!r}, expected {value!r}"
    for rel, digest in meta.get("files", {}).items():
        f = root / rel
        if not f.exists():
            return f"missing file {rel}"
        if file_digest(f) != digest:
            return f"checksum mismatch for {rel}"
    if not meta.get("files"):
        return "empty manifest"
    return None


def simulated_dataset(
    preset: str = "default",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Return the BIDS root of the embedded simulated dataset, generating it once.

    The dataset lives in ``data_home(data_dir) / "simulated" / f"{preset}-seed{seed}"``.
    A sha256 manifest written after generation is checked on every call; a
    missing, partial or modified dataset is regenerated (with a message).

    Parameters
    ----------
    preset : {"default", "small"}
        Simulator preset (see :func:`simulate_recording`).
    seed : int
        Simulator seed.
    data_dir : path, optional
        Data/cache folder (default ``$FUSI_NMF_DATA`` or ``~/.cache/fusi-nmf``).
    progress : bool, optional
        Print progress lines (default: the ``FUSI_NMF_PROGRESS`` setting).

    Returns
    -------
    pathlib.Path
        The BIDS root; the recording is ``recording_path(root)`` and the ground
        truth loads with :func:`load_ground_truth`.
    """
    _check_preset(preset)
    seed = _check_int(seed, "seed", 0)
    root = data_home(data_dir) / "simulated" / f"{preset}-seed{seed}"
    if _verify(root, preset, seed) is None:
        return root
    # Two runs asking at once (parallel chapters, a sweep with --jobs): one generates,
    # the other waits and then finds it intact, instead of deleting files being written.
    with FileLock(root.parent / ".locks" / f"{root.name}.lock"):
        return _generate(root, preset, seed, progress)


def _generate(root: Path, preset: str, seed: int, progress: bool | None) -> Path:
    """Generate the dataset at ``root`` unless it is intact by now (the caller holds the lock)."""
    problem = _verify(root, preset, seed)
    if problem is None:
        return root
    if root.exists() and any(root.iterdir()):
        status(f"simulated dataset at {root} is not intact ({problem}); regenerating", progress)
        # remove only what this function writes
        (root / MANIFEST_NAME).unlink(missing_ok=True)
        for f in _manifest_files(root):
            f.unlink(missing_ok=True)
        shutil.rmtree(root / "derivatives" / "simulation", ignore_errors=True)
    else:
        status(f"generating simulated dataset {preset!r} (seed {seed}) in {root}", progress)
    write_simulated_dataset(root, preset=preset, seed=seed, progress=progress)
    files = {f.relative_to(root).as_posix(): file_digest(f) for f in _manifest_files(root)}
    write_json(
        root / MANIFEST_NAME,
        {
            "simulator_version": SIMULATOR_VERSION,
            "fusi_nmf_version": __version__,
            "preset": preset,
            "seed": seed,
            "files": files,
        },
    )
    return root
