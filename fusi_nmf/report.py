"""What the book's chapters compute beyond narrating and calling: tables and readings.

The chapters show the method's own calls (``standardize``, the pos/neg split, ``NMF``) and
the figures; this module holds the bookkeeping around them, so a notebook cell stays a
call and a figure's reading is computed from the results rather than typed in:

* :func:`component_readings` and :func:`describe_components`: which components follow a
  planted source or a known nuisance (simulated data), or how localised, motion-linked
  and smooth each one is (any data), with a chance level from circular time shifts;
* :func:`cleaning_view`: chapter 3's recovery table in reading order;
* :func:`~fusi_nmf.metrics.signed_maps` (re-exported), :func:`hoyer_sparsity`,
  :func:`factor_summary`,
  :func:`mode_agreement`: chapter 5's comparison of the two NMF modes;
* :func:`chance_truths`, :func:`recovery_table`: recovery scores with their chance
  levels (:func:`fusi_nmf.metrics.recovery_with_chance`) for chapters 4, 5 and 7;
* :func:`fit_alternatives`, :func:`recovery_by_method`, :func:`matched_to_truth`,
  :func:`truth_map_columns`: chapter 7's comparison with PCA and (temporal and spatial)
  ICA, and the recovered maps beside the true ones.

Components and sources are numbered from 1 in everything this module returns for display
(the arrays keep their 0-based ``component`` coordinate).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning

from fusi_nmf.metrics import (
    correlation_matrix,
    match_components,
    recovery_with_chance,
    signed_maps,
    source_recovery,
)
from fusi_nmf.simulate import simulate_sources

__all__ = [
    "NUISANCES",
    "RECOVERY_COLUMNS",
    "chance_truths",
    "cleaning_view",
    "component_readings",
    "describe_components",
    "describe_recovery",
    "describe_snr_sweep",
    "factor_summary",
    "fit_alternatives",
    "hoyer_sparsity",
    "matched_to_truth",
    "mode_agreement",
    "recovery_by_method",
    "recovery_table",
    "shift_chance_r",
    "signed_maps",
    "split_half_r",
    "truth_map_columns",
    "without_paths",
]

#: Ground-truth time courses of the simulator that are not sources: label -> variable.
NUISANCES = {
    "global fluctuation": "global_fluctuation",
    "power surges": "surge",
    "slow drift": "drift",
}


# --------------------------------------------------------------------------- helpers
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=float) - np.mean(a)
    b = np.asarray(b, dtype=float) - np.mean(b)
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else 0.0


def _ranges(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3 and 5"``."""
    numbers = sorted(int(n) for n in numbers)
    parts: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if start is not None and (n is None or n != prev + 1):
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def hoyer_sparsity(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Hoyer's sparsity ``(sqrt(n) - |x|_1 / |x|_2) / (sqrt(n) - 1)`` along ``axis``.

    0 for a constant vector, 1 for a vector with a single non-zero entry; invariant to
    scaling, so it compares factors whatever scale the factorisation gave them.
    """
    x = np.abs(np.asarray(values, dtype=float))
    n = x.shape[axis]
    l1 = x.sum(axis=axis)
    l2 = np.sqrt((x**2).sum(axis=axis))
    ratio = np.divide(l1, l2, out=np.full_like(l1, np.sqrt(n)), where=l2 > 0)
    return (np.sqrt(n) - ratio) / (np.sqrt(n) - 1)


def _flat_maps(maps: xr.DataArray) -> np.ndarray:
    """``(component, features)`` of maps, features in any fixed order."""
    other = [d for d in maps.dims if d != "component"]
    return np.asarray(maps.transpose("component", *other).values, dtype=float).reshape(
        maps.sizes["component"], -1
    )


def shift_chance_r(
    timecourses: np.ndarray,
    references: np.ndarray,
    *,
    n_shifts: int = 200,
    quantile: float = 0.95,
    seed: int = 0,
) -> float:
    """Chance level of the best ``|r|`` between a component and a set of reference courses.

    Each reference is circularly shifted in time by a random offset (at least a tenth of
    the recording away from 0), which keeps its autocorrelation but breaks any real
    relation; the best ``|r|`` of a component over all shifted references is collected
    for every component and shift, and its ``quantile`` returned. A real match should
    exceed it.

    Parameters
    ----------
    timecourses : ndarray, shape (n_time, n_components)
    references : ndarray, shape (n_time, n_references)
    n_shifts : int
        Random shifts per reference.
    quantile : float
        Quantile of the null distribution to report (0.95: 5 % false matches).
    seed : int
        Seed of the shifts.
    """
    tc = np.asarray(timecourses, dtype=float)
    ref = np.asarray(references, dtype=float)
    n = tc.shape[0]
    rng = np.random.default_rng(seed)
    lo = max(1, n // 10)
    best = []
    for _ in range(n_shifts):
        shifts = rng.integers(lo, n - lo, size=ref.shape[1])
        shifted = np.stack([np.roll(ref[:, j], s) for j, s in enumerate(shifts)], axis=1)
        r = np.abs(correlation_matrix(tc.T, shifted.T))
        best.extend(r.max(axis=1))
    return float(np.quantile(best, quantile))


def chance_truths(preset: str, seed: int, n: int = 2) -> list[xr.Dataset]:
    """Planted sources of ``n`` other simulated recordings, for chance levels.

    The sources of simulator seeds ``seed + 1 ... seed + n`` of the same ``preset``
    (same brain, same size, other sources): scoring a fit against them gives the chance
    levels of :func:`fusi_nmf.metrics.recovery_with_chance`. They come from
    :func:`fusi_nmf.simulate.simulate_sources` (identical to those recordings' ground
    truth, in milliseconds): a chance level needs other recordings' sources, never
    their data.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    return [simulate_sources(preset, seed + i) for i in range(1, n + 1)]


#: Columns of :func:`recovery_table`.
RECOVERY_COLUMNS = ("time course |r|", "time course chance", "time course corrected",
                    "map |r|", "map chance", "map corrected")


def recovery_table(
    fits: Mapping[str, tuple[xr.DataArray, xr.DataArray]],
    truth: xr.Dataset,
    other_truths: Sequence[xr.Dataset] = (),
) -> pd.DataFrame:
    """One row per fit: matched recovery of the planted sources beside its chance level.

    Each row is :func:`fusi_nmf.metrics.recovery_with_chance` of a ``(timecourses, maps)``
    pair: the mean one-to-one matched ``|r|`` over sources, its chance level (circularly
    shifted truth; ``other_truths``' sources, see :func:`chance_truths`) and the
    chance-corrected score ``(r - chance) / (1 - chance)`` (0 at chance, 1 perfect), for
    time courses and for signed maps. Columns: :data:`RECOVERY_COLUMNS`.
    """
    rows = {}
    for name, (tc, maps) in fits.items():
        s = recovery_with_chance(tc, maps, truth, other_truths=list(other_truths))
        rows[name] = [s["timecourse_r"], s["timecourse_chance"], s["timecourse_corrected"],
                      s["map_r"], s["map_chance"], s["map_corrected"]]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(RECOVERY_COLUMNS))


