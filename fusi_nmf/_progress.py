"""Progress reporting for long work, quiet on request.

Progress bars go to stderr (the book hides stderr). They are off when
``progress=False`` is passed, or when the environment variable
``FUSI_NMF_PROGRESS`` is ``0`` (tests and papermill sweeps set it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(progress: bool | None = None) -> bool:
    """Resolve a ``progress`` argument: explicit bool wins, else the env var."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("FUSI_NMF_PROGRESS", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


def progress_bar(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    progress: bool | None = None,
    **kwargs,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled."""
    if not progress_enabled(progress):
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, **kwargs)


def status(message: str, progress: bool | None = None) -> None:
    """Print one progress line (to stderr) unless progress is disabled."""
    if progress_enabled(progress):
        print(message, file=sys.stderr, flush=True)
