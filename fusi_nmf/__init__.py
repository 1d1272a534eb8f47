"""fusi-nmf: non-negative matrix factorization of functional ultrasound recordings.

Pipeline: load (NIfTI + BIDS sidecar -> xarray) -> rigid motion correction ->
cleaning -> z-score per voxel -> pos/neg split -> NMF in temporal or spatial mode ->
figures. The main entry points are importable from the top level (loaded lazily, so
``import fusi_nmf`` stays fast):

>>> from fusi_nmf import Workspace, NMF, load_recording   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_recording": "fusi_nmf.io",
    "load_nifti": "fusi_nmf.io",
    "save_nifti": "fusi_nmf.io",
    "save_recording": "fusi_nmf.io",
    "simulate_recording": "fusi_nmf.simulate",
    "simulated_dataset": "fusi_nmf.simulate",
    "load_ground_truth": "fusi_nmf.simulate",
    "fetch_nunez_elizalde_2022": "fusi_nmf.datasets",
    "recording_path": "fusi_nmf.datasets",
    "register_volumewise": "fusi_nmf.registration",
    "framewise_displacement": "fusi_nmf.registration",
    "standardize": "fusi_nmf.signal",
    "split_sign": "fusi_nmf.signal",
    "clean": "fusi_nmf.signal",
    "NMF": "fusi_nmf.decomposition",
    "source_recovery": "fusi_nmf.metrics",
    "match_components": "fusi_nmf.metrics",
    "Workspace": "fusi_nmf.pipeline",
    "PipelineConfig": "fusi_nmf.pipeline",
    "run_sweep": "fusi_nmf.sweep",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fusi_nmf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
