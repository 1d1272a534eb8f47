"""Voxel time series, the pos/neg sign split and value distributions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from fusi_nmf._xr import SPATIAL_DIMS
from fusi_nmf.plotting._style import (
    NEG_COLOR,
    POS_COLOR,
    TEXTCOLOR,
    _finite,
    _label,
    _new_figure,
    _require_dataarray,
    _style_axes,
    _styled,
    _time_values,
)

__all__ = ["plot_distributions", "plot_sign_split", "plot_timeseries"]


def _voxel_label(point: xr.DataArray) -> str:
    parts = []
    for dim in SPATIAL_DIMS:
        if dim in point.coords and point[dim].ndim == 0:
            parts.append(f"{dim}={float(point[dim]):.2f}")
    return ", ".join(parts) + (" mm" if parts else "")


def _auto_voxels(data: xr.DataArray, n: int) -> list[dict[str, int]]:
    """The ``n`` voxels with the largest temporal std, at least 5 voxels apart."""
    spatial = [d for d in data.dims if d != "time"]
    std = np.asarray(data.std("time").transpose(*spatial).values, dtype=float)
    std = np.where(np.isfinite(std), std, -np.inf)
    order = np.argsort(std.ravel(), kind="stable")[::-1]
    chosen: list[tuple[int, ...]] = []
    for flat in order:
        idx = np.unravel_index(flat, std.shape)
        if all(max(abs(a - b) for a, b in zip(idx, c, strict=True)) >= 5 for c in chosen):
            chosen.append(tuple(int(i) for i in idx))
        if len(chosen) == n:
            break
    return [dict(zip(spatial, c, strict=True)) for c in chosen]


def _finish_time_panels(
    fig: Figure, axes: Sequence, t: np.ndarray, tlabel: str, title: str | None
) -> Figure:
    """Panels stacked over a shared time axis: full time range, styled, x label at the
    bottom, figure title."""
    for ax in axes:
        ax.set_xlim(t[0], t[-1])
        _style_axes(ax)
    axes[-1].set_xlabel(tlabel)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


@_styled
def plot_timeseries(
    data: xr.DataArray,
    voxels: Sequence[Mapping[str, int]] | None = None,
    *,
    n: int = 4,
    title: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """Time series of a few voxels, one panel each.

    Parameters
    ----------
    data : xarray.DataArray
        Dims ``(time, ...)``, e.g. a recording ``(time, z, y, x)``.
    voxels : sequence of mapping, optional
        Voxel positions as index dicts for ``.isel`` (e.g. ``[{"z": 0, "y": 40, "x":
        30}]``); default: the ``n`` voxels with the largest temporal std.
    n : int
        Number of voxels picked when ``voxels`` is None.
    title, ylabel : str, optional
        Figure title; y label (default: name and units of ``data``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = _require_dataarray(data, "data")
    if "time" not in data.dims:
        raise ValueError(f"data needs a 'time' dim, got dims {tuple(data.dims)}.")
    if voxels is None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        voxels = _auto_voxels(data, n)
    if len(voxels) == 0:
        raise ValueError("voxels is empty; pass at least one {dim: index} mapping or None.")
    t, tlabel = _time_values(data)
    fig = _new_figure(8.0, 1.3 * len(voxels) + 0.6)
    axes = fig.subplots(len(voxels), 1, sharex=True, squeeze=False)[:, 0]
    label = ylabel if ylabel is not None else _label(data, None)
    for ax, voxel in zip(axes, voxels, strict=True):
        try:
            point = data.isel(dict(voxel))
        except (IndexError, ValueError) as exc:
            raise ValueError(
                f"voxel {dict(voxel)} is not a valid index into data with sizes "
                f"{dict(data.sizes)}: {exc}"
            ) from exc
        if point.dims != ("time",):
            raise ValueError(
                f"voxel {dict(voxel)} leaves dims {point.dims}; give an index for every "
                f"non-time dim of {tuple(data.dims)}."
            )
        ax.plot(t, np.asarray(point.values, dtype=float), color="#1a5276", linewidth=0.8)
        ax.set_title(_voxel_label(point), loc="left", fontsize=8)
    axes[len(axes) // 2].set_ylabel(label)
    return _finish_time_panels(fig, axes, t, tlabel, title)


@_styled
def plot_sign_split(
    split: xr.DataArray,
    voxel: Mapping[str, int] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """How one voxel's z-scored signal becomes two non-negative channels.

    Parameters
    ----------
    split : xarray.DataArray
        ``Workspace.split()``: dims ``(time, sign, ...)`` with ``sign`` = ``pos``/``neg``.
    voxel : mapping, optional
        Index dict of the voxel (``{"z": 0, "y": 40, "x": 30}``); default: the voxel
        with the largest temporal std.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Top: the signed signal ``pos - neg``; below: ``pos`` and ``neg`` channels.
    """
    split = _require_dataarray(split, "split")
    if "sign" not in split.dims or "time" not in split.dims:
        raise ValueError(
            f"split needs 'time' and 'sign' dims (Workspace.split()), got {tuple(split.dims)}."
        )
    signed = split.sel(sign="pos") - split.sel(sign="neg")
    if voxel is None:
        voxel = _auto_voxels(signed, 1)[0]
    point_pos = split.sel(sign="pos").isel(dict(voxel))
    point_neg = split.sel(sign="neg").isel(dict(voxel))
    t, tlabel = _time_values(split)
    fig = _new_figure(8.0, 4.6)
    axes = fig.subplots(3, 1, sharex=True)
    pos = np.asarray(point_pos.values, dtype=float)
    neg = np.asarray(point_neg.values, dtype=float)
    axes[0].plot(t, pos - neg, color="black", linewidth=0.8)
    axes[0].axhline(0.0, color="#999999", linewidth=0.5)
    axes[0].set_ylabel("z-score")
    axes[0].set_title(f"voxel {_voxel_label(point_pos)}: z = pos - neg", loc="left")
    axes[1].fill_between(t, 0, pos, color=POS_COLOR, linewidth=0)
    axes[1].set_ylabel("pos = max(z, 0)")
    axes[2].fill_between(t, 0, neg, color=NEG_COLOR, linewidth=0)
    axes[2].set_ylabel("neg = max(-z, 0)")
    return _finish_time_panels(fig, axes, t, tlabel, title)


@_styled
def plot_distributions(
    before: xr.DataArray,
    after: xr.DataArray,
    *,
    labels: tuple[str, str] = ("before", "after"),
    bins: int = 100,
    normal: bool = True,
    max_values: int = 200_000,
    title: str | None = None,
) -> Figure:
    """Histograms of all values before and after a transform (e.g. z-scoring).

    Parameters
    ----------
    before, after : xarray.DataArray
        Any shape; all finite values are pooled.
    labels : (str, str)
        Panel titles.
    bins : int
        Histogram bins.
    normal : bool
        Overlay the standard normal density on the ``after`` panel (what z-scores of
        Gaussian noise would look like).
    max_values : int
        At most this many values per panel, taken at an even stride (deterministic), to
        keep the figure fast on full recordings.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels with a logarithmic count axis, so tails are visible.
    """
    before = _require_dataarray(before, "before")
    after = _require_dataarray(after, "after")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}.")
    fig = _new_figure(9.0, 3.0)
    axes = fig.subplots(1, 2)
    for ax, data, label in zip(axes, (before, after), labels, strict=True):
        values = _finite(data.values)
        if values.size == 0:
            raise ValueError(f"{label!r} has no finite values to draw.")
        stride = max(1, int(np.ceil(values.size / max_values)))
        values = values[::stride]
        ax.hist(values, bins=bins, color="#5d6d7e", density=True, log=True)
        if normal and data is after:
            grid = np.linspace(values.min(), values.max(), 400)
            ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color=POS_COLOR,
                    linewidth=1.2, label="standard normal")
            ax.legend(loc="upper right", frameon=False)
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, 1e-5), hi)
        ax.set_title(f"{label}: mean {values.mean():.3g}, std {values.std():.3g}")
        ax.set_xlabel(_label(data, None))
        ax.set_ylabel("density (log)")
        _style_axes(ax)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
