"""Model selection for NMF: how many components, and how stable are they.

:func:`select_components` runs the whole comparison in this process: it fits NMF
through a :class:`fusi_nmf.pipeline.Workspace` for every ``n_components`` x
``random_state`` (optionally in parallel) and returns one :class:`xarray.Dataset`
with four views, each also available as a function returning a table (pandas):

- the fit (reconstruction error, explained variance) vs ``n_components``: the "elbow";
- :func:`bicv_error` / :func:`bicv_curve` - held-out error by bi-cross-validation
  (Owen & Perry 2009): rows (frames) and columns (voxels) are split at random into
  halves ``[[A, B], [C, D]]``; NMF is fit on ``D = W_D H_D``; ``W_A`` is solved from
  ``B ~ W_A H_D`` and ``H_A`` from ``C ~ W_D H_A`` by non-negative least squares, and the
  held-out block is predicted as ``A ~ W_A H_A``. Unlike the training error, it rises again
  once extra components fit noise.
- :func:`stability` - for each ``k``, maps fit from different seeds are matched one to one
  (Hungarian algorithm on map correlations, :func:`fusi_nmf.metrics.match_components`); the
  mean matched correlation says whether the components are reproducible. It needs fits
  from random restarts (``init="random"``, what :func:`select_components` uses): the
  default ``nndsvda`` initialisation ignores the seed.
- :func:`recovery_by_k` - on the simulated recording, recovery of the planted sources.

:func:`recommend_k` combines them with a rule stated in its docstring. For sweeps over
any notebook parameter, executed notebook by notebook, see :mod:`fusi_nmf.sweep`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from joblib import Parallel, delayed
from sklearn.decomposition import non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from fusi_nmf.decomposition import NMF
from fusi_nmf.metrics import match_components, recovery_with_chance, source_recovery

__all__ = [
    "DEFAULT_KS",
    "bicv_curve",
    "bicv_error",
    "recommend_k",
    "recovery_by_k",
    "select_components",
    "split_half_stability",
    "stability",
]

# The chapters fit k=10 (PipelineConfig.n_components); the grid brackets it.
DEFAULT_KS = (4, 8, 10, 12, 16)


#: Default stopping tolerance of :func:`select_components`' fits (see its ``tol``).
SELECTION_TOL = 1e-3


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


# ---------------------------------------------------------------------- the sweep
def select_components(
    workspace: Any,
    ks: Iterable[int] = DEFAULT_KS,
    seeds: Iterable[int] = (0, 1, 2),
    *,
    init: str = "random",
    max_iter: int | None = None,
    tol: float = SELECTION_TOL,
    bicv_repeats: int = 1,
    bicv_max_iter: int = 100,
    block_frames: int = 20,
    block_mm: float = 0.5,
    tolerance: float = 0.05,
    stability_threshold: float = 0.8,
    n_jobs: int = 1,
    other_truths: Sequence[xr.Dataset] = (),
) -> xr.Dataset:
    """Compare numbers of components on a workspace's data, in this process.

    Every (``k``, seed) pair is one temporal NMF fit through ``workspace.nmf`` (so
    fits are cached in the workspace's folder and a second call only reads them), on
    the workspace's pos/neg split data with its brain mask. From the fits and from
    bi-cross-validation on the same data it computes the fit, held-out error,
    reproducibility across seeds and, when the workspace has ground truth, recovery of
    the planted sources, then applies :func:`recommend_k`.

    Parameters
    ----------
    workspace : fusi_nmf.pipeline.Workspace
        The data and preprocessing (anything with ``nmf``, ``split`` and
        ``ground_truth`` methods like a Workspace's).
    ks : iterable of int, default :data:`DEFAULT_KS`
        Numbers of components to compare.
    seeds : iterable of int, default (0, 1, 2)
        NMF seeds per ``k`` (random restarts; stability needs at least two).
    init : str, default "random"
        NMF initialisation. ``"random"`` makes every seed start elsewhere, which is
        what makes stability informative; a deterministic init (``"nndsvda"``) gives
        the same fit for every seed (a warning says so).
    max_iter : int, optional
        NMF iterations per fit (default: the workspace's ``max_iter``).
    tol : float, default :data:`SELECTION_TOL` (1e-3)
        Stopping tolerance of every fit: ten times looser than a single fit's default
        (1e-4), because the sweep compares fits rather than reporting one. Measured on
        the default preset at ``ks`` (4, 8, 10, 12, 16) x seeds (0, 1, 2), chosen on
        simulator seed 0 and checked on held-out seeds 10-12: the same recommended ``k``
        on all four recordings, stability within 0.021 and source recovery within 0.025
        of ``tol=1e-4``, with 34-52 % fewer iterations.
    bicv_repeats, bicv_max_iter, block_frames, block_mm
        Bi-cross-validation: random splits per ``k``, NMF iterations of its inner fits,
        frames and millimetres held out together (see :func:`bicv_error`).
    tolerance, stability_threshold
        The rule of :func:`recommend_k`.
    n_jobs : int, default 1
        Fits run in parallel threads, each with one BLAS thread (the solver's heavy
        parts release the GIL). ``-1``: one per core.
    other_truths : sequence of xarray.Dataset
        Ground truths of other simulated recordings, for the map chance level of the
        recovery (:func:`recovery_by_k`); the time-course chance needs none.

    Returns
    -------
    xarray.Dataset
        Dims ``n_components`` (the sorted ``ks``) and ``random_state`` (the seeds):
        ``reconstruction_err``, ``explained_variance``, ``n_iter``, ``converged``
        (per fit); ``heldout_error``, ``heldout_error_sd``, ``stability``,
        ``stability_min`` and, with ground truth, ``timecourse_r``, ``map_r``,
        ``timecourse_r_min`` and the chance columns of :func:`recovery_by_k` (per ``k``).
        Attrs: ``recommended_k``, ``candidates``,
        ``stable``, ``reason`` (from :func:`recommend_k`) and the settings used.
        ``to_dataframe()`` / ``.mean("random_state")`` give the tables.

    Raises
    ------
    ValueError, TypeError
        Empty or non-integer ``ks``/``seeds``, a ``k`` too large for the data, a bad
        ``n_jobs``.
    """
    ks = _int_list(ks, "ks")
    seeds = _int_list(seeds, "seeds")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    if isinstance(bicv_repeats, bool) or not isinstance(bicv_repeats, int) or bicv_repeats < 1:
        raise ValueError(f"bicv_repeats must be an integer >= 1, got {bicv_repeats!r}")
    if init != "random" and len(seeds) > 1:
        warnings.warn(
            f"init={init!r} does not depend on the seed: every seed in {seeds} gives the "
            "same fit, so stability across seeds will be ~1 whatever k; use init='random' "
            "to measure it",
            UserWarning,
            stacklevel=2,
        )
    settings: dict[str, Any] = {"init": init}
    if max_iter is not None:
        settings["max_iter"] = int(max_iter)
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    settings["tol"] = float(tol)
    data = workspace.split()  # computed (or read) once, before the threads share it

    def fit(k: int, seed: int):
        return workspace.nmf("temporal", n_components=k, random_state=seed, **settings)

    def heldout(k: int, repeat: int) -> float:
        return _bicv_error(data, k, repeat, bicv_max_iter, block_frames, block_mm)

    pairs = list(itertools.product(ks, seeds))
    splits = list(itertools.product(ks, range(bicv_repeats)))
    tasks = [delayed(fit)(k, s) for k, s in pairs] + [delayed(heldout)(k, r) for k, r in splits]
    # Longest first (fits before the shorter bi-CV solves, larger k first): the threads
    # then finish together instead of one running the largest fits alone at the end.
    # Each task is deterministic on its own, so the order changes no number.
    order = sorted(range(len(tasks)), key=lambda i: (i >= len(pairs), -tasks[i][1][0]))
    # One warning filter for all workers (catch_warnings is not thread-safe): convergence
    # is recorded in the converged variable, and an unconverged bi-CV inner solve is
    # still an estimate of held-out error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if n_jobs == 1:
            results = [task[0](*task[1], **task[2]) for task in tasks]
        else:
            # threads share the workspace and the data; one BLAS thread each, so that
            # n_jobs workers use n_jobs cores instead of oversubscribing them
            with threadpool_limits(limits=1):
                done = Parallel(n_jobs=n_jobs, prefer="threads", batch_size=1)(
                    tasks[i] for i in order
                )
            results = [None] * len(tasks)
            for i, result in zip(order, done, strict=True):
                results[i] = result
    fits = dict(zip(pairs, results[: len(pairs)], strict=True))
    errors = np.array(results[len(pairs) :], dtype=float).reshape(len(ks), -1)

    def per_fit(attr: str, dtype: Any) -> xr.DataArray:
        values = [[getattr(fits[(k, s)], attr) for s in seeds] for k in ks]
        return xr.DataArray(np.asarray(values, dtype=dtype), dims=("n_components", "random_state"))

    ds = xr.Dataset(
        {
            "reconstruction_err": per_fit("reconstruction_err", float),
            "explained_variance": per_fit("explained_variance", float),
            "n_iter": per_fit("n_iter", int),
            "converged": per_fit("converged", bool),
            "heldout_error": ("n_components", errors.mean(axis=1)),
            "heldout_error_sd": ("n_components", errors.std(axis=1)),
        },
        coords={"n_components": ks, "random_state": seeds},
    )
    maps = {key: {"maps": r.maps, "timecourses": r.timecourses} for key, r in fits.items()}
    tables = [stability(maps)]
    truth = workspace.ground_truth()
    if truth is not None:
        tables.append(recovery_by_k(maps, truth, other_truths))
    for table in tables:
        table = table.set_index("n_components").drop(columns="n_pairs", errors="ignore")
        for name in table.columns:
            ds[name] = ("n_components", table[name].reindex(ks).to_numpy(dtype=float))
    choice = recommend_k(
        ds[["heldout_error", "stability"]].to_dataframe().reset_index(),
        tolerance=tolerance,
        stability_threshold=stability_threshold,
    )
    ds.attrs = {
        "recommended_k": choice["n_components"],
        "candidates": choice["candidates"],
        "stable": choice["stable"],
        "reason": choice["reason"],
        "init": init,
        "max_iter": settings.get("max_iter", getattr(workspace.config, "max_iter", None)),
        "tol": settings["tol"],
        "bicv": f"{bicv_repeats} split(s), blocks of {block_frames} frames and {block_mm} mm, "
        f"max_iter={bicv_max_iter}",
        "tolerance": tolerance,
        "stability_threshold": stability_threshold,
        "has_ground_truth": int(truth is not None),
    }
    ds["heldout_error"].attrs["long_name"] = "held-out error (bi-cross-validation)"
    ds["stability"].attrs["long_name"] = "mean matched map correlation across seeds"
    return ds


# ------------------------------------------------------------------------ stability
def stability(fits: dict[tuple[int, int], dict[str, xr.DataArray]]) -> pd.DataFrame:
    """Mean matched map correlation between every pair of seeds, for each ``k``.

    Meaningful for fits from random restarts (``init="random"``, as
    :func:`select_components` runs them): with a deterministic initialisation such as
    ``nndsvda`` every seed gives the same fit and the stability is ~1 for every ``k``.

    Returns a table with columns ``n_components``, ``stability`` (mean over seed pairs of
    the mean matched correlation), ``stability_min`` (worst matched component over all
    pairs) and ``n_pairs``.
    """
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
    with warnings.catch_warnings():
        # An estimate of held-out error: an unconverged inner solve is not worth a warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _bicv_error(data, n_components, random_state, max_iter, block_frames, block_mm)


def _bicv_error(
    data: xr.DataArray,
    n_components: int,
    random_state: int,
    max_iter: int,
    block_frames: int,
    block_mm: float,
) -> float:
    """:func:`bicv_error` without its warning filter (the caller sets it, once per thread
    pool: ``warnings.catch_warnings`` is not thread-safe)."""
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
    W_D, H_D, _ = non_negative_factorization(D, init="nndsvda", random_state=random_state, **common)
    # NNLS with the other factor fixed: B ~ W_A H_D and C^T ~ H_A^T W_D^T.
    W_A, _, _ = non_negative_factorization(B, H=H_D, update_H=False, init="custom", **common)
    H_At, _, _ = non_negative_factorization(C.T, H=W_D.T, update_H=False, init="custom", **common)
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
    fits: dict[tuple[int, int], dict[str, xr.DataArray]],
    truth: xr.Dataset,
    other_truths: Sequence[xr.Dataset] = (),
) -> pd.DataFrame:
    """Recovery of the planted sources for each ``k`` (averaged over seeds).

    For every fit, :func:`fusi_nmf.metrics.source_recovery` matches sources to components;
    ``timecourse_r`` and ``map_r`` are the mean over sources of the matched |r| (a source
    left without a component, when ``k`` is below the number of sources, counts as 0) and
    ``timecourse_r_min`` the worst source's time-course |r|. Beside them, from
    :func:`fusi_nmf.metrics.recovery_with_chance` (one-to-one matching on each score
    separately): ``timecourse_chance`` and ``map_chance`` (circularly shifted truth;
    ``other_truths``' sources, NaN without them) and ``timecourse_corrected``,
    ``map_corrected`` (``(r - chance) / (1 - chance)`` of that matching: 0 at chance).
    """
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
                **{key: value for key, value in recovery_with_chance(
                    fit["timecourses"], fit["maps"], truth, other_truths=list(other_truths)
                ).items() if key.endswith(("chance", "corrected"))},
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        raise ValueError("recovery_by_k got no fits")
    columns = ["timecourse_r", "map_r", "timecourse_r_min", "timecourse_chance", "map_chance",
               "timecourse_corrected", "map_corrected"]
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
