"""Datasets: the embedded simulated default and the Nunez-Elizalde et al. (2022) fUSI-BIDS data.

:func:`recording_path` is the one call notebooks and ``python -m fusi_nmf run
--dataset ...`` use to get a ``_pwd.nii.gz``; :func:`fetch_nunez_elizalde_2022`
downloads (a selection of) the public dataset from OSF, cached, verified and
resumable. The transfer itself lives in :mod:`fusi_nmf._osf`, whose docstring
records what was checked against OSF's public API documentation.

Cache layout (under :func:`fusi_nmf._paths.data_home`)::

    <home>/nunez-elizalde-2022/            the BIDS root (returned)
        .osf_dataset_index.json            cached copy of dataset_index.json
        .fusi_nmf_dataset.json             citation, licence, source (for attrs)
        .fusi_nmf_verified.json            size/mtime/md5 of files already verified
        .fusi_nmf.lock                     one fetch at a time per cache (fcntl lock)
        .<name>.<md5>.part                 partial downloads (resumed, never final)
        dataset_description.json, participants.tsv, sub-*/...

Data: Nunez-Elizalde, Krumin, Reddy, Montaldo, Urban, Harris & Carandini (2022),
Neuron 110(10):1631-1640, doi:10.1016/j.neuron.2022.02.012; fUSI-BIDS conversion on
OSF, https://osf.io/43skw/ (no DOI for the OSF project was found; the original data
are on figshare, doi:10.6084/m9.figshare.19316228). Licence CC BY 4.0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import _osf, simulate
from ._atomic import write_json
from ._osf import DownloadError
from ._paths import data_home
from ._progress import progress_enabled, status
from ._provenance import INFO_FILE, dataset_attrs

__all__ = [
    "DATASETS",
    "NUNEZ_ELIZALDE_2022",
    "DownloadError",
    "dataset_attrs",
    "describe_recording",
    "fetch_nunez_elizalde_2022",
    "recording_path",
]

OSF_PROJECT = "43skw"
OSF_FOLDER = "nunez-elizalde-2022-bids"
INDEX_NAME = "dataset_index.json"
CACHE_NAME = "nunez-elizalde-2022"
INDEX_CACHE = ".osf_dataset_index.json"
VERIFIED_FILE = ".fusi_nmf_verified.json"
LOCK_FILE = ".fusi_nmf.lock"

NUNEZ_ELIZALDE_2022: dict[str, str] = {
    "dataset": "nunez-elizalde-2022",
    "citation": (
        "Nunez-Elizalde, A. O., Krumin, M., Reddy, C. B., Montaldo, G., Urban, A., "
        "Harris, K. D., & Carandini, M. (2022). Neural correlates of blood flow measured "
        "by ultrasound. Neuron, 110(10), 1631-1640. doi:10.1016/j.neuron.2022.02.012"
    ),
    "paper_doi": "10.1016/j.neuron.2022.02.012",
    "dataset_url": "https://osf.io/43skw/",
    "original_data_doi": "10.6084/m9.figshare.19316228",
    "license": "CC BY 4.0",
    "license_url": "https://creativecommons.org/licenses/by/4.0/",
}

#: Names accepted by :func:`recording_path` (besides a path to a ``_pwd.nii.gz``).
DATASETS = ("simulated", "nunez-elizalde-2022")

# Entities the filters act on, keyed by argument name.
_FILTERS = {"subjects": "sub", "sessions": "ses", "tasks": "task", "acqs": "acq",
            "datatypes": "datatype"}
_ENTITY_RE = re.compile(r"(?:^|_)(sub|ses|task|acq)-([A-Za-z0-9]+)")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
# BIDS folders beside the raw data (derived and source files)
_EXTRA_ROOTS = ("derivatives", "sourcedata")

_citation_shown = False


# --------------------------------------------------------------------------- selection
def _as_values(name: str, value: Any) -> list[str] | None:
    """Normalise one filter argument to a list of labels (prefix ``sub-`` etc. dropped)."""
    if value is None:
        return None
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        values = list(value)
    else:
        raise TypeError(
            f"{name} must be None, a string or a list of strings, got "
            f"{type(value).__name__} ({value!r})."
        )
    if not values:
        raise ValueError(f"{name} is empty: pass None to select all {name}.")
    prefix = _FILTERS[name] + "-"
    out = []
    for v in values:
        if not isinstance(v, str):
            raise TypeError(
                f"{name} must contain strings, got {type(v).__name__} ({v!r}) in {values!r}."
            )
        v = v.strip()
        out.append(v[len(prefix):] if v.startswith(prefix) else v)
    return out


def _entities(path: str) -> dict[str, str]:
    """BIDS entities of a dataset-relative path: sub, ses, task, acq, datatype."""
    parts = path.split("/")
    ents: dict[str, str] = {}
    for part in parts:
        for key, val in _ENTITY_RE.findall(part):
            ents.setdefault(key, val)
    # datatype: the folder holding the file, right below sub-*/ or sub-*/ses-*/
    if len(parts) >= 3 and not parts[-2].startswith(("sub-", "ses-")) and parts[-3].startswith(
        ("sub-", "ses-")
    ):
        ents["datatype"] = parts[-2]
    return ents


def _valid_values(index: dict[str, dict]) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {name: set() for name in _FILTERS}
    for path in index:
        ents = _entities(path)
        for name, key in _FILTERS.items():
            if key in ents:
                found[name].add(ents[key])
    return {name: sorted(vals) for name, vals in found.items()}


def _describe_valid(valid: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {', '.join(vals) or '(none)'}" for name, vals in valid.items())


def select_files(index: dict[str, dict], **filters: Any) -> dict[str, dict]:
    """Entries of ``index`` matching the filters (``subjects=...`` etc.).

    Top-level files (``dataset_description.json``, ``participants.tsv``, ...) always
    come along. A file is kept when, for every given filter, it either does not
    carry that entity (BIDS inheritance: e.g. ``sub-X/sub-X_sessions.tsv`` has no
    session and applies to all) or carries one of the requested values. Two
    exceptions keep a selection to what was asked for: under any ``fusi/`` folder
    (raw data, ``derivatives/`` and ``sourcedata/`` alike) the ``tasks``/``acqs``
    filters also drop files that carry no task/acq label (atlas-aligned images,
    segmentations, probe tracks of the whole session), as other fUSI fetchers do;
    and with any filter active, ``derivatives/``/``sourcedata/`` files that belong
    to no subject are left out. At least one kept file must carry every requested
    entity, else nothing matched.

    Raises
    ------
    ValueError
        An unknown value, or a combination that matches no file; the message lists
        the valid subjects/sessions/tasks/acqs/datatypes.
    """
    wanted = {name: _as_values(name, filters.get(name)) for name in _FILTERS}
    unknown = set(filters) - set(_FILTERS)
    if unknown:
        raise TypeError(f"unknown filter(s) {sorted(unknown)}; use {sorted(_FILTERS)}.")
    valid = _valid_values(index)
    for name, values in wanted.items():
        bad = [v for v in values or [] if v not in valid[name]]
        if bad:
            raise ValueError(
                f"{name}={bad!r} not in the dataset. Valid values: {_describe_valid(valid)}."
            )
    active = {_FILTERS[n]: set(v) for n, v in wanted.items() if v is not None}
    selected: dict[str, dict] = {}
    full_match = False
    for path, entry in index.items():
        if "/" not in path:
            selected[path] = entry
            continue
        ents = _entities(path)
        parts = path.split("/")
        if active and parts[0] in _EXTRA_ROOTS and "sub" not in ents:
            continue
        if "fusi" in parts[:-1] and any(k not in ents for k in ("task", "acq") if k in active):
            continue
        if all(key not in ents or ents[key] in vals for key, vals in active.items()):
            selected[path] = entry
            full_match = full_match or all(key in ents for key in active)
    if not full_match and active:
        asked = ", ".join(f"{n}={v!r}" for n, v in wanted.items() if v is not None)
        raise ValueError(
            f"No file matches {asked}. Valid values: {_describe_valid(valid)}. Not every "
            "combination exists: drop a filter to see what is there."
        )
    return selected


def _check_index(index: Any, source: str) -> dict[str, dict]:
    """Validate the dataset index (a malformed or hostile index must not write anywhere)."""
    if not isinstance(index, dict) or not index:
        raise ValueError(f"The dataset index from {source} is not a non-empty JSON object.")
    for path, entry in index.items():
        p = Path(path)
        if (
            not path
            or "\\" in path
            or p.is_absolute()
            or any(part in ("", ".", "..") for part in path.split("/"))
        ):
            raise ValueError(f"The dataset index from {source} has an unsafe path {path!r}.")
        # the uploader's schema: size int|null, md5 str|null (null: not recorded)
        size, md5 = (entry.get("size"), entry.get("md5")) if isinstance(entry, dict) else (0, 0)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("osf_path"), str)
            or "size" not in entry
            or "md5" not in entry
            or isinstance(size, bool)
            or not (size is None or (isinstance(size, int) and size >= 0))
            or not (md5 is None or (isinstance(md5, str) and _MD5_RE.match(md5.lower())))
        ):
            raise ValueError(
                f"The dataset index from {source} has a malformed entry for {path!r}: "
                f"{entry!r} (want {{osf_path: str, size: int or null, md5: 32 hex or null}})."
            )
    return {path: {**entry, "md5": entry["md5"] and entry["md5"].lower()}
            for path, entry in index.items()}


def _fill_missing_checksums(index: dict[str, dict], selected: dict[str, dict], get_session,
                            api: str | None, progress: bool | None) -> bool:
    """Take md5/size from the OSF file metadata for selected entries whose index has none.

    Updates ``index`` (and ``selected``, the same entry dicts) in place and marks each
    looked-up entry with ``"metadata_checked": true`` so the lookup happens once per
    cached index. Returns True when anything changed. Entries whose metadata has no
    md5 either stay ``md5: null`` and download unverified (with a warning).
    """
    missing = [rel for rel, e in selected.items()
               if (e["md5"] is None or e["size"] is None) and not e.get("metadata_checked")]
    if not missing:
        return False
    status(f"Reading OSF file metadata for {len(missing)} file(s) the index lists "
           "without md5/size ...", progress)
    for rel in missing:
        entry = index[rel]
        size, md5 = _osf.file_metadata(get_session(), entry["osf_path"], rel, api)
        if entry["md5"] is None and md5 is not None:
            entry["md5"] = md5
        if entry["size"] is None and size is not None:
            entry["size"] = size
        entry["metadata_checked"] = True
        selected[rel] = entry
    return True


# --------------------------------------------------------------------------- cache state
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_verified(root: Path, rel: str, entry: dict, verified: dict) -> bool:
    """True when ``root/rel`` exists with the index md5 (hash only when stat changed)."""
    path = root / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if entry["size"] is not None and st.st_size != entry["size"]:
        return False
    stamp = [st.st_size, st.st_mtime_ns, entry["md5"]]
    if verified.get(rel) == stamp:
        return True
    if entry["md5"] is None:
        return False  # no checksum: only the stamp of our own complete download counts
    if _osf.md5sum(path) == entry["md5"]:
        verified[rel] = stamp
        return True
    return False


def _show_citation(progress: bool | None) -> None:
    global _citation_shown
    if _citation_shown or not progress_enabled(progress):
        return
    _citation_shown = True
    status(
        f"Dataset: {NUNEZ_ELIZALDE_2022['citation']} fUSI-BIDS data: "
        f"{NUNEZ_ELIZALDE_2022['dataset_url']} "
        f"({NUNEZ_ELIZALDE_2022['license']}, {NUNEZ_ELIZALDE_2022['license_url']}). "
        "Please cite the paper when you use these data.",
        progress,
    )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


# --------------------------------------------------------------------------- public API
def fetch_nunez_elizalde_2022(
    data_dir: str | os.PathLike | None = None,
    subjects: str | list[str] | None = None,
    sessions: str | list[str] | None = None,
    tasks: str | list[str] | None = None,
    acqs: str | list[str] | None = None,
    datatypes: str | list[str] | None = None,
    refresh: bool = False,
    progress: bool | None = True,
    *,
    api_url: str | None = None,
    download_url: str | None = None,
    retries: int = _osf.DEFAULT_RETRIES,
    backoff: float | None = None,
) -> Path:
    """Fetch (a selection of) the Nunez-Elizalde et al. (2022) fUSI-BIDS dataset from OSF.

    Only the selected files download; files already in the cache with the index
    md5 are not fetched again. Every download is md5-verified, written to a
    hidden partial file, resumed with HTTP ``Range`` after an interruption, and
    renamed into place only when complete. The index may list a file with
    ``"md5": null``/``"size": null`` (its schema allows it): the md5 and size then
    come from the file's OSF metadata (looked up once, kept in the cached index), and
    a file whose metadata has no md5 either is downloaded unverified with a one-line
    warning naming it. Once cached (index included), the call works offline.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Cache folder; default ``$FUSI_NMF_DATA`` or ``~/.cache/fusi-nmf``. The dataset
        goes to ``<data_dir>/nunez-elizalde-2022/``.
    subjects, sessions, tasks, acqs, datatypes : str or list of str, optional
        Keep only these labels (``"CR022"`` or ``"sub-CR022"``; datatypes e.g.
        ``"fusi"``, ``"angio"``). ``None`` keeps all. Files that do not carry an
        entity (e.g. subject-level ``_sessions.tsv``) pass that filter; top-level
        BIDS metadata always come along.
    refresh : bool, default False
        Re-read the dataset index from OSF (else the cached index is used). Cached
        files whose md5 no longer matches are downloaded again.
    progress : bool or None, default True
        Show the size to come, a progress bar and (once per process) the citation.
        ``None`` defers to ``$FUSI_NMF_PROGRESS``.
    api_url, download_url : str, optional
        OSF API base (default ``$FUSI_NMF_OSF_API`` or ``https://api.osf.io/v2``) and
        download base (``$FUSI_NMF_OSF_DOWNLOAD`` or ``https://osf.io/download``).
    retries : int, default 5
        Tries for transient failures (connection errors, 429/5xx, reset or truncated
        bodies) per request.
    backoff : float, optional
        Exponential backoff factor in s (``$FUSI_NMF_OSF_BACKOFF``, default 0.5).

    Returns
    -------
    pathlib.Path
        The BIDS root, ``<data_dir>/nunez-elizalde-2022``.

    Raises
    ------
    TypeError
        A filter that is not a string or list of strings; a non-bool ``refresh``.
    ValueError
        A selection that matches nothing (the message lists valid values), or a
        malformed index.
    DownloadError
        (a ``RuntimeError``) 403/404, repeated md5 mismatch, or transient errors that
        outlast the retries; names the file and URL. No incomplete file is ever left
        under its final name.

    References
    ----------
    Nunez-Elizalde, A. O. et al. (2022). Neural correlates of blood flow measured by
    ultrasound. Neuron 110(10), 1631-1640. doi:10.1016/j.neuron.2022.02.012. Data:
    https://osf.io/43skw/ (CC BY 4.0).

    Examples
    --------
    >>> root = fetch_nunez_elizalde_2022(subjects="CR022", acqs="slice03")  # doctest: +SKIP
    """
    if not isinstance(refresh, bool):
        raise TypeError(f"refresh must be True or False, got {refresh!r}.")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}.")
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"data_dir must be a path (str or os.PathLike), got {data_dir!r}.")
    filters = {"subjects": subjects, "sessions": sessions, "tasks": tasks, "acqs": acqs,
               "datatypes": datatypes}
    for name, value in filters.items():
        _as_values(name, value)  # type errors before any network or disk work

    root = data_home(data_dir) / CACHE_NAME
    root.mkdir(parents=True, exist_ok=True)
    index_cache = root / INDEX_CACHE
    session_box: list = []  # the requests session, made on first network use

    def get_session():
        if not session_box:
            session_box.append(_osf.make_session(retries, backoff))
        return session_box[0]

    index = None if refresh else _read_json(index_cache)
    if index is None:
        api = _osf.api_url(api_url)
        status(f"Reading the dataset index from OSF project {OSF_PROJECT} ({api}) ...",
               progress)
        raw = _osf.fetch_index(get_session(), OSF_PROJECT, OSF_FOLDER, INDEX_NAME, api)
        index = _check_index(raw, f"{api} ({OSF_FOLDER}/{INDEX_NAME})")
        write_json(index_cache, index)
    else:
        index = _check_index(index, str(index_cache))

    selected = select_files(index, **filters)
    if _fill_missing_checksums(index, selected, get_session, api_url, progress):
        write_json(index_cache, index)
    if _read_json(root / INFO_FILE) != NUNEZ_ELIZALDE_2022:
        write_json(root / INFO_FILE, NUNEZ_ELIZALDE_2022)
    _show_citation(progress)

    verified_path = root / VERIFIED_FILE
    # one fetch at a time per cache (parallel notebooks would share partial files)
    with _cache_lock(root), _closing(session_box):
        verified = _read_json(verified_path) or {}
        if not isinstance(verified, dict):
            verified = {}
        before = dict(verified)
        try:
            todo = {rel: e for rel, e in selected.items()
                    if not _is_verified(root, rel, e, verified)}
            if todo:
                _download_all(root, todo, get_session(), download_url, retries, backoff,
                              verified, progress)
            else:
                status(f"All {len(selected)} selected files are cached in {root}.", progress)
        finally:
            if verified != before:
                write_json(verified_path, verified)
    return root


@contextlib.contextmanager
def _closing(box: list) -> Iterator[None]:
    try:
        yield
    finally:
        if box:
            box[0].close()


@contextlib.contextmanager
def _cache_lock(root: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``root/.fusi_nmf.lock`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download_all(root, todo, session, base, retries, backoff, verified, progress) -> None:
    total = sum(e["size"] or 0 for e in todo.values())
    resumable = sum(
        min(_osf.part_path(root / rel, e["md5"]).stat().st_size, e["size"] or 0)
        for rel, e in todo.items()
        if _osf.part_path(root / rel, e["md5"]).exists()
    )
    status(
        f"Downloading {len(todo)} file(s), {_human(total)}"
        + (f" ({_human(resumable)} already partly downloaded)" if resumable else "")
        + f", into {root} ...",
        progress,
    )
    bar = None
    if progress_enabled(progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000,
                   desc=CACHE_NAME, file=sys.stderr)
        bar.update(resumable)
    try:
        for rel, entry in sorted(todo.items()):
            url = _osf.file_url(entry["osf_path"], base)
            dest = root / rel
            if entry["md5"] is None:
                warnings.warn(f"{rel}: neither the dataset index nor the OSF metadata give an "
                              "md5; downloading it unverified.", UserWarning, stacklevel=3)
            _osf.download(session, url, dest, size=entry["size"], md5=entry["md5"], rel=rel,
                          retries=retries, backoff=backoff,
                          on_bytes=bar.update if bar is not None else None)
            st = dest.stat()
            verified[rel] = [st.st_size, st.st_mtime_ns, entry["md5"]]
    finally:
        if bar is not None:
            bar.close()


_REC_REL = (
    "sub-{subject}/ses-{session}/fusi/"
    "sub-{subject}_ses-{session}_task-{task}_acq-{acq}_pwd.nii.gz"
)


def recording_path(
    dataset: str | os.PathLike = "simulated",
    *,
    preset: str = "default",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    subject: str = "CR022",
    session: str = "20201011",
    task: str = "spontaneous",
    acq: str = "slice03",
    progress: bool | None = None,
) -> Path:
    """Path of one recording's ``_pwd.nii.gz``, producing it if needed.

    Parameters
    ----------
    dataset : {"simulated", "nunez-elizalde-2022"} or path-like, default "simulated"
        ``"simulated"``: the embedded simulated default (written by
        :func:`fusi_nmf.simulate.simulated_dataset`). ``"nunez-elizalde-2022"``: fetch
        just this recording (and its sidecar and the top-level metadata) from OSF.
        A path to an existing ``_pwd.nii.gz`` is returned as is.
    preset, seed : used for ``"simulated"`` only.
    data_dir : str or path-like, optional
        Cache/data folder (see :func:`fusi_nmf._paths.data_home`).
    subject, session, task, acq : str
        BIDS entities of the real recording (the defaults: the reference
        example's recording, which the simulation mimics). Not used for
        ``"simulated"``, whose recording is always ``sub-sim01`` (see
        :func:`fusi_nmf.simulate.recording_path`).
    progress : bool or None
        Progress/citation output; ``None`` defers to ``$FUSI_NMF_PROGRESS``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        Unknown dataset name (the message lists the choices).
    FileNotFoundError
        A given path that does not exist, or a recording missing from the dataset.
    """
    if isinstance(dataset, os.PathLike) or (
        isinstance(dataset, str)
        and dataset not in DATASETS
        and ("/" in dataset or os.sep in dataset or dataset.endswith((".nii", ".nii.gz")))
    ):
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"dataset={os.fspath(dataset)!r} is not an existing file; pass a path to a "
                f"_pwd.nii.gz or one of {list(DATASETS)}."
            )
        return path
    if not isinstance(dataset, str):
        raise TypeError(
            f"dataset must be one of {list(DATASETS)} or a path, got {type(dataset).__name__}."
        )
    for name, value in {"subject": subject, "session": session, "task": task,
                        "acq": acq}.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty string, got {value!r}.")
    rel = _REC_REL.format(subject=subject, session=session, task=task, acq=acq)
    if dataset == "simulated":
        root = Path(simulate.simulated_dataset(preset, seed, data_dir, progress=progress))
        rel = simulate.recording_path(root).relative_to(root).as_posix()
    elif dataset == "nunez-elizalde-2022":
        root = fetch_nunez_elizalde_2022(
            data_dir, subjects=subject, sessions=session, tasks=task, acqs=acq,
            datatypes="fusi", progress=progress,
        )
    else:
        raise ValueError(
            f"Unknown dataset {dataset!r}: choose one of {list(DATASETS)} or pass a path to "
            "a _pwd.nii.gz file."
        )
    path = root / rel
    if not path.is_file():
        have = sorted(str(p.relative_to(root)) for p in root.glob("sub-*/**/*_pwd.nii.gz"))
        raise FileNotFoundError(
            f"{rel} is not in the {dataset} dataset at {root}. Recordings there: "
            f"{', '.join(have) or 'none'}."
        )
    return path


def describe_recording(dataset: str | os.PathLike, *, preset: str = "default",
                       seed: int = 0) -> str:
    """One line that says which data a result shows, for every chapter and report.

    Simulated data must never pass for the real recording, so the line says "simulated"
    with its subject (``sub-sim01``), preset and seed; the real recording is named with
    its source.

    Examples
    --------
    >>> describe_recording("simulated", seed=3)[:56]
    "Data: a simulated recording sub-sim01 (preset 'default',"
    """
    if dataset == "simulated":
        return (f"Data: a simulated recording sub-sim01 (preset {preset!r}, seed {seed}) with "
                "known ground truth, not real data.")
    if dataset == "nunez-elizalde-2022":
        return ("Data: the real recording sub-CR022 ses-20201011 task-spontaneous acq-slice03 "
                "of Nunez-Elizalde et al. (2022), fUSI-BIDS on OSF (CC BY 4.0).")
    return f"Data: the recording {Path(dataset).name} (a file you supplied)."


# --------------------------------------------------------------------------- CLI
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``python -m fusi_nmf fetch``."""
    parser = subparsers.add_parser(
        "fetch",
        help="download (part of) the Nunez-Elizalde 2022 fUSI-BIDS dataset from OSF",
        description=(
            "Download a selection of the Nunez-Elizalde et al. (2022) fUSI-BIDS dataset "
            "(OSF 43skw, CC BY 4.0) into the cache; prints the BIDS root. Example: "
            "python -m fusi_nmf fetch --subjects CR022 --acqs slice03"
        ),
    )
    for name in ("subjects", "sessions", "tasks", "acqs", "datatypes"):
        parser.add_argument(f"--{name}", nargs="+", metavar=name[:-1].upper(),
                            help=f"only these {name} (default: all)")
    parser.add_argument("--data-dir", help="cache folder (default $FUSI_NMF_DATA or "
                        "~/.cache/fusi-nmf)")
    parser.add_argument("--refresh", action="store_true", help="re-read the index from OSF")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--api-url", help=f"OSF API base (default ${_osf.API_ENV_VAR} or "
                        f"{_osf.OSF_API_URL})")
    parser.add_argument("--download-url", help=f"download base (default "
                        f"${_osf.DOWNLOAD_ENV_VAR} or {_osf.OSF_DOWNLOAD_URL})")
    parser.set_defaults(func=_cli_fetch)
    return parser


def _cli_fetch(args: argparse.Namespace) -> int:
    root = fetch_nunez_elizalde_2022(
        args.data_dir, subjects=args.subjects, sessions=args.sessions, tasks=args.tasks,
        acqs=args.acqs, datatypes=args.datatypes, refresh=args.refresh,
        progress=False if args.no_progress else None,
        api_url=args.api_url, download_url=args.download_url,
    )
    print(root)
    return 0
