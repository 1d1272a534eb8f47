"""Evaluation against a known ground truth (simulations); not used by the registration.

Public as :func:`fusi_nmf.metrics.align_to_truth` (the evaluation layer). The body stays
here while notebooks 02 and 07 import ``fusi_nmf.registration.align_to_truth``: the
registration package sits below metrics and cannot import it. Once they import it from
metrics, move the body to :mod:`fusi_nmf.metrics` and drop this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from fusi_nmf.registration.geometry import angles_from_rotation, rot_xyz


def _params_to_matrices(values: np.ndarray, names: Sequence[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(T, P) named parameters -> rotations (T, 3, 3) and translations (T, 3), xyz order."""
    col = {n: j for j, n in enumerate(names)}

    def get(name: str) -> np.ndarray:
        return values[:, col[name]] if name in col else np.zeros(len(values))

    trans = np.column_stack([get("tx"), get("ty"), get("tz")])
    angles = np.radians(np.column_stack([get("rx"), get("ry"), get("rz")]))
    return rot_xyz(angles), trans


def align_to_truth(parameters: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    """Express estimated motion in the frame of a ground truth, for comparison.

    The estimate maps the registration template to each frame (``M_t``); a ground
    truth maps the unmoved brain to each frame (``T_t``). If the template is the
    unmoved brain moved by an unknown constant rigid transform ``W0``, then
    ``T_t = M_t o W0``. ``W0`` is fitted by least squares (rotation: Procrustes of
    ``sum_t R_M^T R_T``; translation: ``mean_t R_M^T (t_T - t_M)``) and
    ``M_t o W0`` is returned, with the same names/units as ``parameters``. This is
    exact composition, not a subtraction of the mean: with rotations of ~1 degree
    and offsets of ~0.2 mm the difference is a few hundredths of a voxel.

    Parameters
    ----------
    parameters, truth : DataArray (time, parameter)
        Estimated and true motion (same convention, same frames); parameters missing
        from either are zero.

    Returns
    -------
    DataArray (time, parameter)
        The estimate re-expressed relative to the truth's unmoved position.
    """
    for name, da in (("parameters", parameters), ("truth", truth)):
        if not isinstance(da, xr.DataArray) or set(da.dims) != {"time", "parameter"}:
            raise TypeError(f"{name} must be a DataArray with dims (time, parameter).")
    est = parameters.transpose("time", "parameter")
    tru = truth.transpose("time", "parameter")
    if est.sizes["time"] != tru.sizes["time"]:
        raise ValueError(
            f"parameters have {est.sizes['time']} frames, truth has {tru.sizes['time']}."
        )
    names_e = [str(n) for n in est["parameter"].values]
    names_t = [str(n) for n in tru["parameter"].values]
    r_m, t_m = _params_to_matrices(np.asarray(est.values, float), names_e)
    r_t, t_t = _params_to_matrices(np.asarray(tru.values, float), names_t)
    u, _, vt = np.linalg.svd(np.einsum("tji,tjk->ik", r_m, r_t))
    fix = np.eye(3)
    fix[2, 2] = np.sign(np.linalg.det(u @ vt))
    r0 = u @ fix @ vt
    t0 = np.einsum("tji,tj->i", r_m, t_t - t_m) / len(r_m)
    r_new = r_m @ r0
    t_new = t_m + np.einsum("tij,j->ti", r_m, t0)
    # back to named parameters (xyz rotation -> angles via the array-order helper)
    angles = np.degrees(angles_from_rotation(r_new[:, ::-1, ::-1], 3))
    lookup = {"tx": t_new[:, 0], "ty": t_new[:, 1], "tz": t_new[:, 2],
              "rx": angles[:, 0], "ry": angles[:, 1], "rz": angles[:, 2]}
    out = est.copy(data=np.column_stack([lookup[n] for n in names_e]))
    out.attrs = dict(est.attrs, aligned_to="ground truth (constant template offset removed)")
    return out
