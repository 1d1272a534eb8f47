"""Figures of the model-selection chapter: error curves, every criterion against ``k``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from fusi_nmf.plotting._style import (
    TEXTCOLOR,
    _new_figure,
    _style_axes,
    _styled,
)

__all__ = ["plot_error_curve", "plot_model_selection"]


@_styled
def plot_error_curve(
    errors: pd.Series | pd.DataFrame | xr.DataArray | Sequence[float] | np.ndarray,
    *,
    x_label: str | None = None,
    title: str | None = None,
    logy: bool = False,
) -> Figure:
    """Reconstruction error (and other scores) against n_components or iteration.

    Parameters
    ----------
    errors : pandas.Series, pandas.DataFrame, xarray.DataArray or array-like
        Series / 1-D DataArray: one curve against its index / dim coordinate.
        DataFrame: one panel per numeric column (e.g. ``reconstruction_err`` and
        ``explained_variance``) against the index (e.g. ``n_components``).
        Array-like: a curve against iteration 1..n.
    x_label : str, optional
        x-axis label (default: index / dim name, or ``"iteration"``).
    title : str, optional
        Figure title.
    logy : bool
        Logarithmic y axis (useful for error against iteration).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(errors, xr.DataArray):
        if errors.ndim != 1:
            raise ValueError(f"errors as a DataArray must be 1-D, got dims {tuple(errors.dims)}.")
        dim = errors.dims[0]
        index = errors[dim].values if dim in errors.coords else np.arange(1, errors.size + 1)
        frame = pd.DataFrame({str(errors.name or "error"): errors.values},
                             index=pd.Index(index, name=str(dim)))
    elif isinstance(errors, pd.Series):
        frame = errors.to_frame(name=str(errors.name or "error"))
    elif isinstance(errors, pd.DataFrame):
        frame = errors.select_dtypes("number")
    else:
        values = np.asarray(errors, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"errors must be 1-D, got shape {values.shape}.")
        frame = pd.DataFrame({"error": values},
                             index=pd.Index(np.arange(1, values.size + 1), name="iteration"))
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError("errors holds no numeric values to draw.")
    xname = x_label or (str(frame.index.name) if frame.index.name else "index")
    x = np.asarray(frame.index, dtype=float)
    panels = frame.shape[1]
    fig = _new_figure(6.0, 2.2 * panels + 0.5)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    few = frame.shape[0] <= 40
    for ax, column in zip(axes, frame.columns, strict=True):
        ax.plot(x, np.asarray(frame[column], dtype=float), color="#1a5276",
                marker="o" if few else None, markersize=4, linewidth=1.2)
        ax.set_ylabel(str(column).replace("_", " "))
        if logy:
            ax.set_yscale("log")
        ax.grid(True, color="#dddddd", linewidth=0.5)
        _style_axes(ax)
    axes[-1].set_xlabel(xname.replace("_", " "))
    if few and np.allclose(x, np.round(x)):
        axes[-1].set_xticks(x)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


_LABELS = {
    "reconstruction_err": "reconstruction error",
    "explained_variance": "explained variance",
    "heldout_error": "held-out error (bi-CV)",
    "stability": "seed stability",
    "stability_min": "worst matched map r",
    "split_half": "split-half reproducibility",
    "timecourse_r": "source recovery |r|",
    "map_r": "source map recovery |r|",
    "timecourse_corrected": "time-course |r| above chance",
    "map_corrected": "map |r| above chance",
}


@_styled
def plot_model_selection(
    table: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    recommended: int | None = None,
    candidates: Sequence[int] = (),
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per criterion against ``n_components``, the recommended ``k`` marked.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per ``k``: column ``n_components`` plus the criteria.
    columns : sequence of str, optional
        Criteria to draw (default: every numeric column but ``n_components``).
    recommended : int, optional
        The chosen ``k``: a vertical line on every panel.
    candidates : sequence of int
        ``k`` values shaded as candidates (e.g. within tolerance of the best held-out error).
    thresholds : mapping, optional
        ``{column: value}``: a horizontal dotted line (e.g. the stability threshold).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(table, pd.DataFrame) or "n_components" not in table.columns:
        raise ValueError("table must be a DataFrame with an 'n_components' column")
    table = table.sort_values("n_components")
    if columns is None:
        columns = [c for c in table.select_dtypes("number").columns if c != "n_components"]
    missing = [c for c in columns if c not in table.columns]
    if missing or not columns:
        raise ValueError(f"columns {missing or columns} not in table ({list(table.columns)})")
    x = np.asarray(table["n_components"], dtype=float)
    fig = _new_figure(6.0, 1.8 * len(columns) + 0.6)
    axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
    for ax, column in zip(axes, columns, strict=True):
        for k in candidates:
            ax.axvspan(k - 0.5, k + 0.5, color="#d6eaf8", zorder=0)
        ax.plot(x, np.asarray(table[column], dtype=float), color="#1a5276", marker="o",
                markersize=4, linewidth=1.2)
        if thresholds and column in thresholds:
            ax.axhline(thresholds[column], color="#7f8c8d", linestyle=":", linewidth=1)
            ax.annotate(f"threshold {thresholds[column]:g}", (1.0, thresholds[column]),
                        xycoords=("axes fraction", "data"), xytext=(-3, 2),
                        textcoords="offset points", ha="right", va="bottom",
                        fontsize=7, color="#7f8c8d")
        if recommended is not None:
            ax.axvline(recommended, color="#c0392b", linestyle="--", linewidth=1.2)
        ax.set_ylabel(_LABELS.get(column, column.replace("_", " ")))
        ax.grid(True, color="#dddddd", linewidth=0.5)
        _style_axes(ax)
    axes[-1].set_xlabel("n_components")
    axes[-1].set_xticks(x)
    if recommended is not None:
        axes[0].set_title(f"recommended k = {recommended} (dashed)", fontsize=9)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
