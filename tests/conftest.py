"""Shared test set-up: a private data folder, quiet progress, the small simulated recording."""

from __future__ import annotations

import os
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
