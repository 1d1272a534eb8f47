"""Where fusi-nmf keeps downloaded and generated data."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "FUSI_NMF_DATA"


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data/cache folder: ``data_dir`` > ``$FUSI_NMF_DATA`` > ``~/.cache/fusi-nmf``.

    The folder is created if needed.
    """
    if data_dir is not None:
        path = Path(data_dir)
    elif os.environ.get(DATA_ENV_VAR):
        path = Path(os.environ[DATA_ENV_VAR])
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("fusi-nmf", appauthor=False))
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
