"""fusi-nmf: non-negative matrix factorization of functional ultrasound recordings.

Pipeline: load (NIfTI + BIDS sidecar -> xarray) -> rigid motion correction ->
z-score per voxel -> pos/neg split -> NMF in temporal or spatial mode -> figures.
"""

from __future__ import annotations

__version__ = "0.1.0"
