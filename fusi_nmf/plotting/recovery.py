"""Source recovery against ground truth: per-source bars, cleaning effect, SNR sweep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fusi_nmf.plotting._style import (
    TEXTCOLOR,
    _new_figure,
    _require_dataframe,
    _style_axes,
    _styled,
)

__all__ = ["plot_cleaning_effect", "plot_recovery", "plot_snr_sweep"]


@_styled
def plot_recovery(
    table: pd.DataFrame | pd.Series,
    *,
    value: str | Sequence[str] | None = None,
    ylabel: str = "correlation with ground truth",
    chance: float | None = None,
    title: str | None = None,
) -> Figure:
    """Bars of per-source recovery scores (e.g. correlation with the true source).

    Parameters
    ----------
    table : pandas.DataFrame or pandas.Series
        One row per source (the index names it). Every numeric column is one bar per
        source (grouped side by side, e.g. columns ``NMF``, ``PCA``, ``FastICA``), or
        only the column(s) named by ``value``.
    value : str or sequence of str, optional
        Column(s) to draw.
    ylabel : str
        y-axis label.
    chance : float, optional
        Chance level of the score, drawn as a dashed line labelled "chance" (a bar
        means something only above it).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(table, pd.Series):
        table = table.to_frame(name=str(table.name or "score"))
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame or Series, got {type(table).__name__}.")
    if value is not None:
        columns = [value] if isinstance(value, str) else list(value)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"columns {missing} not in table (columns: {list(table.columns)}).")
        frame = table[columns]
    else:
        frame = table.select_dtypes("number")
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError(
            f"table has no numeric values to draw (columns: {list(table.columns)}); "
            "pass value=<column>."
        )
    n_rows, n_cols = frame.shape
    fig = _new_figure(max(4.0, 0.55 * n_rows * max(1, n_cols) ** 0.5 + 2.5), 3.2)
    ax = fig.subplots()
    width = 0.8 / n_cols
    palette = ["#1a5276", "#c0392b", "#1e8449", "#7d3c98", "#b9770e"]
    positions = np.arange(n_rows, dtype=float)
    for k, column in enumerate(frame.columns):
        offset = (k - (n_cols - 1) / 2) * width
        ax.bar(positions + offset, np.asarray(frame[column], dtype=float), width=width,
               color=palette[k % len(palette)], label=str(column))
    ax.set_xticks(positions, [str(i) for i in frame.index], rotation=0 if n_rows < 12 else 90)
    ax.set_xlabel(str(frame.index.name or "source").replace("_", " "))
    ax.set_ylabel(ylabel)
    lo = min(0.0, float(np.nanmin(frame.to_numpy(dtype=float))))
    ax.set_ylim(lo, max(1.0, float(np.nanmax(frame.to_numpy(dtype=float)))) * 1.02)
    ax.axhline(0.0, color="#999999", linewidth=0.5)
    if chance is not None and np.isfinite(chance):
        ax.axhline(float(chance), color="#555555", linestyle="--", linewidth=1.0,
                   label=f"chance ({float(chance):.2f})")
    if n_cols > 1 or chance is not None:  # above the bars, never on them
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
                  ncols=min(n_cols + (chance is not None), 4))
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.5)
    _style_axes(ax)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


_MODE_STYLE = {
    "temporal": {"color": "#1a5276", "marker": "o"},
    "spatial": {"color": "#c0392b", "marker": "s"},
}
_METRIC_LABELS = {
    "timecourse_r": "time-course |r|",
    "map_r": "map |r|",
    "timecourse_corrected": "time-course |r| above chance",
    "map_corrected": "map |r| above chance",
}


