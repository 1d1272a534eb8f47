"""Where a recording came from: the citation file a fetched dataset carries (data layer).

:func:`fusi_nmf.datasets.fetch_nunez_elizalde_2022` writes ``INFO_FILE`` (citation,
licence, source) in the BIDS root; :func:`fusi_nmf.io.load_recording` copies it into
the attrs of every recording loaded from inside that root. Both import this module,
so the loader does not depend on the fetcher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["INFO_FILE", "dataset_attrs"]

INFO_FILE = ".fusi_nmf_dataset.json"


def dataset_attrs(path: str | os.PathLike) -> dict[str, str]:
    """Citation/licence attrs for a file inside a fetched dataset (``{}`` otherwise).

    Looks for the ``.fusi_nmf_dataset.json`` that the fetcher writes in the BIDS
    root, walking up from ``path``.
    """
    here = Path(path).resolve()
    for folder in [here, *here.parents]:
        info = folder / INFO_FILE
        if info.is_file():
            try:
                data = json.loads(info.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return dict(data) if isinstance(data, dict) else {}
    return {}
