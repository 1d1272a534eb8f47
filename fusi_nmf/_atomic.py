"""Atomic file output: write to a temporary name in the same folder, then rename.

A reader (or a later run) never sees a half-written file: either the old
content, or the complete new one. Every writer in the package goes through here.

The temporary file (``.<name>.<random>.part<suffix>``) is locked (``flock``) while
it is written, so :func:`clean_partial` can remove the leftovers of a killed
writer without touching the one a concurrent run is still writing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:  # POSIX: lock the temporary file while it is written
    import fcntl
except ImportError:  # pragma: no cover - Windows: leftovers are only cleaned by age-free rule
    fcntl = None  # type: ignore[assignment]

PARTIAL_GLOB = ".*.part*"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    ``suffix`` defaults to the full suffix of ``path`` (``.nii.gz`` stays
    ``.nii.gz``) because some writers choose the format from the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        # mkstemp makes 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    finally:
        os.close(fd)  # releases the lock


class FileLock:
    """An exclusive lock other processes (and threads) see: ``flock`` on a lock file.

    Used so that two runs sharing a cache (parallel chapters of the book, a sweep with
    ``--jobs``) compute a missing entry once: the second waits, then reads what the
    first wrote. The lock file itself stays (removing it would race with a waiter);
    it is empty. Without ``fcntl`` (Windows) the lock does nothing: concurrent runs
    then compute twice, which is safe because every write is atomic.

    Use as a context manager, or :meth:`acquire` / :meth:`release` when the release
    happens elsewhere (e.g. after a background save).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        """Block until this process holds the lock."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases the ``flock``); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def clean_partial(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files killed writers left in ``folder``; return them.

    A file a live writer (this or another process) still holds locked is kept.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(PARTIAL_GLOB):
        if not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically.

    Raises
    ------
    ValueError
        ``obj`` holds a NaN or infinite number (not valid JSON); the message names
        where, and nothing is written.
    """
    where = _non_finite(obj)
    if where is not None:
        raise ValueError(
            f"{Path(path).name}: the value at {where} is not a finite number; refusing to "
            "write it as JSON (strict parsers reject NaN/Infinity). This is a bug in the "
            "step that produced it, or input data it could not handle."
        )
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return write_text(path, text + "\n")


def _non_finite(obj: Any, where: str = "top level") -> str | None:
    """Where (``a.b[2]``) the first NaN/Inf in a JSON-like structure sits, or None."""
    if isinstance(obj, float | np.floating):
        return None if math.isfinite(obj) else where
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc" and not np.all(np.isfinite(obj)):
            return where
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _non_finite(value, f"{key}" if where == "top level" else f"{where}.{key}")
            if found:
                return found
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found = _non_finite(value, f"{where}[{i}]")
            if found:
                return found
    return None


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in summaries; make them plain JSON.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
