"""Names shared by the reader and the writer of :mod:`fusi_nmf.io`."""

from __future__ import annotations

from fusi_nmf._xr import SPATIAL_DIMS

RECORDING_DIMS = ("time", *SPATIAL_DIMS)
RECORDING_NAME = "power_doppler"