def describe_recovery(row: pd.Series, name: str = "") -> str:
    """One sentence reading a :func:`recovery_table` row, chance beside every score."""
    def part(what: str) -> str:
        r, chance, corr = (row[f"{what} {c}"] for c in ("|r|", "chance", "corrected"))
        if not np.isfinite(chance):
            return f"{what} |r| {r:.2f} (no chance level: give other truths)"
        return f"{what} |r| {r:.2f} against {chance:.2f} by chance ({corr:+.2f} chance-corrected)"
    return (f"{name}: " if name else "") + f"{part('time course')}; {part('map')}"


def describe_snr_sweep(table: pd.DataFrame, mode: str = "temporal", *,
                       metric: str = "timecourse", margin: float = 0.05) -> str:
    """Read the signal-to-noise sweep (:func:`fusi_nmf.metrics.validation_table`).

    Per (amplitude, noise) cell of ``mode``, the chance-corrected ``metric`` of the
    ``default`` chain and the ``reference`` analysis: a score below ``margin`` counts as
    at chance, and the default "beats" the reference where it is ``margin`` or more
    above it. Says where each holds, the largest gap, how far below its ceiling each
    analysis stays, and the seeds and preset the table was measured on (from its note).
    """
    value = f"{metric}_corrected"
    rows = table[table["mode"] == mode]
    if rows.empty:
        raise ValueError(f"no row has mode={mode!r} (modes: {sorted(set(table['mode']))}).")
    wide = rows.pivot_table(index=["amplitude", "noise_sd"], columns="analysis", values=value,
                            sort=False)
    ceiling = rows.pivot_table(index=["amplitude", "noise_sd"], columns="analysis",
                               values=f"{value}_ceiling", sort=False)
    gap = wide["default"] - wide["reference"]

    def cells(mask: pd.Series) -> str:
        by_amp: dict[str, list[str]] = {}
        for (a, n), ok in mask.items():
            if ok:
                by_amp.setdefault(str(a), []).append(f"{n:g}")
        if not by_amp:
            return "no cell of the sweep"
        return "; ".join(f"peaks {a} (noise s.d. {', '.join(n)})" for a, n in by_amp.items())

    both = (wide["default"] < margin) & (wide["reference"] < margin)
    worse = gap <= -margin
    best = gap.idxmax()
    note = table.attrs.get("note", "")
    seeds = re.search(r"seeds=\[([^\]]*)\]", note)
    preset = re.search(r"preset=(\w+)", note)
    where = (f" Measured on the {preset.group(1) if preset else '?'} preset, simulator seeds "
             f"{seeds.group(1) if seeds else '?'}.") if note else ""
    label = "time-course" if metric == "timecourse" else "map"
    return (
        f"{mode.capitalize()} NMF, chance-corrected {label} recovery (0 = chance; 'at chance' "
        f"= below {margin:g}, 'beats' = at least {margin:g} higher). The default chain beats "
        f"the reference analysis at {cells(gap >= margin)}. Both are at chance at "
        f"{cells(both)}. The default is worse than the reference at {cells(worse)}. "
        f"The largest gap is {gap.max():+.2f} ({best[0]} at noise {best[1]:g}: "
        f"{wide.loc[best, 'default']:.2f} vs {wide.loc[best, 'reference']:.2f}). The "
        f"reference analysis stays at {wide['reference'].min():.2f} to "
        f"{wide['reference'].max():.2f} while its ceiling (no motion, no nuisances) reaches "
        f"{ceiling['reference'].max():.2f}; the default's ceiling reaches "
        f"{ceiling['default'].max():.2f}: the gap to the ceiling is what motion and the "
        f"nuisances cost.{where}"
    )


