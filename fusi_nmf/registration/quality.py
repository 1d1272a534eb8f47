"""Quality control of a registration: framewise displacement and before/after numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from fusi_nmf.registration._validate import check_data
from fusi_nmf.registration.features import feature, frame_correlation, robust_scale

#: default lever arm (mm) converting rotations to displacement in framewise displacement
FD_RADIUS_MM = 5.0
_KNOWN = {"tx", "ty", "tz", "rx", "ry", "rz"}


def framewise_displacement(parameters: xr.DataArray, radius: float = FD_RADIUS_MM
                           ) -> xr.DataArray:
    """Framewise displacement (Power et al., 2012) of rigid motion parameters.

    ``FD_t = sum |d translation| + radius * sum |d rotation (rad)|`` between frames
    ``t-1`` and ``t``; ``FD_0 = 0``.

    Parameters
    ----------
    parameters : DataArray (time, parameter)
        Translations (``tx``, ``ty``, ``tz``) in mm and rotations (``rx``, ``ry``,
        ``rz``) in degrees, as returned in ``motion["parameters"]``; any subset.
    radius : float, default 5.0
        Lever arm in mm that converts a rotation to a displacement. Power et al. use
        50 mm for a human head; 5 mm is of the order of a rodent brain's half-width
        (the field of view of one fUSI slice is ~8 x 5.5 mm).

    Returns
    -------
    DataArray (time,)
        Framewise displacement in mm, named ``framewise_displacement``.
    """
    if not isinstance(parameters, xr.DataArray):
        raise TypeError("parameters must be a DataArray with dims (time, parameter).")
    if set(parameters.dims) != {"time", "parameter"} or "parameter" not in parameters.coords:
        raise ValueError(
            f"parameters must have dims (time, parameter) with parameter names; got "
            f"{parameters.dims}."
        )
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a non-negative number of mm, got {radius!r}.")
    names = [str(p) for p in parameters["parameter"].values]
    unknown = sorted(set(names) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown motion parameters {unknown}; expected a subset of {_KNOWN}.")
    p = parameters.transpose("time", "parameter")
    diff = np.abs(np.diff(np.asarray(p.values, dtype=float), axis=0))
    weights = np.array([1.0 if n.startswith("t") else radius * np.pi / 180.0 for n in names])
    fd = np.concatenate([[0.0], diff @ weights])
    coords = {"time": p["time"]} if "time" in p.coords else {}
    return xr.DataArray(fd, dims=("time",), coords=coords, name="framewise_displacement",
                        attrs={"units": "mm", "radius_mm": float(radius),
                               "long_name": "framewise displacement (Power et al. 2012)"})


def registration_qc(raw: xr.DataArray, registered: xr.DataArray,
                    reference: xr.DataArray | None = None) -> dict[str, Any]:
    """Quality-control numbers and images for a registration.

    Parameters
    ----------
    raw, registered : DataArray (time, z, y, x)
        The recording before and after :func:`fusi_nmf.registration.register_volumewise`.
    reference : DataArray (z, y, x), optional
        Reference volume; default: temporal median of ``registered``.

    Returns
    -------
    dict
        ``correlation_before`` / ``correlation_after``: DataArray (time,) Pearson
        correlation of ``asinh(P / median P)`` of each frame with the reference;
        ``mean_correlation_before`` / ``mean_correlation_after``: their means (float);
        ``mean_before``, ``mean_after``, ``std_before``, ``std_after``: temporal mean /
        standard deviation images (z, y, x) as DataArrays.
    """
    raw = check_data(raw)
    registered = check_data(registered)
    if raw.shape != registered.shape:
        raise ValueError(
            f"raw {raw.shape} and registered {registered.shape} must have the same shape."
        )
    if reference is None:
        reference = registered.median("time")
    elif not isinstance(reference, xr.DataArray):
        raise TypeError("reference must be a (z, y, x) DataArray or None.")
    if "time" in reference.dims:
        raise ValueError("reference must be a single (z, y, x) volume, without a time dim.")
    reference = reference.transpose("z", "y", "x")
    if reference.shape != raw.shape[1:]:
        raise ValueError(f"reference shape {reference.shape} != volume shape {raw.shape[1:]}.")
    a = np.asarray(raw.values, dtype=np.float32)
    scale = robust_scale(a)
    ref_feat = feature(np.asarray(reference.values, dtype=np.float32), scale)
    cb = frame_correlation(feature(a, scale), ref_feat)
    ca = frame_correlation(feature(np.asarray(registered.values, dtype=np.float32), scale),
                           ref_feat)
    tcoord = {"time": raw["time"]} if "time" in raw.coords else {}
    return {
        "correlation_before": xr.DataArray(cb, dims=("time",), coords=tcoord),
        "correlation_after": xr.DataArray(ca, dims=("time",), coords=tcoord),
        "mean_correlation_before": float(np.nanmean(cb)),
        "mean_correlation_after": float(np.nanmean(ca)),
        "mean_before": raw.mean("time").rename("mean_before"),
        "mean_after": registered.mean("time").rename("mean_after"),
        "std_before": raw.std("time").rename("std_before"),
        "std_after": registered.std("time").rename("std_after"),
    }