@_styled
def plot_cleaning_effect(
    table: pd.DataFrame,
    *,
    rows: Sequence[str] | None = None,
    metrics: Sequence[str] = ("timecourse_r", "map_r"),
    modes: Sequence[str] = ("temporal", "spatial"),
    reference: str | None = "registered",
    title: str | None = None,
) -> Figure:
    """How source recovery moves with each preprocessing condition (a dot plot).

    One panel per metric (time-course and map correlation with the planted sources), one
    row per condition (top to bottom in table order), one dot per NMF mode. The
    ``reference`` condition's values are dotted vertical lines (one per mode, in its
    colour), so the distance of a dot from its line is what the condition gains or
    loses against the reference. Standard deviations (columns
    ``{mode}_{metric}_sd``, e.g. over simulator seeds) are drawn as error bars when the
    table has them.

    Parameters
    ----------
    table : pandas.DataFrame
        Indexed by condition, with columns ``{mode}_{metric}``, e.g.
        :func:`fusi_nmf.metrics.validation_table` ``("cleaning")``.
    rows : sequence of str, optional
        Conditions to draw, in this order (default: every row of ``table``).
    metrics : sequence of str
        Metric suffixes, one panel each.
    modes : sequence of str
        NMF modes, one dot per row each (colours: temporal blue circles, spatial red
        squares).
    reference : str or None
        Condition the others are compared with (``None``: no reference lines).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    TypeError
        ``table`` is not a DataFrame.
    ValueError
        A requested row, reference or ``{mode}_{metric}`` column is missing.
    """
    table = _require_dataframe(table)
    rows = list(table.index if rows is None else rows)
    missing_rows = [r for r in rows if r not in table.index]
    if reference is not None and reference not in table.index:
        missing_rows.append(reference)
    if missing_rows or not rows:
        raise ValueError(
            f"conditions {missing_rows or rows} not in the table index ({list(table.index)})."
        )
    columns = [f"{mode}_{metric}" for metric in metrics for mode in modes]
    missing = [c for c in columns if c not in table.columns]
    if missing or not columns:
        raise ValueError(
            f"columns {missing or columns} not in table (columns: {list(table.columns)}); "
            "expected one '{mode}_{metric}' column per mode and metric."
        )
    n_rows = len(rows)
    fig = _new_figure(3.0 * len(metrics) + 2.2, 0.32 * n_rows + 1.3)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(n_rows, dtype=float)
    offsets = (np.arange(len(modes)) - (len(modes) - 1) / 2) * 0.22
    values_all = table.loc[rows, columns].to_numpy(dtype=float)
    hi = max(1.0, float(np.nanmax(values_all)) * 1.05)
    for ax, metric in zip(axes, metrics, strict=True):
        for offset, mode in zip(offsets, modes, strict=True):
            style = _MODE_STYLE.get(mode, {"color": "#1e8449", "marker": "D"})
            column = f"{mode}_{metric}"
            values = table.loc[rows, column].to_numpy(dtype=float)
            sd_column = f"{column}_sd"
            xerr = table.loc[rows, sd_column].to_numpy(dtype=float) if (
                sd_column in table.columns) else None
            if reference is not None:
                ref = float(table.loc[reference, column])
                ax.axvline(ref, color=style["color"], linestyle=":", linewidth=1.0)
            ax.errorbar(values, y + offset, xerr=xerr, fmt=style["marker"],
                        color=style["color"], markersize=5, elinewidth=0.8, capsize=2,
                        label=f"{mode} NMF")
        ax.set_xlim(0.0, hi)
        ax.set_xlabel(_METRIC_LABELS.get(metric, metric.replace("_", " ")))
        ax.grid(True, axis="x", color="#dddddd", linewidth=0.5)
        _style_axes(ax)
    axes[0].set_yticks(y, [str(r) for r in rows])
    axes[0].set_ylim(n_rows - 0.5, -0.5)  # first condition on top
    handles, labels = axes[0].get_legend_handles_labels()
    if reference is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="#7f8c8d", linestyle=":", linewidth=1.0))
        labels.append(f"{reference} (reference)")
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


_ANALYSIS_STYLE = {
    "default": {"color": "#1a5276", "marker": "o", "label": "default chain"},
    "reference": {"color": "#b9770e", "marker": "s", "label": "reference analysis"},
}


