"""Comparing decompositions: component matching and planted-source recovery.

* :func:`match_components` pairs the components of two decompositions one to
  one (Hungarian algorithm on the Pearson correlation of the flattened
  components), e.g. two runs, two modes, or two seeds.
* :func:`source_recovery` scores estimated components against the ground truth
  of a simulated recording (:func:`fusi_nmf.simulate.simulate_recording`).
* :func:`compare_decompositions` scores NMF, PCA and FastICA on the same
  standardized recording against that ground truth.
* :func:`align_to_truth` and :func:`motion_error_table` compare estimated motion with
  a simulation's true motion.
* :func:`recovery_with_chance` puts a chance level beside a recovery score:
  the same estimated components scored against ground truth they do not belong
  to (circularly time-shifted truth time courses, and/or the sources of other
  simulated recordings), and the chance-corrected score
  ``(score - chance) / (1 - chance)`` (0 = no better than chance, 1 = perfect).

Why a chance level: a matched best-|r| is never 0 for unrelated signals (the
Hungarian matching picks the best of many pairs), and smooth, blob-like maps
correlate with each other whatever their origin, so a raw map |r| of 0.7 can
be chance. Only the distance above chance says something.

Correlations are Pearson correlations computed in float64 over every element
of the flattened arrays; a constant array has correlation 0 with anything
(never NaN).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib.resources import files

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment

from fusi_nmf._xr import motion_parameters
from fusi_nmf.registration.geometry import angles_from_rotation, rot_xyz

__all__ = [
    "VALIDATION_COLUMNS",
    "align_to_truth",
    "chance_corrected",
    "compare_decompositions",
    "correlation_matrix",
    "match_components",
    "motion_error_table",
    "recovery_with_chance",
    "signed_maps",
    "source_recovery",
    "validation_table",
]


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between the rows of ``a`` and the rows of ``b``.

    Parameters
    ----------
    a : numpy.ndarray, shape (n_a, p)
    b : numpy.ndarray, shape (n_b, p)

    Returns
    -------
    numpy.ndarray, shape (n_a, n_b)
        ``r[i, j] = corr(a[i], b[j])``; rows with zero variance give 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be 2-D with the same number of columns; got {a.shape} and {b.shape}."
        )
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.outer(na, nb)
    num = a @ b.T
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0)


def _flatten(da: xr.DataArray, dim: str, other_dims: tuple[str, ...]) -> np.ndarray:
    return np.asarray(da.transpose(dim, *other_dims).values).reshape(da.sizes[dim], -1)


def _labels(da: xr.DataArray, dim: str) -> np.ndarray:
    return da[dim].values if dim in da.coords else np.arange(da.sizes[dim])


def match_components(
    a: xr.DataArray,
    b: xr.DataArray,
    dim: str = "component",
    dim_b: str | None = None,
    absolute: bool = True,
) -> pd.DataFrame:
    """Match the components of ``a`` to those of ``b`` one to one.

    Each component (a slice along ``dim``) is flattened over all other dims, the
    Pearson correlation ``r[i, j]`` between component ``i`` of ``a`` and
    component ``j`` of ``b`` is computed, and the assignment maximising the sum
    of ``|r|`` (``absolute=True``) or of ``r`` is found with the Hungarian
    algorithm (:func:`scipy.optimize.linear_sum_assignment`). With unequal
    numbers of components, ``min(n_a, n_b)`` pairs are returned.

    Parameters
    ----------
    a, b : xarray.DataArray
        Maps ``(component, z, y, x)`` (any extra dims, e.g. ``sign``) or time
        courses ``(time, component)``. Apart from the component dim both must
        have the same dims and sizes (values are compared position by position,
        in ``a``'s dim order).
    dim : str, default="component"
        The component dim of ``a`` (and of ``b`` unless ``dim_b`` is given).
    dim_b : str, optional
        The component dim of ``b`` (e.g. ``"source"``).
    absolute : bool, default=True
        Match on ``|r|`` (sign-blind) instead of ``r``.

    Returns
    -------
    pandas.DataFrame
        One row per pair, sorted by the ``a`` component: columns ``a`` and ``b``
        (coordinate labels of the paired components), ``correlation`` (signed
        Pearson r of the pair) and ``abs_correlation`` (its absolute value).

    Raises
    ------
    ValueError
        A component dim is missing or the other dims/sizes differ.
    """
    dim_b = dim if dim_b is None else dim_b
    for name, da, d in (("a", a, dim), ("b", b, dim_b)):
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"{name} must be an xarray.DataArray, got {type(da).__name__}.")
        if d not in da.dims:
            raise ValueError(f"{name} has dims {da.dims} but no {d!r} dim to match along.")
    other = tuple(d for d in a.dims if d != dim)
    other_b = tuple(d for d in b.dims if d != dim_b)
    if set(other) != set(other_b) or any(a.sizes[d] != b.sizes[d] for d in other):
        raise ValueError(
            f"a and b must have the same non-component dims and sizes; got "
            f"{dict((d, a.sizes[d]) for d in other)} and {dict((d, b.sizes[d]) for d in other_b)}."
        )
    r = correlation_matrix(_flatten(a, dim, other), _flatten(b, dim_b, other))
    rows, cols = linear_sum_assignment(np.abs(r) if absolute else r, maximize=True)
    la, lb = _labels(a, dim), _labels(b, dim_b)
    return pd.DataFrame(
        {
            "a": la[rows],
            "b": lb[cols],
            "correlation": r[rows, cols],
            "abs_correlation": np.abs(r[rows, cols]),
        }
    )


def signed_maps(maps: xr.DataArray) -> xr.DataArray:
    """``pos - neg`` of maps with a ``sign`` dim (the maps themselves without one).

    A component that lowers a voxel's signal loads on its ``neg`` channel, so the signed
    map is negative there: the form to compare with a true (signed) source map. The
    recovery scores, the book's readings and the component-match figure all use it.
    """
    if "sign" not in maps.dims:
        return maps
    signs = [str(s) for s in maps["sign"].values] if "sign" in maps.coords else []
    if set(signs) != {"pos", "neg"}:
        raise ValueError(
            f"maps have a 'sign' dim with labels {signs}; expected ['pos', 'neg'] "
            "as made by fusi_nmf.signal.split_sign."
        )
    return maps.sel(sign="pos") - maps.sel(sign="neg")


def source_recovery(
    timecourses: xr.DataArray,
    maps: xr.DataArray,
    truth: xr.Dataset,
    match_on: str = "both",
) -> pd.DataFrame:
    """Score estimated components against the planted sources of a simulation.

    What is computed:

    1. Signed maps: ``maps.sel(sign="pos") - maps.sel(sign="neg")`` when
       ``maps`` has a ``sign`` dim (a source below baseline is carried by the
       ``neg`` channel and so has a negative signed map), else ``maps``.
    2. ``r_tc[c, s]``: Pearson correlation over time between component time
       course ``c`` and ``truth.source_timecourses`` of source ``s``
       (frames compared by position; the lengths must agree).
    3. ``r_map[c, s]``: Pearson correlation over all voxels between signed map
       ``c`` and ``truth.source_maps`` of source ``s``.
    4. One-to-one matching (Hungarian algorithm) of sources to components that
       maximises the summed score ``(|r_tc| + |r_map|) / 2``
       (``match_on="both"``), ``|r_tc|`` (``"timecourse"``) or ``|r_map|``
       (``"map"``).

    Parameters
    ----------
    timecourses : xarray.DataArray
        ``(time, component)`` estimated time courses.
    maps : xarray.DataArray
        ``(component, [sign,] z, y, x)`` estimated maps.
    truth : xarray.Dataset
        Ground truth with ``source_timecourses`` ``(time, source)``,
        ``source_maps`` ``(source, z, y, x)`` and, optionally, ``source_sign``
        ``(source)`` (+1 above baseline, -1 below).
    match_on : {"both", "timecourse", "map"}, default="both"
        Score used for the matching.

    Returns
    -------
    pandas.DataFrame
        One row per source (index ``source``): ``component`` (matched
        component label, -1 when there are fewer components than sources),
        ``timecourse_r`` and ``map_r`` (``|r_tc|`` and ``|r_map|`` of the matched
        pair, NaN if unmatched), ``timecourse_r_signed`` and ``map_r_signed``
        (the same, signed), ``best_timecourse_r`` and ``best_map_r`` (the best
        ``|r|`` over all components, matched or not), ``source_sign`` (copied
        from the truth, NaN without it) and ``sign_consistent``:
        ``timecourse_r_signed * map_r_signed > 0``, i.e. the component's signed
        contribution ``timecourse * signed map`` varies like the source's
        contribution ``source_timecourse * source_map`` (the truth time courses
        are signed fractional changes, as :func:`simulate_recording` makes
        them; for a decrease the component sits in the ``neg`` channel with a
        time course anti-correlated to the signed truth). None if unmatched.
    """
    if match_on not in ("both", "timecourse", "map"):
        raise ValueError(f"match_on must be 'both', 'timecourse' or 'map', got {match_on!r}.")
    for var in ("source_timecourses", "source_maps"):
        if var not in truth:
            raise ValueError(
                f"truth has no {var!r} variable; pass the Dataset of "
                "fusi_nmf.simulate.simulate_recording."
            )
    true_tc = truth["source_timecourses"]
    true_maps = truth["source_maps"]
    for name, da, dims in (
        ("timecourses", timecourses, ("time", "component")),
        ("maps", maps, ("component",)),
    ):
        missing = [d for d in dims if d not in da.dims]
        if missing:
            raise ValueError(f"{name} has dims {da.dims}; missing {missing}.")
    if timecourses.sizes["time"] != true_tc.sizes["time"]:
        raise ValueError(
            f"timecourses has {timecourses.sizes['time']} frames but the truth has "
            f"{true_tc.sizes['time']}; compare the same recording."
        )
    signed = signed_maps(maps)
    space = tuple(d for d in true_maps.dims if d != "source")
    if set(d for d in signed.dims if d != "component") != set(space):
        raise ValueError(
            f"maps have spatial dims {tuple(d for d in signed.dims if d != 'component')} "
            f"but the truth maps have {space}."
        )
    r_tc = correlation_matrix(
        timecourses.transpose("component", "time").values,
        true_tc.transpose("source", "time").values,
    )
    r_map = correlation_matrix(
        _flatten(signed, "component", space), _flatten(true_maps, "source", space)
    )
    score = {
        "both": (np.abs(r_tc) + np.abs(r_map)) / 2,
        "timecourse": np.abs(r_tc),
        "map": np.abs(r_map),
    }[match_on]
    comp_idx, src_idx = linear_sum_assignment(score, maximize=True)
    n_src = r_tc.shape[1]
    matched = np.full(n_src, -1)
    matched[src_idx] = comp_idx
    comp_labels = _labels(timecourses, "component")
    src_labels = _labels(true_tc, "source")

    rows = []
    signs = truth["source_sign"].values if "source_sign" in truth else None
    for s in range(n_src):
        c = matched[s]
        tc_r = float(r_tc[c, s]) if c >= 0 else np.nan
        map_r = float(r_map[c, s]) if c >= 0 else np.nan
        sgn = float(signs[s]) if signs is not None else np.nan
        consistent = bool(tc_r * map_r > 0) if c >= 0 else None
        rows.append(
            {
                "source": src_labels[s],
                "component": comp_labels[c] if c >= 0 else -1,
                "timecourse_r": abs(tc_r),
                "map_r": abs(map_r),
                "timecourse_r_signed": tc_r,
                "map_r_signed": map_r,
                "best_timecourse_r": float(np.abs(r_tc[:, s]).max()),
                "best_map_r": float(np.abs(r_map[:, s]).max()),
                "source_sign": sgn,
                "sign_consistent": consistent,
            }
        )
    return pd.DataFrame(rows).set_index("source")


def _component_maps(values: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    """``(k, n_voxels)`` rows as maps ``(component, <spatial dims of like>)``."""
    space = tuple(d for d in like.dims if d != "time")
    coords = {d: like[d] for d in space if d in like.coords}
    coords["component"] = np.arange(values.shape[0])
    return xr.DataArray(
        values.reshape(values.shape[0], *(like.sizes[d] for d in space)),
        dims=("component", *space),
        coords=coords,
    )


def _component_timecourses(values: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("time", "component"),
        coords={"time": like["time"].values, "component": np.arange(values.shape[1])},
    )


def compare_decompositions(
    standardized: xr.DataArray,
    truth: xr.Dataset,
    n_components: int,
    random_state: int = 0,
    *,
    max_iter: int = 500,
) -> pd.DataFrame:
    """Recovery of the planted sources by NMF, PCA and FastICA on the same input.

    All three start from the same standardized recording ``(time, z, y, x)`` (e.g.
    :meth:`fusi_nmf.pipeline.Workspace.standardized`), reshaped to a matrix
    ``X`` (time, voxels), with the same number of components:

    * **NMF**: temporal-mode :class:`fusi_nmf.decomposition.NMF` on the pos/neg split of
      ``X`` (:func:`fusi_nmf.signal.split_sign`); time courses are its ``W``
      (time, component), maps its ``pos - neg`` loadings.
    * **PCA**: :class:`sklearn.decomposition.PCA` on ``X`` (frames are samples); time
      courses are the scores ``fit_transform(X)`` (time, component), maps the rows of
      ``components_``.
    * **FastICA**: :class:`sklearn.decomposition.FastICA` (``whiten="unit-variance"``,
      frames are samples, i.e. temporally independent components); time courses are the
      estimated sources ``fit_transform(X)`` (time, component), maps the columns of
      ``mixing_``.

    Each method is scored with :func:`source_recovery` with ``match_on="timecourse"``:
    sources and components are paired one to one (Hungarian algorithm) on the absolute
    Pearson correlation of their time courses, and the value reported is that ``|r|``.
    The absolute value makes the score blind to the arbitrary sign of PCA and ICA
    components (and to NMF putting a decrease on its ``neg`` channel). A source left
    without a component (``n_components`` below the number of sources) scores 0.

    Parameters
    ----------
    standardized : xarray.DataArray
        z-scored recording with a ``time`` dim (finite values).
    truth : xarray.Dataset
        Ground truth of the simulated recording (``source_timecourses``,
        ``source_maps``), e.g. :meth:`Workspace.ground_truth`.
    n_components : int
        Components of every method.
    random_state : int
        Seed of NMF's and FastICA's initialisation and PCA's randomized solver.
    max_iter : int
        Iteration limit of NMF and FastICA.

    Returns
    -------
    pandas.DataFrame
        One row per planted source (index ``source``), float columns ``"NMF"``, ``"PCA"``
        and ``"FastICA"``: the matched time-course ``|r|`` in [0, 1]. ``attrs`` record
        the matched component of each method (``"components"``) and whether the
        iterative methods converged (``"converged"``).
    """
    import warnings

    from sklearn.decomposition import PCA, FastICA
    from sklearn.exceptions import ConvergenceWarning

    from fusi_nmf.decomposition import NMF
    from fusi_nmf.signal import split_sign

    if not isinstance(standardized, xr.DataArray) or "time" not in standardized.dims:
        raise TypeError(
            "standardized must be an xarray.DataArray with a 'time' dim "
            "(e.g. Workspace.standardized()), got "
            f"{type(standardized).__name__} {getattr(standardized, 'dims', '')}."
        )
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise TypeError(f"n_components must be an integer, got {n_components!r}.")
    space = tuple(d for d in standardized.dims if d != "time")
    X = np.asarray(standardized.transpose("time", *space).values, dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    if not np.isfinite(X).all():
        raise ValueError(
            "standardized has NaN or infinite values; standardize the recording first."
        )
    if not 1 <= n_components <= min(X.shape):
        raise ValueError(
            f"n_components={n_components} must be between 1 and {min(X.shape)} "
            f"(frames x voxels = {X.shape})."
        )

    fits: dict[str, tuple[xr.DataArray, xr.DataArray]] = {}
    converged: dict[str, bool] = {}
    nmf = NMF(n_components=n_components, mode="temporal", max_iter=max_iter,
              random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tc = nmf.fit_transform(split_sign(standardized))
    fits["NMF"] = (tc, nmf.maps_)
    converged["NMF"] = bool(nmf.converged_)

    pca = PCA(n_components=n_components, random_state=random_state)
    scores = pca.fit_transform(X)
    fits["PCA"] = (
        _component_timecourses(scores, standardized),
        _component_maps(pca.components_, standardized),
    )

    ica = FastICA(n_components=n_components, whiten="unit-variance", max_iter=max_iter,
                  random_state=random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        sources = ica.fit_transform(X)
    converged["FastICA"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    fits["FastICA"] = (
        _component_timecourses(sources, standardized),
        _component_maps(ica.mixing_.T, standardized),
    )

    columns, matched = {}, {}
    for method, (timecourses, maps) in fits.items():
        table = source_recovery(timecourses, maps, truth, match_on="timecourse")
        columns[method] = table["timecourse_r"].fillna(0.0).astype(float)
        matched[method] = [int(c) for c in table["component"]]
    out = pd.DataFrame(columns)
    out.index.name = "source"
    out.attrs = {"components": matched, "converged": converged,
                 "score": "matched time-course |r|"}
    return out


def chance_corrected(score: float, chance: float) -> float:
    """``(score - chance) / (1 - chance)``: 0 at chance level, 1 for a perfect score.

    Parameters
    ----------
    score, chance : float
        A recovery score in [0, 1] and the chance level of the same score.

    Returns
    -------
    float
        The chance-corrected score (negative when below chance); NaN when
        ``chance >= 1`` (no room above chance: the score says nothing).
    """
    score, chance = float(score), float(chance)
    if not chance < 1.0:
        return float("nan")
    return (score - chance) / (1.0 - chance)


def _matched_mean(r: np.ndarray) -> float:
    """Mean |r| of the one-to-one (Hungarian) matching of rows (estimates) to columns."""
    a = np.abs(r)
    rows, cols = linear_sum_assignment(a, maximize=True)
    out = np.zeros(a.shape[1])
    out[cols] = a[rows, cols]
    return float(out.mean())  # a source left without a component counts 0


def _circular_shifts(n: int, n_shifts: int, rng: np.random.Generator) -> np.ndarray:
    """Shifts spread over [n/10, 9n/10]: far enough that the truth no longer lines up."""
    lo, hi = max(1, n // 10), max(2, n - n // 10)
    if hi <= lo:
        raise ValueError(f"{n} frames are too few for a circular-shift chance level.")
    return rng.integers(lo, hi, size=n_shifts)


def recovery_with_chance(
    timecourses: xr.DataArray,
    maps: xr.DataArray,
    truth: xr.Dataset,
    *,
    other_truths: tuple[xr.Dataset, ...] | list[xr.Dataset] = (),
    n_shifts: int = 20,
    random_state: int = 0,
) -> dict[str, float]:
    """Recovery scores with their chance levels, matched one to one.

    Time courses and maps are each matched to the planted sources one to one
    by the Hungarian algorithm on ``|r|`` (each on its own score, so a
    component that fits a source's map but not its time course is not forced
    on the time-course score), and the mean matched ``|r|`` over sources is
    the score (a source without a component counts 0).

    Chance levels are the same scores computed against ground truth the
    estimates do not belong to:

    * ``timecourse_chance``: the truth time courses circularly shifted in time
      (``n_shifts`` shifts drawn uniformly between 10 % and 90 % of the
      length, all sources shifted together so their mutual structure is kept),
      averaged over shifts; when ``other_truths`` are given, their time courses
      (same length needed) are averaged in too.
    * ``map_chance``: the maps scored against the source maps of
      ``other_truths`` (other simulated recordings of the same size: other
      sources with the same smoothness and the same brain), averaged; NaN when
      none are given (a spatial shift would move sources out of the brain).

    Parameters
    ----------
    timecourses : xarray.DataArray
        ``(time, component)`` estimates.
    maps : xarray.DataArray
        ``(component, [sign,] z, y, x)`` estimates (``pos - neg`` is scored).
    truth : xarray.Dataset
        The ground truth they belong to (``source_timecourses``, ``source_maps``).
    other_truths : sequence of xarray.Dataset
        Ground truths of other recordings (e.g. other simulator seeds).
    n_shifts : int, default=20
        Circular shifts for the time-course chance level.
    random_state : int, default=0
        Seed of the shifts.

    Returns
    -------
    dict
        ``timecourse_r``, ``timecourse_chance``, ``timecourse_corrected``,
        ``map_r``, ``map_chance``, ``map_corrected`` (floats; corrected =
        :func:`chance_corrected`).
    """
    for var in ("source_timecourses", "source_maps"):
        if var not in truth:
            raise ValueError(f"truth has no {var!r} variable; pass simulate_recording's Dataset.")
    if "time" not in timecourses.dims or "component" not in timecourses.dims:
        raise ValueError(f"timecourses must have dims (time, component), got {timecourses.dims}.")
    if isinstance(n_shifts, bool) or not isinstance(n_shifts, int | np.integer) or n_shifts < 1:
        raise ValueError(f"n_shifts must be a positive integer, got {n_shifts!r}.")
    est_tc = np.asarray(timecourses.transpose("component", "time").values, dtype=np.float64)
    true_tc = np.asarray(truth["source_timecourses"].transpose("source", "time").values)
    if est_tc.shape[1] != true_tc.shape[1]:
        raise ValueError(
            f"timecourses has {est_tc.shape[1]} frames but the truth has {true_tc.shape[1]}."
        )
    signed = signed_maps(maps)
    space = tuple(d for d in truth["source_maps"].dims if d != "source")
    est_maps = _flatten(signed, "component", space)

    def map_score(t: xr.Dataset) -> float:
        return _matched_mean(correlation_matrix(est_maps, _flatten(t["source_maps"], "source",
                                                                   space)))

    rng = np.random.default_rng(random_state)
    tc_r = _matched_mean(correlation_matrix(est_tc, true_tc))
    chance_tc = [
        _matched_mean(correlation_matrix(est_tc, np.roll(true_tc, int(s), axis=1)))
        for s in _circular_shifts(true_tc.shape[1], n_shifts, rng)
    ]
    for other in other_truths:
        other_tc = np.asarray(other["source_timecourses"].transpose("source", "time").values)
        if other_tc.shape[1] == true_tc.shape[1]:
            chance_tc.append(_matched_mean(correlation_matrix(est_tc, other_tc)))
    map_r = map_score(truth)
    chance_map = [map_score(o) for o in other_truths]
    tc_chance = float(np.mean(chance_tc))
    map_chance = float(np.mean(chance_map)) if chance_map else float("nan")
    return {
        "timecourse_r": tc_r,
        "timecourse_chance": tc_chance,
        "timecourse_corrected": chance_corrected(tc_r, tc_chance),
        "map_r": map_r,
        "map_chance": map_chance,
        "map_corrected": chance_corrected(map_r, map_chance),
    }


#: What the columns of :func:`validation_table` mean (``{mode}`` is ``temporal`` or
#: ``spatial``: the NMF mode; the SNR sweep has a ``mode`` column instead of the prefix).
VALIDATION_COLUMNS: dict[str, str] = {
    "condition": "cleaning table only: what ran between the raw recording and NMF (index)",
    "amplitude": "SNR sweep only: range of the sources' peak fractional power change",
    "noise_sd": "SNR sweep only: s.d. of the multiplicative per-frame noise (fraction)",
    "analysis": "SNR sweep only: 'reference' (the ConfUSIus example) or 'default' (this "
    "package's chain)",
    "mode": "SNR sweep only: NMF mode",
    "{mode}_timecourse_r": "mean over planted sources of the one-to-one (Hungarian) matched "
    "|r| between true and estimated time courses, averaged over seeds",
    "{mode}_timecourse_chance": "the same score for the same outputs against truth they do "
    "not belong to (circularly shifted truth; other seeds' sources)",
    "{mode}_timecourse_corrected": "(r - chance) / (1 - chance): 0 at chance, 1 perfect",
    "{mode}_timecourse_corrected_sd": "s.d. over seeds of the corrected time-course score",
    "{mode}_map_r": "as timecourse_r, for signed maps (pos - neg) against the true maps",
    "{mode}_map_chance": "map score against other seeds' source maps (smooth maps correlate "
    "by chance: this is far from 0)",
    "{mode}_map_corrected": "(map_r - map_chance) / (1 - map_chance)",
    "{mode}_*_ceiling": "the same score for the same analysis on the same recording "
    "simulated without motion or nuisances (same sources, same noise); NaN where not run",
    "censored_frames": "frames censored (interpolated) by the cleaning, mean over seeds",
}

_VALIDATION_FILES = {"cleaning": "cleaning_recovery.tsv", "snr_sweep": "snr_sweep.tsv"}


def validation_table(name: str = "cleaning") -> pd.DataFrame:
    """A shipped recovery measurement, with chance level and ceiling beside every score.

    Parameters
    ----------
    name : {"cleaning", "snr_sweep"}
        ``"cleaning"``: ``benchmarks/measure_cleaning.py`` on the full-size simulated
        recording (every real-data trait on), one row per condition (the original
        analysis, registration alone, each cleaning step alone, the default chain;
        ``--seeds 10 11 12 --out fusi_nmf/data/cleaning_recovery.tsv``, about 45 min, so
        it is shipped for the book instead of measured there).
        ``"snr_sweep"``: ``benchmarks/snr_sweep.py``, one row per source amplitude x
        noise level x analysis x NMF mode. The seeds are in ``attrs["note"]``; the
        cleaning defaults were chosen on other seeds (see
        :data:`fusi_nmf.signal.CLEAN_DEFAULTS`).

    Returns
    -------
    pandas.DataFrame
        Columns described in :data:`VALIDATION_COLUMNS`; ``attrs["note"]`` holds the
        settings line the benchmark wrote (preset, seeds, k, defaults).
    """
    if name not in _VALIDATION_FILES:
        raise ValueError(f"name must be one of {sorted(_VALIDATION_FILES)}, got {name!r}.")
    text = files("fusi_nmf").joinpath("data", _VALIDATION_FILES[name]).read_text()
    note, _, body = text.partition("\n")
    table = pd.read_csv(io.StringIO(body), sep="\t")
    if "condition" in table.columns:
        table = table.set_index("condition")
    table.attrs["note"] = note.lstrip("# ").strip()
    return table


# ------------------------------------------------------------- motion vs truth
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


def motion_error_table(
    estimated: xr.Dataset | xr.DataArray, truth: xr.Dataset | xr.DataArray
) -> pd.DataFrame:
    """Per-parameter error of estimated motion against the ground truth.

    The registration measures motion relative to its reference image while the
    simulator's truth is relative to the undisplaced brain; the two differ by the
    (constant) position of the reference. ``rmse_offset_removed`` subtracts that
    constant (the mean difference) before the root mean square, and is the number that
    says how well the motion *trace* was recovered. (:func:`align_to_truth` removes
    the offset by exact rigid composition instead, for rotations about an unknown
    reference position.)

    Parameters
    ----------
    estimated : xarray.Dataset or xarray.DataArray
        ``Workspace.motion()`` or its ``parameters`` ``(time, parameter)``.
    truth : xarray.Dataset or xarray.DataArray
        Ground truth ``(time, parameter)`` (``Workspace.ground_truth()["motion"]``).

    Returns
    -------
    pandas.DataFrame
        Index ``parameter``; columns ``units``, ``true_range`` (max - min of the truth),
        ``rmse``, ``rmse_offset_removed``, ``max_abs_error`` (offset removed) and ``r``
        (Pearson correlation over time).
    """
    est = motion_parameters(estimated, "estimated")
    ref = motion_parameters(truth, "truth")
    if est.sizes["time"] != ref.sizes["time"]:
        raise ValueError(
            f"estimated motion has {est.sizes['time']} frames but the truth has "
            f"{ref.sizes['time']}; compare the same recording."
        )
    true_names = {str(v) for v in ref["parameter"].values}
    rows = []
    for p in [str(v) for v in est["parameter"].values]:
        if p not in true_names:
            continue
        e = np.asarray(est.sel(parameter=p).values, dtype=float)
        t = np.asarray(ref.sel(parameter=p).values, dtype=float)
        diff = e - t
        centred = diff - diff.mean()
        r = float(np.corrcoef(e, t)[0, 1]) if e.std() > 0 and t.std() > 0 else 0.0
        rows.append({
            "parameter": p,
            "units": "deg" if p.startswith("r") else "mm",
            "true_range": float(t.max() - t.min()),
            "rmse": float(np.sqrt(np.mean(diff**2))),
            "rmse_offset_removed": float(np.sqrt(np.mean(centred**2))),
            "max_abs_error": float(np.abs(centred).max()),
            "r": r,
        })
    if not rows:
        raise ValueError("estimated and truth share no motion parameter names.")
    return pd.DataFrame(rows).set_index("parameter")
