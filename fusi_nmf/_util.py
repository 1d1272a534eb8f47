"""Small shared helpers: file checksums and temporary environment variables."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Iterator

# the {absolute path: sha256} of the innermost recorded_digests() block, if any
_RECORD: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "fusi_nmf_recorded_digests", default=None
)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks (``sha256``, ``md5``, ...)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    hexdigest = digest.hexdigest()
    record = _RECORD.get()
    if record is not None and algorithm == "sha256":
        record[os.path.abspath(path)] = hexdigest
    return hexdigest


@contextlib.contextmanager
def recorded_digests() -> Iterator[dict[str, str]]:
    """Collect the sha256 that :func:`file_digest` computes inside the block.

    Yields a dict ``{absolute path: sha256}`` filled as files are hashed (in this
    thread/context only); a file hashed twice keeps its last digest. A caller that needs
    the checksum of a file some code in the block already read in full (the simulated
    dataset's cache verifies its files' sha256) takes it from here instead of reading the
    bytes again. Only valid for files the block does not write after hashing them.
    """
    record: dict[str, str] = {}
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def _set_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def temporary_environ(**values: str | None) -> Iterator[None]:
    """Set (or, with ``None``, unset) environment variables; restore them on exit.

    Kernels started inside the block inherit the changed environment.
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)  # a variable that was unset is unset again