# --------------------------------------------------------------------------- readings
def split_half_r(split: xr.DataArray, maps: xr.DataArray, **nmf_params: Any) -> np.ndarray:
    """Per component: how well its map comes back when each half of the recording is fit alone.

    Temporal NMF (:class:`fusi_nmf.decomposition.NMF` with ``nmf_params``, the settings
    of the full fit) is fit on the first and on the second half of the frames; each
    half's maps are matched one to one to the full fit's maps (signed ``pos - neg``,
    :func:`fusi_nmf.metrics.match_components`), and a component scores the smaller of its
    two matched correlations. Near 1: the component describes the whole recording; low:
    it depends on one stretch of noise.
    """
    from fusi_nmf.decomposition import NMF

    n = split.sizes["time"]
    full = signed_maps(maps)
    position = {c: i for i, c in enumerate(maps["component"].values)}
    score = np.ones(maps.sizes["component"])
    for half in (split.isel(time=slice(0, n // 2)), split.isel(time=slice(n // 2, None))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = NMF(**{"n_components": maps.sizes["component"], **nmf_params})
            model.fit_transform(half)
        pairs = match_components(full, signed_maps(model.maps_))
        r = np.zeros_like(score)
        for a, value in zip(pairs["a"], pairs["correlation"], strict=True):
            r[position[a]] = value
        score = np.minimum(score, r)
    return score


def component_readings(
    maps: xr.DataArray,
    timecourses: xr.DataArray,
    *,
    motion: xr.Dataset | None = None,
    truth: xr.Dataset | None = None,
    reproducibility: np.ndarray | None = None,
    other_truths: Sequence[xr.Dataset] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """One row per component with what a reader judges it by, numbered from 1.

    Columns (any data):

    * ``energy %``: share of ``||time course|| * ||map||`` over all components;
    * ``pos %``: share of the map's mass on the ``pos`` channel (100: a pure increase,
      0: a pure decrease);
    * ``extent %``: share of the voxels that holds half of the map's mass (small:
      localised; large: spread over the field of view, e.g. the whole vessel tree);
    * ``smoothness``: lag-1 autocorrelation of the time course (near 1: slow, like
      haemodynamics; near 0: frame-to-frame noise or isolated spikes);
    * ``FD r``: correlation of the time course with framewise displacement (large:
      motion-linked), when ``motion`` (from registration) is given;
    * ``split-half r``: the ``reproducibility`` given, e.g. :func:`split_half_r`.

    With ``truth`` (simulated data) also:

    * ``truth``: the ground-truth course it follows best, a planted source (``source
      N``, numbered from 1) or a nuisance of :data:`NUISANCES`, or ``"none"`` when the
      best ``|r|`` is below the chance level;
    * ``|r|``: that time-course ``|r|``; ``map |r|``: for a source, the ``|r|`` of the
      signed map with the true map.

    ``attrs["chance_r"]`` holds the chance level (:func:`shift_chance_r`, 95th
    percentile) used for ``truth``; with ``other_truths`` (:func:`chance_truths`),
    ``attrs["map_chance_r"]`` holds the map's: the 95th percentile over components of
    the best map ``|r|`` against the sources of those other recordings (smooth maps
    correlate by chance, so this is far from 0).
    """
    tc = np.asarray(timecourses.transpose("time", "component").values, dtype=float)
    flat = _flat_maps(maps)
    k = flat.shape[0]
    energy = np.linalg.norm(tc, axis=0) * np.linalg.norm(flat, axis=1)
    table = pd.DataFrame(index=pd.RangeIndex(1, k + 1, name="component"))
    table["energy %"] = 100 * energy / max(energy.sum(), 1e-300)
    if "sign" in maps.dims:
        pos = _flat_maps(maps.sel(sign="pos", drop=True)).sum(axis=1)
        neg = _flat_maps(maps.sel(sign="neg", drop=True)).sum(axis=1)
        table["pos %"] = 100 * pos / np.maximum(pos + neg, 1e-300)
        mass = np.abs(_flat_maps(maps.sum("sign")))
    else:
        mass = np.abs(flat)
    ordered = -np.sort(-mass, axis=1)
    cum = np.cumsum(ordered, axis=1) / np.maximum(ordered.sum(axis=1, keepdims=True), 1e-300)
    table["extent %"] = 100 * (np.argmax(cum >= 0.5, axis=1) + 1) / mass.shape[1]
    table["smoothness"] = [_pearson(tc[1:, c], tc[:-1, c]) for c in range(k)]
    if motion is not None and "framewise_displacement" in motion:
        fd = np.asarray(motion["framewise_displacement"].values, dtype=float)
        if fd.shape[0] == tc.shape[0]:
            table["FD r"] = [_pearson(tc[:, c], fd) for c in range(k)]
    if reproducibility is not None:
        table["split-half r"] = np.asarray(reproducibility, dtype=float)
    if truth is not None:
        labels, courses = [], []
        for s in range(truth.sizes["source"]):
            labels.append(f"source {s + 1}")
            courses.append(np.asarray(truth["source_timecourses"].isel(source=s).values))
        for label, var in NUISANCES.items():
            if var in truth and float(np.std(truth[var].values)) > 0:
                labels.append(label)
                courses.append(np.asarray(truth[var].values))
        ref = np.stack(courses, axis=1).astype(float)
        r = np.abs(correlation_matrix(tc.T, ref.T))
        chance = shift_chance_r(tc, ref, seed=seed)
        best = r.argmax(axis=1)
        signed = signed_maps(maps)
        true_maps = truth["source_maps"].transpose("source", *[d for d in signed.dims
                                                               if d != "component"])
        r_map = np.abs(correlation_matrix(_flat_maps(signed),
                                          np.asarray(true_maps.values).reshape(
                                              true_maps.sizes["source"], -1)))
        table["truth"] = [labels[b] if r[c, b] > chance else "none" for c, b in enumerate(best)]
        table["|r|"] = r[np.arange(k), best]
        table["map |r|"] = [
            r_map[c, b] if b < truth.sizes["source"] else np.nan for c, b in enumerate(best)
        ]
        table.attrs["chance_r"] = chance
        if other_truths:
            best_other = [
                np.abs(correlation_matrix(_flat_maps(signed), np.asarray(
                    o["source_maps"].transpose(*true_maps.dims).values).reshape(
                        o.sizes["source"], -1))).max(axis=1)
                for o in other_truths
            ]
            table.attrs["map_chance_r"] = float(np.quantile(np.concatenate(best_other), 0.95))
        table.attrs["n_sources"] = int(truth.sizes["source"])
    return table


def describe_components(table: pd.DataFrame) -> str:
    """A few sentences (Markdown) that read a :func:`component_readings` table.

    On simulated data it says which components follow the nuisances and which the
    planted sources (and which sources no component follows); without ground truth it
    names the most localised, the most widespread and the most motion-linked components.
    """
    lines: list[str] = []
    if "truth" in table:
        chance = table.attrs.get("chance_r", float("nan"))
        for label in [*NUISANCES, "none"]:
            rows = table[table["truth"] == label]
            if rows.empty:
                continue
            ext = rows["extent %"]
            comps = _ranges(rows.index)
            plural = "s" if len(rows) > 1 else ""
            if label == "none":
                lines.append(
                    f"* Component{plural} {comps} follow{'' if plural else 's'} no ground-truth "
                    f"course above chance (best |r| {rows['|r|'].max():.2f}): noise, or a mix."
                )
                continue
            channels = ""
            if "pos %" in rows:
                n_pos, n_neg = int((rows["pos %"] > 50).sum()), int((rows["pos %"] <= 50).sum())
                if n_pos and n_neg:
                    channels = (f" The split gives such a signed signal two kinds of "
                                f"component: {n_pos} on the `pos` channel (its rises), "
                                f"{n_neg} on the `neg` channel (its falls).")
            lines.append(
                f"* Component{plural} {comps} follow{'' if plural else 's'} the simulated "
                f"**{label}** (time-course |r| {rows['|r|'].min():.2f}-{rows['|r|'].max():.2f}); "
                f"half of {'their' if plural else 'its'} map mass lies in "
                f"{ext.min():.0f}-{ext.max():.0f} % of the voxels: "
                f"{'spread over the vessel tree' if ext.min() > 5 else 'fairly compact'}, "
                f"not one region.{channels}"
            )
        sources = table[table["truth"].str.startswith("source")]
        if not sources.empty:
            pairs = ", ".join(
                f"{c} -> {row['truth']} (|r| {row['|r|']:.2f}, map |r| {row['map |r|']:.2f})"
                for c, row in sources.iterrows()
            )
            lines.append(f"* Planted sources: {pairs}.")
            dup = sources["truth"].value_counts()
            dup = dup[dup > 1]
            if not dup.empty:
                lines.append(
                    "* Split sources (more than one component follows them): "
                    + ", ".join(f"{s} ({n} components)" for s, n in dup.items()) + "."
                )
        if "FD r" in table:
            worst = table["FD r"].abs().idxmax()
            lines.append(f"* Largest correlation of a time course with framewise displacement: "
                         f"{table.loc[worst, 'FD r']:.2f} (component {worst}).")
        if "split-half r" in table:
            weak = table.index[table["split-half r"] < 0.7]
            if len(weak):
                lines.append(
                    f"* Not reproducible in both halves of the recording (split-half r < 0.7): "
                    f"component(s) {_ranges(weak)}"
                    + " (" + ", ".join(f"{c}: {table.loc[c, 'truth']}" for c in weak) + ").")
        missing = sorted(set(range(1, 1 + int(table.attrs.get("n_sources", 0))))
                         - {int(t.split()[1]) for t in sources["truth"]})
        if missing:
            lines.append("* No component follows source(s) "
                         + ", ".join(str(m) for m in missing) + ".")
        lines.append(
            f"\nA match counts when its |r| beats {chance:.2f}, the 95th percentile of the "
            "best |r| after shifting the true courses by random circular lags (chance)."
        )
        if "map_chance_r" in table.attrs:
            lines.append(
                f"A map |r| means little below {table.attrs['map_chance_r']:.2f}: the 95th "
                "percentile of the best map |r| of these components against the sources "
                "of other simulated recordings (smooth maps correlate by chance)."
            )
        return "\n".join(lines)
    first = table["extent %"].idxmin()
    wide = table["extent %"].idxmax()
    lines.append(
        f"* Most localised: component {first} (half its mass in "
        f"{table.loc[first, 'extent %']:.1f} % of the voxels); most widespread: component "
        f"{wide} ({table.loc[wide, 'extent %']:.1f} %), typical of a global or vascular signal."
    )
    if "FD r" in table:
        worst = table["FD r"].abs().idxmax()
        r_fd = table.loc[worst, "FD r"]
        verdict = ("a spiky time course with a map along vessel edges would confirm residual "
                   "motion" if abs(r_fd) >= 0.2 else "below 0.2: no component follows the "
                   "residual motion")
        lines.append(
            f"* Most motion-linked: component {worst} (r = {r_fd:.2f} with framewise "
            f"displacement); {verdict}."
        )
    if "split-half r" in table:
        weak = table.index[table["split-half r"] < 0.7]
        lines.append(
            "* Reproducible in both halves of the recording (split-half r >= 0.7): "
            + ("all components" if weak.empty else
               f"all but component(s) {_ranges(weak)}, which depend on one stretch of data")
            + "."
        )
    slow = table["smoothness"].idxmax()
    lines.append(
        f"* Slowest time course: component {slow} (lag-1 autocorrelation "
        f"{table.loc[slow, 'smoothness']:.2f}); haemodynamic signals are slow, noise is not."
    )
    return "\n".join(lines)


def without_paths(data: xr.DataArray) -> xr.DataArray:
    """A shallow copy whose attrs name files by their name only (no local folders).

    For display: where a reader's copy of a file lives says nothing about the data.
    """
    out = data.copy(deep=False)
    attrs = {}
    for key, value in data.attrs.items():
        local = isinstance(value, str) and value.strip()[:1] in ("/", "~", "\\")
        if local and ("/" in value or "\\" in value):
            value = value.replace("\\", "/").rsplit("/", 1)[-1]
        attrs[key] = value
    out.attrs = attrs
    return out


# --------------------------------------------------------------------------- chapter 3
def cleaning_view(
    measured: pd.DataFrame, steps: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Chapter 3's cleaning table in reading order: recovery beside its chance level.

    Rows: the reference analysis (when measured), raw, registered, each of ``steps`` alone
    (default: every ``"+ ..."`` row) and the default chain(s); columns ``(mode, measure)``
    with the matched ``|r|`` and its chance level for time courses and maps, rounded to 2
    decimals. Also returns the row labels of the steps.
    """
    if steps is None:
        steps = [c for c in measured.index if str(c).startswith("+ ")]
    missing = [s for s in steps if s not in measured.index]
    if missing:
        raise ValueError(f"rows {missing} are not in the cleaning table "
                         f"({list(measured.index)}); pass steps= rows it has.")
    steps = list(steps)
    first = [r for r in measured.index if str(r).startswith("reference")]
    chains = [r for r in measured.index if str(r).startswith("default chain")]
    rows = [*first, "raw", "registered", *steps, *chains]
    labels = {"timecourse_r": "time course |r|", "timecourse_chance": "chance",
              "map_r": "map |r|", "map_chance": "chance "}
    columns = [(mode, key) for mode in ("temporal", "spatial") for key in labels
               if f"{mode}_{key}" in measured.columns]
    view = measured.loc[rows, [f"{m}_{k}" for m, k in columns]].copy()
    view.columns = pd.MultiIndex.from_tuples(
        [(f"{m} NMF", labels[k]) for m, k in columns], names=["mode", "measure"])
    return view.round(2), steps


# --------------------------------------------------------------------------- chapter 5
def factor_summary(
    timecourses: xr.DataArray,
    maps: xr.DataArray,
    *,
    explained_variance: float | None = None,
    truth: xr.Dataset | None = None,
    other_truths: Sequence[xr.Dataset] = (),
) -> dict[str, float]:
    """Scale, sparsity and (with ``truth``) source recovery of one fit, as one table row.

    ``map max`` and ``time course max`` show where the factorisation put the scale;
    ``map sparsity`` and ``time course sparsity`` are mean :func:`hoyer_sparsity`
    over components (scale-free); ``source map |r|`` / ``source time course |r|`` the
    mean over planted sources of the one-to-one matched ``|r|``, each beside its chance
    level (``... chance``; :func:`fusi_nmf.metrics.recovery_with_chance`, the map chance
    from ``other_truths``, NaN without them).
    """
    flat = _flat_maps(maps)
    tc = np.asarray(timecourses.transpose("component", "time").values, dtype=float)
    row = {
        "map max": float(flat.max()),
        "time course max": float(tc.max()),
        "map sparsity": float(np.mean(hoyer_sparsity(flat, axis=1))),
        "time course sparsity": float(np.mean(hoyer_sparsity(tc, axis=1))),
    }
    if explained_variance is not None:
        row["explained variance"] = float(explained_variance)
    if truth is not None:
        rec = recovery_with_chance(timecourses, maps, truth, other_truths=list(other_truths))
        row["source map |r|"] = rec["map_r"]
        row["source map chance"] = rec["map_chance"]
        row["source time course |r|"] = rec["timecourse_r"]
        row["source time course chance"] = rec["timecourse_chance"]
    return row


def mode_agreement(a_maps: xr.DataArray, a_tc: xr.DataArray, b_maps: xr.DataArray,
                   b_tc: xr.DataArray) -> pd.DataFrame:
    """Pair the components of two fits on their signed maps; numbered from 1.

    Columns ``a``, ``b`` (components, from 1), ``map r`` (signed maps) and ``time course
    r``; sorted by ``a``.
    """
    pairs = match_components(signed_maps(a_maps), signed_maps(b_maps))
    r_tc = correlation_matrix(a_tc.transpose("component", "time").values,
                              b_tc.transpose("component", "time").values)
    pos_a = {c: i for i, c in enumerate(a_maps["component"].values)}
    pos_b = {c: i for i, c in enumerate(b_maps["component"].values)}
    return pd.DataFrame({
        "a": [pos_a[c] + 1 for c in pairs["a"]],
        "b": [pos_b[c] + 1 for c in pairs["b"]],
        "map r": pairs["correlation"].to_numpy(),
        "time course r": [r_tc[pos_a[a], pos_b[b]] for a, b in zip(pairs["a"], pairs["b"],
                                                                    strict=True)],
    })


# --------------------------------------------------------------------------- chapter 7
def _maps_like(values: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    space = [d for d in like.dims if d != "time"]
    return xr.DataArray(
        values.reshape(values.shape[0], *(like.sizes[d] for d in space)),
        dims=("component", *space),
        coords={"component": np.arange(values.shape[0]),
                **{d: like[d] for d in space if d in like.coords}},
    )


def _courses_like(values: np.ndarray, like: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(values, dims=("time", "component"),
                        coords={"time": like["time"].values,
                                "component": np.arange(values.shape[1])})


def fit_alternatives(
    standardized: xr.DataArray,
    n_components: int,
    *,
    random_state: int = 0,
    max_iter: int = 500,
) -> dict[str, tuple[xr.DataArray, xr.DataArray]]:
    """PCA, temporal ICA and spatial ICA of the z-scored recording: ``{name: (tc, maps)}``.

    All work on ``X`` (time x voxels) with ``n_components`` components:

    * ``"PCA"``: scores ``(time, k)`` and loadings (the principal axes);
    * ``"temporal ICA"``: FastICA with frames as samples, so the *time courses* are
      independent (what :func:`fusi_nmf.metrics.compare_decompositions` runs);
    * ``"spatial ICA"``: FastICA on ``X.T`` (voxels as samples), so the *maps* are
      independent, the usual choice for fMRI and fUSI (McKeown et al. 1998); the time
      courses are the columns of the mixing matrix. ``metrics.compare_decompositions``
      has no spatial variant, hence this one.

    Signs and scales of PCA and ICA components are arbitrary; compare with ``|r|``.
    """
    space = [d for d in standardized.dims if d != "time"]
    X = np.asarray(standardized.transpose("time", *space).values, dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    out: dict[str, tuple[xr.DataArray, xr.DataArray]] = {}
    pca = PCA(n_components=n_components, random_state=random_state)
    out["PCA"] = (_courses_like(pca.fit_transform(X), standardized),
                  _maps_like(pca.components_, standardized))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ica = FastICA(n_components=n_components, whiten="unit-variance", max_iter=max_iter,
                      random_state=random_state)
        sources = ica.fit_transform(X)
        out["temporal ICA"] = (_courses_like(sources, standardized),
                               _maps_like(ica.mixing_.T, standardized))
        sica = FastICA(n_components=n_components, whiten="unit-variance", max_iter=max_iter,
                       random_state=random_state)
        smaps = sica.fit_transform(X.T)  # (voxels, k): independent maps
        out["spatial ICA"] = (_courses_like(sica.mixing_, standardized),
                              _maps_like(smaps.T, standardized))
    return out


def recovery_by_method(
    fits: Mapping[str, tuple[xr.DataArray, xr.DataArray]], truth: xr.Dataset
) -> pd.DataFrame:
    """Matched ``|r|`` of every planted source per method, time courses and maps.

    Sources and components are paired one to one per method on ``(|r_tc| + |r_map|) / 2``
    (:func:`fusi_nmf.metrics.source_recovery`, maps signed ``pos - neg`` for NMF).
    Rows: sources numbered from 1; columns ``(method, "time course |r|" | "map |r|")``;
    ``attrs["components"]``: the matched component (from 1) per method and source.
    """
    columns, matched = {}, {}
    for method, (tc, maps) in fits.items():
        rec = source_recovery(tc, maps, truth)
        columns[(method, "time course |r|")] = rec["timecourse_r"].fillna(0).to_numpy()
        columns[(method, "map |r|")] = rec["map_r"].fillna(0).to_numpy()
        pos = {c: i for i, c in enumerate(tc["component"].values)}
        matched[method] = [pos[c] + 1 if c in pos else 0 for c in rec["component"]]
    table = pd.DataFrame(columns, index=pd.RangeIndex(1, truth.sizes["source"] + 1,
                                                      name="source"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["method", "recovery"])
    table.attrs["components"] = matched
    return table


def matched_to_truth(
    maps: xr.DataArray, timecourses: xr.DataArray, truth: xr.Dataset
) -> dict[str, Any]:
    """The components matched to the planted sources, ready for ``plot_components``.

    Returns ``maps``, ``timecourses`` (the matched components, in source order),
    ``truth`` (the true time courses relabelled with the matched component and put on
    the estimate's time axis) and ``row_labels`` (``"source S / component C"``, both
    from 1).
    """
    rec = source_recovery(timecourses, maps, truth)
    rec = rec[rec["component"] >= 0]
    comps = list(rec["component"])
    pos = {c: i for i, c in enumerate(maps["component"].values)}
    true_tc = truth["source_timecourses"].sel(source=list(rec.index))
    true_tc = true_tc.rename(source="component").assign_coords(
        component=comps, time=timecourses["time"].values)
    return {
        "maps": maps.sel(component=comps),
        "timecourses": timecourses.sel(component=comps),
        "truth": true_tc,
        "row_labels": [f"source {s + 1} / component {pos[c] + 1}"
                       for s, c in zip(rec.index, comps, strict=True)],
    }


def truth_map_columns(
    truth: xr.Dataset,
    fits: Mapping[str, tuple[xr.DataArray, xr.DataArray]],
    recovery: pd.DataFrame,
) -> dict[str, xr.DataArray]:
    """Signed maps ``(source, ...)``: the true ones, then each method's matched component.

    Each recovered map is flipped to correlate positively with the true map (PCA and ICA
    signs are arbitrary) so the columns compare by eye; an unmatched source gets zeros.
    """
    true_maps = truth["source_maps"]
    columns = {"truth": true_maps}
    for method, (_, maps) in fits.items():
        signed = signed_maps(maps)
        rows = []
        for s, comp in enumerate(recovery.attrs["components"][method]):
            if comp == 0:
                rows.append(xr.zeros_like(true_maps.isel(source=s, drop=True)))
                continue
            m = signed.isel(component=comp - 1, drop=True).transpose(
                *true_maps.isel(source=s).dims)
            r = _pearson(m.values.ravel(), true_maps.isel(source=s).values.ravel())
            rows.append(m * (1.0 if r >= 0 else -1.0))
        columns[method] = xr.concat(rows, dim="source").assign_coords(
            source=true_maps["source"].values)
    return columns
