"""Tiny synthetic recordings for unit tests that need exact control of the values."""

from __future__ import annotations

import numpy as np
import xarray as xr


def make_recording(n_time=40, nz=1, ny=6, nx=5, seed=0, dt=0.3, t0=10.608):
    """A small positive (time, z, y, x) recording with proper coords and attrs."""
    rng = np.random.default_rng(seed)
    values = 1000.0 + 200.0 * rng.standard_normal((n_time, nz, ny, nx))
    return xr.DataArray(
        values.astype(np.float32),
        dims=("time", "z", "y", "x"),
        coords={
            "time": ("time", t0 + dt * np.arange(n_time), {"units": "s"}),
            "z": ("z", 0.4 * np.arange(nz), {"units": "mm", "voxdim": 0.4}),
            "y": ("y", 0.04832 * np.arange(ny), {"units": "mm", "voxdim": 0.04832}),
            "x": ("x", 0.1 * np.arange(nx), {"units": "mm", "voxdim": 0.1}),
        },
        attrs={"source_file": "sim.nii.gz", "repetition_time": dt},
        name="power_doppler",
    )
