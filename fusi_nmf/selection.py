"""Model selection for NMF: how many components, and how stable are they.

Four views, each a function returning a labelled table (pandas):

- :func:`sweep_table` - reconstruction error and explained variance vs ``n_components``
  from the records of a papermill sweep (:mod:`fusi_nmf.sweep`); the "elbow".
- :func:`bicv_error` / :func:`bicv_curve` - held-out error by bi-cross-validation
  (Owen & Perry 2009): rows (frames) and columns (voxels) are split at random into
  halves ``[[A, B], [C, D]]``; NMF is fit on ``D = W_D H_D``; ``W_A`` is solved from
  ``B ~ W_A H_D`` and ``H_A`` from ``C ~ W_D H_A`` by non-negative least squares, and the
  held-out block is predicted as ``A ~ W_A H_A``. Unlike the training error, it rises again
  once extra components fit noise.
- :func:`stability` - for each ``k``, maps fit from different seeds are matched one to one
  (Hungarian algorithm on map correlations, :func:`fusi_nmf.metrics.match_components`); the
  mean matched correlation says whether the components are reproducible.
- :func:`recovery_by_k` - on the simulated recording, recovery of the planted sources.

:func:`recommend_k` combines them with a rule stated in its docstring.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "bicv_curve",
    "bicv_error",
    "load_sweep_fits",
    "recommend_k",
    "recovery_by_k",
    "stability",
    "sweep_table",
]


# ---------------------------------------------------------------------- sweep records
def sweep_table(sweep_dir: str | os.PathLike, mode: str = "temporal") -> pd.DataFrame:
    """One row per successful run of a sweep: parameters and fit metrics of ``mode``.

    Parameters
    ----------
    sweep_dir : path
        The ``--out`` folder of ``python -m fusi_nmf sweep``.
    mode : {"temporal", "spatial"}
        Which fit's metrics to report.
    """
    from fusi_nmf.sweep import load_records

    records = load_records(sweep_dir)
    if not records:
        raise FileNotFoundError(
            f"No sweep records under {Path(sweep_dir) / 'runs'}; "
            "run `python -m fusi_nmf sweep` first"
        )
    rows = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        metrics = rec.get("metrics", {})
        if f"{mode}.reconstruction_err" not in metrics:
            continue
        row = dict(rec["parameters"])
        row.update({k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{mode}.")})
        row["run_id"] = rec["run_id"]
        row["wall_time_s"] = rec.get("wall_time_s")
        rows.append(row)
    if not rows:
        raise ValueError(f"No successful {mode!r} runs with metrics in {sweep_dir}")
    return pd.DataFrame(rows).sort_values(["n_components", "random_state"]).reset_index(drop=True)


def load_sweep_fits(
    sweep_dir: str | os.PathLike, mode: str = "temporal"
) -> dict[tuple[int, int], dict[str, xr.DataArray]]:
    """Maps and time courses of each successful run, keyed by ``(n_components, random_state)``."""
    from fusi_nmf.io import load_nifti

    fits = {}
    for _, row in sweep_table(sweep_dir, mode).iterrows():
        summary_path = Path(sweep_dir) / "runs" / row["run_id"] / "summary.json"
        summary = json.loads(summary_path.read_text())
        outputs = summary["outputs"]
        maps = load_nifti(outputs[f"maps_{mode}"])
        tcs = pd.read_csv(outputs[f"timecourses_{mode}"], sep="\t", index_col="time")
        timecourses = xr.DataArray(
            tcs.to_numpy(dtype=np.float32),
            dims=("time", "component"),
            coords={"time": tcs.index.to_numpy(), "component": np.arange(tcs.shape[1])},
        )
        fits[(int(row["n_components"]), int(row["random_state"]))] = {
            "maps": maps,
            "timecourses": timecourses,
        }
    return fits


# ------------------------------------------------------------------------ stability
def stability(fits: dict[tuple[int, int], dict[str, xr.DataArray]]) -> pd.DataFrame:
    """Mean matched map correlation between every pair of seeds, for each ``k``.

    Returns a table with columns ``n_components``, ``stability`` (mean over seed pairs of
    the mean matched correlation), ``stability_min`` (worst matched component over all
    pairs) and ``n_pairs``.
    """
    from fusi_nmf.metrics import match_components

    rows = []
    for k in sorted({k for k, _ in fits}):
        seeds = sorted(s for kk, s in fits if kk == k)
        means, worst = [], []
        for a, b in itertools.combinations(seeds, 2):
            table = match_components(fits[(k, a)]["maps"], fits[(k, b)]["maps"])
            corr = np.asarray(table["correlation"], dtype=float)
            means.append(corr.mean())
            worst.append(corr.min())
        rows.append(
            {
                "n_components": k,
                "stability": float(np.mean(means)) if means else np.nan,
                "stability_min": float(np.min(worst)) if worst else np.nan,
                "n_pairs": len(means),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ bi-cross-validation
def _features_matrix(data: xr.DataArray) -> np.ndarray:
    if "time" not in data.dims:
        raise ValueError(f"bicv needs a 'time' dim, got dims {data.dims}")
    other = [d for d in data.dims if d != "time"]
    values = data.transpose("time", *other).values.reshape(data.sizes["time"], -1)
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("bicv needs finite, non-negative data (use split_sign first)")
    return values


def bicv_error(
    data: xr.DataArray,
    n_components: int,
    *,
    random_state: int = 0,
    max_iter: int = 300,
) -> float:
    """Relative held-out error ``||A - W_A H_A||^2 / ||A||^2`` of one 2x2 bi-cross-validation.

    Parameters
    ----------
    data : DataArray
        Non-negative data with a ``time`` dim (e.g. the pos/neg split).
    n_components : int
        Rank of the factorization.
    random_state : int
        Seeds the random row/column split and the NMF initialisation.
    max_iter : int
        NMF iterations for the fit on the training block.
    """
    from sklearn.decomposition import non_negative_factorization
    from sklearn.exceptions import ConvergenceWarning

    X = _features_matrix(data)
    rng = np.random.default_rng(random_state)
    rows, cols = rng.permutation(X.shape[0]), rng.permutation(X.shape[1])
    r1, r2 = np.sort(rows[: X.shape[0] // 2]), np.sort(rows[X.shape[0] // 2 :])
    c1, c2 = np.sort(cols[: X.shape[1] // 2]), np.sort(cols[X.shape[1] // 2 :])
    A, B, C, D = X[np.ix_(r1, c1)], X[np.ix_(r1, c2)], X[np.ix_(r2, c1)], X[np.ix_(r2, c2)]
    if n_components > min(D.shape):
        raise ValueError(f"n_components={n_components} exceeds the training block {D.shape}")
    common = {"n_components": n_components, "max_iter": max_iter, "tol": 1e-4}
    with warnings.catch_warnings():
        # An estimate of held-out error: an unconverged inner solve is not worth a warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        W_D, H_D, _ = non_negative_factorization(
            D, init="nndsvda", random_state=random_state, **common
        )
        # NNLS with the other factor fixed: B ~ W_A H_D and C^T ~ H_A^T W_D^T.
        W_A, _, _ = non_negative_factorization(B, H=H_D, update_H=False, init="custom", **common)
        H_At, _, _ = non_negative_factorization(
            C.T, H=W_D.T, update_H=False, init="custom", **common
        )
    residual = A - W_A @ H_At.T
    return float((residual**2).sum() / (A.astype(np.float64) ** 2).sum())


def bicv_curve(
    data: xr.DataArray,
    ks: Iterable[int],
    *,
    repeats: int = 1,
    random_state: int = 0,
    max_iter: int = 300,
) -> pd.DataFrame:
    """:func:`bicv_error` for each ``k`` (``repeats`` random splits each): mean and spread."""
    rows = []
    for k in ks:
        errors = [
            bicv_error(data, k, random_state=random_state + r, max_iter=max_iter)
            for r in range(repeats)
        ]
        rows.append(
            {
                "n_components": int(k),
                "heldout_error": float(np.mean(errors)),
                "heldout_error_sd": float(np.std(errors)),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- recovery
def recovery_by_k(
    fits: dict[tuple[int, int], dict[str, xr.DataArray]], truth: xr.Dataset
) -> pd.DataFrame:
    """Mean recovery of the planted sources (time course and map |r|) for each ``k``."""
    from fusi_nmf.metrics import source_recovery

    rows = []
    for (k, seed), fit in sorted(fits.items()):
        table = source_recovery(fit["timecourses"], fit["maps"], truth)
        rows.append(
            {
                "n_components": k,
                "random_state": seed,
                "timecourse_r": float(table["timecourse_r"].mean()),
                "map_r": float(table["map_r"].mean()),
            }
        )
    out = pd.DataFrame(rows)
    return out.groupby("n_components", as_index=False)[["timecourse_r", "map_r"]].mean()


# ------------------------------------------------------------------------ recommend
def recommend_k(
    table: pd.DataFrame,
    *,
    stability_threshold: float = 0.8,
    tolerance: float = 0.01,
) -> dict[str, Any]:
    """Recommend ``n_components`` from a table with ``heldout_error`` and ``stability``.

    Rule: the held-out error picks the candidates - every ``k`` whose held-out error is
    within ``tolerance`` (relative) of the minimum; among them the smallest ``k`` whose
    components are reproducible across seeds (``stability >= stability_threshold``) wins;
    if none is, the smallest candidate. Smaller is preferred because extra components
    that fit no better only split real sources or fit noise.

    Returns a dict with ``n_components`` and ``reason`` (a sentence for the report).
    """
    needed = {"n_components", "heldout_error", "stability"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"recommend_k needs columns {sorted(needed)}; missing {sorted(missing)}")
    table = table.sort_values("n_components")
    best = table["heldout_error"].min()
    candidates = table[table["heldout_error"] <= best * (1 + tolerance)]
    stable = candidates[candidates["stability"] >= stability_threshold]
    chosen = (stable if len(stable) else candidates).iloc[0]
    k = int(chosen["n_components"])
    reason = (
        f"k={k}: held-out error {chosen['heldout_error']:.4f} is within {tolerance:.0%} of the "
        f"minimum ({best:.4f}) and seed-to-seed stability is {chosen['stability']:.2f}"
        + (
            f" (>= {stability_threshold})"
            if len(stable)
            else f" (no candidate reached {stability_threshold}; smallest candidate taken)"
        )
    )
    return {"n_components": k, "reason": reason}


