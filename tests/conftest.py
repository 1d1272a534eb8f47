"""Shared test set-up: a private data folder, quiet progress, the small simulated recording,
and the book executed once per session."""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep generated/downloaded data out of ~/.cache and progress bars out of the logs."""
    home = tmp_path_factory.mktemp("fusi-nmf-data")
    old = {k: os.environ.get(k) for k in ("FUSI_NMF_DATA", "FUSI_NMF_PROGRESS")}
    os.environ["FUSI_NMF_DATA"] = str(home)
    os.environ["FUSI_NMF_PROGRESS"] = "0"
    yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def small_recording_path(_private_data_home: Path) -> Path:
    """The ``small`` simulated recording written as a BIDS dataset (``*_pwd.nii.gz``)."""
    from fusi_nmf.datasets import recording_path

    return Path(recording_path("simulated", preset="small", seed=0))


# ------------------------------------------------------------------- the book, executed once
REPO = Path(__file__).resolve().parents[1]
# The chapters on the small preset, with a 2 x 2 model-selection grid: quick, same code.
SMALL_BOOK = {
    "preset": "small",
    "n_components": 4,
    "max_iter": 200,
    "ks": [2, 4],
    "seeds": [0, 1],
    "n_jobs": 2,
}


@dataclass
class ExecutedBook:
    """The repository's book executed once on the small preset, in a copy of the repository.

    ``root`` holds ``_config.yml``, ``_toc.yml``, ``intro.md``, ``notebooks/`` and the
    executed chapters in ``book/`` (what ``jupyter-book build`` reads); ``error`` is the
    execution error, if a chapter failed (later chapters then did not run).
    """

    root: Path
    work_dir: Path
    parameters: dict
    runs: list = field(default_factory=list)
    error: BaseException | None = None
    log: str = ""

    def executed(self, name: str) -> Path:
        """The executed copy of ``notebooks/<name>`` (``name`` with or without .ipynb)."""
        return self.root / "book" / f"{Path(name).stem}.ipynb"


@pytest.fixture(scope="session")
def executed_book(tmp_path_factory: pytest.TempPathFactory) -> ExecutedBook:
    """Execute every chapter once per test session (papermill, real kernels, book order).

    Shared by ``tests/test_notebooks.py`` (outputs of every chapter) and
    ``tests/test_book.py`` (HTML build and browser check), so the book's notebooks run
    once per session, not once per test file. Under pytest-xdist (``make test``) the
    workers share it too: the first to ask executes the book while holding a lock, the
    others wait and read the record it leaves (``record.json``).
    """
    from fusi_nmf._atomic import FileLock, write_json
    from fusi_nmf.book import NotebookRun, build_book

    base = tmp_path_factory.getbasetemp()
    # xdist workers' temp folders share a parent that belongs to this session only
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "executed-book"
    root, record = shared / "repo", shared / "record.json"
    with FileLock(shared.with_suffix(".lock")):
        if record.is_file():  # another worker executed it
            saved = json.loads(record.read_text())
            runs = [NotebookRun(r["name"], Path(r["source"]), Path(r["output"]),
                                r["parameters"], r["seconds"]) for r in saved["runs"]]
            error = RuntimeError(saved["error"]) if saved["error"] else None
            return ExecutedBook(root=root, work_dir=root / "work",
                                parameters=dict(SMALL_BOOK), runs=runs, error=error,
                                log=saved["log"])
        root.mkdir(parents=True)
        for name in ("_config.yml", "_toc.yml", "intro.md"):
            shutil.copy(REPO / name, root / name)
        shutil.copytree(REPO / "notebooks", root / "notebooks")
        shutil.copytree(REPO / "_static", root / "_static")  # the book's CSS (wide tables)
        book = ExecutedBook(root=root, work_dir=root / "work", parameters=dict(SMALL_BOOK))
        out = io.StringIO()
        try:
            result = build_book(
                root, parameters=SMALL_BOOK, work_dir=book.work_dir, build=False, stream=out
            )
            book.runs = result.runs
        except Exception as exc:  # reported by every test that uses the book
            book.error = exc
        book.log = out.getvalue()
        write_json(record, {
            "runs": [{"name": r.name, "source": str(r.source), "output": str(r.output),
                      "parameters": r.parameters, "seconds": r.seconds} for r in book.runs],
            "error": None if book.error is None else f"{type(book.error).__name__}: {book.error}",
            "log": book.log,
        })
    return book