@_styled
def plot_snr_sweep(
    table: pd.DataFrame,
    *,
    mode: str = "temporal",
    metric: str = "timecourse",
    title: str | None = None,
) -> Figure:
    """Chance-corrected recovery across source amplitude, one panel per noise level.

    For each analysis (``default`` chain and ``reference``, the ConfUSIus example) a
    line of ``{metric}_corrected`` against source amplitude, with the s.d. over seeds as
    error bars where the table has ``{metric}_corrected_sd``; the ceiling of the same
    analysis (``{metric}_corrected_ceiling``: the recording simulated without motion or
    nuisances) as a dashed line in its colour; chance (0 after correction) as a grey line.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`fusi_nmf.metrics.validation_table` ``("snr_sweep")``: columns
        ``amplitude``, ``noise_sd``, ``analysis``, ``mode`` and the scores
        (:data:`fusi_nmf.metrics.VALIDATION_COLUMNS`).
    mode : str, default "temporal"
        NMF mode to draw.
    metric : {"timecourse", "map"}
        Which recovery score.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    TypeError
        ``table`` is not a DataFrame.
    ValueError
        A needed column is missing, or no row has this ``mode``.
    """
    table = _require_dataframe(table)
    value = f"{metric}_corrected"
    needed = ["amplitude", "noise_sd", "analysis", "mode", value]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(
            f"columns {missing} not in table (columns: {list(table.columns)}); pass "
            "fusi_nmf.metrics.validation_table('snr_sweep')."
        )
    rows = table[table["mode"] == mode]
    if rows.empty:
        raise ValueError(f"no row has mode={mode!r} (modes: {sorted(set(table['mode']))}).")
    amplitudes = list(dict.fromkeys(rows["amplitude"]))  # the sweep's own order
    noises = sorted(set(rows["noise_sd"]))
    analyses = [a for a in _ANALYSIS_STYLE if a in set(rows["analysis"])]
    analyses += sorted(set(rows["analysis"]) - set(analyses))
    x = np.arange(len(amplitudes), dtype=float)
    fig = _new_figure(2.9 * len(noises) + 0.8, 3.8)
    axes = fig.subplots(1, len(noises), sharey=True, squeeze=False)[0]
    for ax, noise in zip(axes, noises, strict=True):
        ax.axhline(0.0, color="#7f8c8d", linewidth=1.0, label="chance")
        for k, analysis in enumerate(analyses):
            style = _ANALYSIS_STYLE.get(analysis, {"color": "#1e8449", "marker": "D",
                                                   "label": str(analysis)})
            cell = rows[(rows["noise_sd"] == noise) & (rows["analysis"] == analysis)]
            cell = cell.set_index("amplitude").reindex(amplitudes)
            sd = cell[f"{value}_sd"].to_numpy(dtype=float) if (
                f"{value}_sd" in cell.columns) else None
            ax.errorbar(x + (k - (len(analyses) - 1) / 2) * 0.08,
                        cell[value].to_numpy(dtype=float), yerr=sd, fmt=style["marker"] + "-",
                        color=style["color"], markersize=5, linewidth=1.2, elinewidth=0.8,
                        capsize=2, label=style["label"])
            if f"{value}_ceiling" in cell.columns:
                ax.plot(x, cell[f"{value}_ceiling"].to_numpy(dtype=float), linestyle="--",
                        color=style["color"], linewidth=1.0,
                        label=f"{style['label']}: ceiling")
        ax.set_title(f"noise s.d. {float(noise):g}")
        ax.set_xticks(x, [str(a) for a in amplitudes])
        ax.set_xlim(-0.4, len(amplitudes) - 0.6)
        ax.set_xlabel("source peak change")
        ax.grid(True, axis="y", color="#dddddd", linewidth=0.5)
        _style_axes(ax)
    label = _METRIC_LABELS.get(value, value.replace("_", " "))
    axes[0].set_ylabel(f"{label}\n(0 chance, 1 perfect)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3),
               frameon=False)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
