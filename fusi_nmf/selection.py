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
  mean matched correlation says whether the components are reproducible. It needs fits
  from random restarts (``init="random"``, what :func:`component_sweep` uses): the
  default ``nndsvda`` initialisation ignores the seed.
- :func:`recovery_by_k` - on the simulated recording, recovery of the planted sources.

:func:`component_sweep` runs the sweep itself: chapter 4's notebook
(``notebooks/04_temporal_nmf.ipynb``, found by :func:`find_sweep_notebook`) once per
``n_components`` x ``random_state`` through :func:`fusi_nmf.sweep.run_sweep`.

:func:`recommend_k` combines them with a rule stated in its docstring.
"""

from __future__ import annotations

import hashlib
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
    "SWEEP_NOTEBOOK",
    "bicv_curve",
    "bicv_error",
    "component_sweep",
    "find_sweep_notebook",
    "load_sweep_fits",
    "recommend_k",
    "recovery_by_k",
    "split_half_stability",
    "stability",
    "sweep_table",
]


SWEEP_NOTEBOOK = "04_temporal_nmf.ipynb"


# ---------------------------------------------------------------------- the sweep
def find_sweep_notebook(
    notebook: str | os.PathLike | None = None, name: str = SWEEP_NOTEBOOK
) -> Path:
    """The chapter notebook a component sweep runs (chapter 4, temporal NMF, by default).

    Parameters
    ----------
    notebook : path, optional
        An explicit notebook; it must exist. ``None`` or ``""``: look for ``name`` in the
        repository's ``notebooks/`` folder (beside the installed package, i.e. an editable
        install or a clone), then in the current folder, ``./notebooks`` and
        ``../notebooks``.
    name : str
        File name to look for.

    Returns
    -------
    Path
        Absolute path of the notebook.

    Raises
    ------
    FileNotFoundError
        Not found; the message lists every place searched and says how to point at it.
    """
    if notebook:
        path = Path(notebook).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Sweep notebook {path} does not exist; pass the path of "
                f"notebooks/{name} from a clone of the fusi-nmf repository"
            )
        return path.resolve()
    import fusi_nmf

    cwd = Path.cwd()
    candidates = [
        Path(fusi_nmf.__file__).resolve().parents[1] / "notebooks" / name,
        cwd / name,
        cwd / "notebooks" / name,
        cwd.parent / "notebooks" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    searched = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"Cannot find the sweep notebook {name} (searched {searched}). The package is "
        "probably installed without its notebooks: pass sweep_notebook= (the notebook "
        f"parameter) / notebook= the path of notebooks/{name} in a clone of the repository"
    )


def _int_list(values: Iterable[int], name: str) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of integers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{name} must hold integers, got {v!r} in {values!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} is empty: give at least one value")
    return sorted(set(out))


def component_sweep(
    work_dir: str | os.PathLike,
    ks: Iterable[int],
    seeds: Iterable[int] = (0, 1),
    *,
    init: str | None = "random",
    notebook: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    jobs: int = 1,
    force: bool = False,
    allow_failures: bool = False,
    prepare: bool = True,
    progress: bool | None = None,
    **fixed: Any,
) -> Path:
    """Run chapter 4 once per ``n_components`` x ``random_state`` with papermill.

    Every run executes the notebook with a real kernel (:func:`fusi_nmf.sweep.run_sweep`)
    and saves its fit (maps NIfTI, time courses TSV, ``summary.json``) in its run folder;
    read them back with :func:`sweep_table` and :func:`load_sweep_fits`. The sweep is
    resumable: completed runs are skipped, so calling this again (e.g. rebuilding the
    book) costs a few file reads, and adding a ``k`` runs only the new combinations.

    Parameters
    ----------
    work_dir : path
        The pipeline's shared cache folder: every run reuses its cached preprocessing and
        caches its NMF fit there.
    ks, seeds : iterable of int
        ``n_components`` and ``random_state`` values; every pair is one run.
    init : str or None
        NMF initialisation of every run. ``"random"`` (default): every seed starts from
        a different random point, which is what makes :func:`stability` across seeds
        informative. The notebooks' own default, ``"nndsvda"``, is computed from an SVD
        of the data and ignores the seed, so all seeds give the same fit (a warning says
        so when several seeds are asked for). ``None``: do not pass ``init`` (for a
        notebook that does not declare it).
    notebook : path, optional
        Notebook to run (default: :func:`find_sweep_notebook`). It must declare
        ``n_components``, ``random_state``, ``work_dir`` and ``output_dir`` (and
        ``init`` unless ``init=None``).
    out_dir : path, optional
        Sweep folder. Default ``work_dir/sweeps/<notebook>-<hash of fixed parameters>``,
        so sweeps on other data or settings never mix.
    jobs : int
        Runs in parallel on this machine (each kernel gets one BLAS thread).
    force : bool
        Redo completed runs.
    allow_failures : bool
        By default a failed run raises; with True it is only warned about (and left out
        of :func:`sweep_table`).
    prepare : bool
        Compute the preprocessing once here (cached in ``work_dir``) before the runs start,
        so parallel runs do not each compute it.
    progress : bool, optional
        Progress lines on stderr.
    **fixed
        Parameters passed unchanged to every run, e.g. ``dataset``, ``preset``, ``seed``,
        ``data_dir``, ``registration``, ``cleaning``, ``standardize``, ``max_iter``
        (names the notebook declares).

    Returns
    -------
    Path
        The sweep folder (``runs/<run id>/``, ``runs.tsv``).

    Raises
    ------
    FileNotFoundError
        The notebook cannot be found.
    RuntimeError
        A run failed (unless ``allow_failures``); the message names the runs and errors.
    """
    from fusi_nmf.pipeline import PipelineConfig, Workspace
    from fusi_nmf.sweep import run_sweep

    path = find_sweep_notebook(notebook)
    grid = {"n_components": _int_list(ks, "ks"), "random_state": _int_list(seeds, "seeds")}
    for key in ("n_components", "random_state", "output_dir", "work_dir"):
        if key in fixed:
            raise ValueError(f"{key} is set by component_sweep; do not pass it in **fixed")
    if init is not None and init != "random" and len(grid["random_state"]) > 1:
        warnings.warn(
            f"init={init!r} does not depend on the seed: every seed in {grid['random_state']} "
            "gives the same fit, so stability across seeds will be ~1 whatever k; "
            "use init='random' to measure it",
            UserWarning,
            stacklevel=2,
        )
    work = Path(work_dir).expanduser().resolve()
    fixed = {"work_dir": str(work), **fixed}
    if init is not None:
        fixed["init"] = init
    if out_dir is None:
        key = hashlib.sha256(
            json.dumps({k: v for k, v in fixed.items() if k != "work_dir"}, sort_keys=True,
                       default=str).encode()
        ).hexdigest()[:12]
        out_dir = work / "sweeps" / f"{path.stem}-{key}"
    out = Path(out_dir)
    if prepare:
        names = {f for f in PipelineConfig.__dataclass_fields__} - {
            "n_components", "random_state", "init"
        }
        params = {k: v for k, v in fixed.items() if k in names}
        params["data_dir"] = params.get("data_dir") or None
        Workspace(work, progress=progress, **params).standardized()
    records = run_sweep(path, grid, out, fixed, jobs=jobs, force=force, progress=progress)
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines = "; ".join(
            f"{r['run_id']}: {r.get('error', '?')} [{r.get('error_location', '')}]"
            for r in failed
        )
        message = (
            f"{len(failed)} of {len(records)} sweep run(s) failed ({lines}); executed "
            f"notebooks and records are in {out / 'runs'}"
        )
        if not allow_failures:
            raise RuntimeError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return out


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

    Meaningful for fits from random restarts (``init="random"``, as
    :func:`component_sweep` runs them): with a deterministic initialisation such as
    ``nndsvda`` every seed gives the same fit and the stability is ~1 for every ``k``.

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


def split_half_stability(
    data: xr.DataArray,
    ks: Iterable[int],
    *,
    random_state: int = 0,
    max_iter: int = 300,
) -> pd.DataFrame:
    """Split-half reproducibility of temporal NMF maps, for each ``k``.

    The recording is cut in two halves in time (first and second half of the frames);
    temporal NMF (:class:`fusi_nmf.decomposition.NMF`) is fit on each half, and the two
    sets of maps are matched one to one (Hungarian algorithm on map correlations,
    :func:`fusi_nmf.metrics.match_components`). Components that describe the recording,
    not one stretch of its noise, reappear in both halves. This is more demanding than
    :func:`stability` across seeds on the same data, which with the deterministic
    ``nndsvda`` initialisation is close to 1 for every ``k``.

    Parameters
    ----------
    data : DataArray
        Non-negative data ``(time, ...)``, e.g. :meth:`Workspace.split`.
    ks : iterable of int
        Numbers of components.
    random_state : int
        NMF seed.
    max_iter : int
        NMF iterations per half.

    Returns
    -------
    DataFrame
        Columns ``n_components``, ``split_half`` (mean matched map correlation) and
        ``split_half_min`` (worst matched component).
    """
    from fusi_nmf.decomposition import NMF
    from fusi_nmf.metrics import match_components

    _features_matrix(data)  # validates dims and values
    n = data.sizes["time"]
    halves = (data.isel(time=slice(0, n // 2)), data.isel(time=slice(n // 2, None)))
    rows = []
    for k in _int_list(ks, "ks"):
        maps = []
        for half in halves:
            model = NMF(n_components=k, mode="temporal", max_iter=max_iter,
                        random_state=random_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unconverged half-fit is still a fit
                model.fit(half)
            maps.append(model.maps_)
        corr = np.asarray(match_components(*maps)["correlation"], dtype=float)
        rows.append(
            {"n_components": k, "split_half": float(corr.mean()),
             "split_half_min": float(corr.min())}
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


def _group_split(groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves, whole groups at a time (random groups, about half the items)."""
    labels = np.unique(groups)
    first = set(rng.permutation(labels)[: len(labels) // 2].tolist())
    mask = np.isin(groups, list(first))
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def _column_groups(data: xr.DataArray, block_mm: float) -> np.ndarray:
    """Spatial tile of every column of :func:`_features_matrix` (all channels of a voxel
    share it, so ``pos`` and ``neg`` of one voxel never land on both sides)."""
    other = [d for d in data.dims if d != "time"]
    spatial = [d for d in ("z", "y", "x") if d in other]
    shape = tuple(data.sizes[d] for d in other)
    ids = np.zeros(shape, dtype=np.int64)
    for d in spatial:
        axis = other.index(d)
        if d in data.coords and block_mm > 0 and data.sizes[d] > 1:
            pos = np.asarray(data[d].values, dtype=float)
            tile = np.floor((pos - pos.min()) / block_mm).astype(np.int64)
        else:
            tile = np.arange(data.sizes[d])
        n_tiles = int(tile.max()) + 1
        ids = ids * n_tiles + tile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    if not spatial:  # no spatial dims: every column its own group
        return np.arange(int(np.prod(shape)))
    return ids.reshape(-1)


def bicv_error(
    data: xr.DataArray,
    n_components: int,
    *,
    random_state: int = 0,
    max_iter: int = 300,
    block_frames: int = 1,
    block_mm: float = 0.0,
) -> float:
    """Relative held-out error ``||A - W_A H_A||^2 / ||A||^2`` of one 2x2 bi-cross-validation.

    Frames and voxels are split at random into two halves each; with ``block_frames`` and
    ``block_mm`` the split moves whole runs of consecutive frames and whole spatial tiles,
    so that noise shared by neighbours (temporal autocorrelation, spatial smoothing) does
    not leak from the training blocks into the held-out one. The ``sign`` channels of a
    voxel always stay together (``pos`` and ``neg`` of one voxel predict each other).

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
    block_frames : int
        Consecutive frames moved together (1: frames split independently).
    block_mm : float
        Edge of the spatial tiles moved together, in mm (0: voxels split independently).
    """
    from sklearn.decomposition import non_negative_factorization
    from sklearn.exceptions import ConvergenceWarning

    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    X = _features_matrix(data)
    rng = np.random.default_rng(random_state)
    r1, r2 = _group_split(np.arange(X.shape[0]) // int(block_frames), rng)
    c1, c2 = _group_split(_column_groups(data, float(block_mm)), rng)
    if min(len(r1), len(r2), len(c1), len(c2)) == 0:
        raise ValueError("bicv: blocks too large for the data; lower block_frames / block_mm")
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
    block_frames: int = 1,
    block_mm: float = 0.0,
) -> pd.DataFrame:
    """:func:`bicv_error` for each ``k`` (``repeats`` random splits each): mean and spread.

    The same splits (seeds ``random_state .. random_state + repeats - 1``) are used for
    every ``k``, so the curve compares ranks on identical held-out data.
    """
    rows = []
    for k in _int_list(ks, "ks"):
        errors = [
            bicv_error(data, k, random_state=random_state + r, max_iter=max_iter,
                       block_frames=block_frames, block_mm=block_mm)
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
    """Recovery of the planted sources for each ``k`` (averaged over seeds).

    For every fit, :func:`fusi_nmf.metrics.source_recovery` matches sources to components;
    ``timecourse_r`` and ``map_r`` are the mean over sources of the matched |r| (a source
    left without a component, when ``k`` is below the number of sources, counts as 0) and
    ``timecourse_r_min`` the worst source's time-course |r|.
    """
    from fusi_nmf.metrics import source_recovery

    rows = []
    for (k, seed), fit in sorted(fits.items()):
        # A source left without a component (k < number of sources) counts as r = 0.
        table = source_recovery(fit["timecourses"], fit["maps"], truth).fillna(
            {"timecourse_r": 0.0, "map_r": 0.0}
        )
        rows.append(
            {
                "n_components": k,
                "random_state": seed,
                "timecourse_r": float(table["timecourse_r"].mean()),
                "map_r": float(table["map_r"].mean()),
                "timecourse_r_min": float(table["timecourse_r"].min()),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        raise ValueError("recovery_by_k got no fits")
    columns = ["timecourse_r", "map_r", "timecourse_r_min"]
    return out.groupby("n_components", as_index=False)[columns].mean()


# ------------------------------------------------------------------------ recommend
def recommend_k(
    table: pd.DataFrame,
    *,
    stability_threshold: float = 0.8,
    tolerance: float = 0.01,
    stability_column: str = "stability",
) -> dict[str, Any]:
    """Recommend ``n_components`` from held-out error and reproducibility.

    Rule: the held-out error picks the candidates - every ``k`` whose held-out error is
    within ``tolerance`` (relative) of the minimum; among them the smallest ``k`` whose
    components are reproducible (``table[stability_column] >= stability_threshold``)
    wins; if none is, the smallest candidate. Smaller is preferred because extra
    components that predict held-out data no better only split real sources or fit noise.

    Parameters
    ----------
    table : DataFrame
        One row per ``k``: columns ``n_components``, ``heldout_error`` (e.g. from
        :func:`bicv_curve`) and ``stability_column``.
    stability_threshold : float
        Minimal reproducibility (mean matched correlation) of a recommended ``k``.
    tolerance : float
        Relative slack on the minimal held-out error (0.01: within 1 %).
    stability_column : str
        Reproducibility column, e.g. ``"stability"`` (:func:`stability`, across seeds) or
        ``"split_half"`` (:func:`split_half_stability`). NaN (e.g. a single seed) counts
        as not reproducible.

    Returns
    -------
    dict
        ``n_components`` (int), ``candidates`` (the ``k`` within tolerance), ``stable``
        (the candidates that pass the threshold) and ``reason`` (a sentence).
    """
    needed = {"n_components", "heldout_error", stability_column}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"recommend_k needs columns {sorted(needed)}; missing {sorted(missing)}")
    if not 0 <= tolerance:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    table = table.dropna(subset=["heldout_error"]).sort_values("n_components")
    if table.empty:
        raise ValueError("recommend_k: no row has a held-out error")
    best = float(table["heldout_error"].min())
    candidates = table[table["heldout_error"] <= best * (1 + tolerance)]
    stable = candidates[candidates[stability_column] >= stability_threshold]
    chosen = (stable if len(stable) else candidates).iloc[0]
    k = int(chosen["n_components"])
    reason = (
        f"k={k}: its held-out error {chosen['heldout_error']:.4f} is within {tolerance:.0%} of "
        f"the minimum ({best:.4f}), and its {stability_column.replace('_', '-')} "
        f"reproducibility is {chosen[stability_column]:.2f}"
        + (
            f" (>= {stability_threshold}); it is the smallest such k"
            if len(stable)
            else f" (no candidate reached {stability_threshold}; smallest candidate taken)"
        )
    )
    return {
        "n_components": k,
        "candidates": [int(v) for v in candidates["n_components"]],
        "stable": [int(v) for v in stable["n_components"]],
        "reason": reason,
    }
