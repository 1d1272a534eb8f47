"""Motion traces and registration QC (mean/std images before and after)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from fusi_nmf._xr import motion_parameters
from fusi_nmf.plotting._style import (
    TEXTCOLOR,
    _as_spatial,
    _colorbar,
    _component_image,
    _draw_image,
    _extent,
    _finite,
    _limits,
    _make_norm,
    _new_figure,
    _style_axes,
    _styled,
    _time_values,
    _units,
)

__all__ = ["plot_before_after", "plot_motion", "plot_registration_qc"]


@_styled
def plot_registration_qc(
    qc: Mapping[str, Any],
    *,
    cmap: str = "magma",
    title: str | None = "Temporal mean and std images before and after motion correction",
) -> Figure:
    """Temporal mean and std images before and after motion correction.

    Parameters
    ----------
    qc : mapping
        As returned by ``Workspace.registration_qc()`` /
        ``fusi_nmf.registration.registration_qc``: images ``mean_before``,
        ``mean_after``, ``std_before``, ``std_after`` (``(z, y, x)`` or ``(y, x)``) and,
        optionally, ``correlation_before`` / ``correlation_after`` (a number: the mean
        correlation of the frames with the reference, or a ``(time,)`` DataArray).
        Motion blurs the mean image and inflates the std at tissue edges; after a good
        correction the mean is sharper and the std lower.

    Returns
    -------
    matplotlib.figure.Figure
        Rows mean and std, columns before and after (a colour scale shared per row),
        plus the correlation with the reference over time when given per frame.
    """
    if not isinstance(qc, Mapping):
        raise TypeError(
            f"qc must be a dict (Workspace.registration_qc()), got {type(qc).__name__}."
        )
    needed = ("mean_before", "mean_after", "std_before", "std_after")
    missing = [k for k in needed if k not in qc]
    if missing:
        raise ValueError(
            f"qc is missing {missing} (keys are {sorted(qc)}); pass the dict returned by "
            "Workspace.registration_qc()."
        )
    images = {k: _as_spatial(qc[k], f"qc[{k!r}]") for k in needed}
    images = {k: _component_image(v, None)[0] for k, v in images.items()}
    corr = {k: qc.get(f"correlation_{k}") for k in ("before", "after")}
    per_frame = all(isinstance(c, xr.DataArray) and "time" in c.dims for c in corr.values())
    extent, _, _ = _extent(images["mean_before"])
    aspect = abs(extent[2] - extent[3]) / max(abs(extent[1] - extent[0]), 1e-12)
    panel = 3.3
    height = 2 * panel * aspect + 1.0 + (1.8 if per_frame else 0)
    fig = _new_figure(2 * panel + 1.4, height)
    if per_frame:
        grid = fig.add_gridspec(3, 2, height_ratios=[panel * aspect, panel * aspect, 1.6])
    else:
        grid = fig.add_gridspec(2, 2)
    for row, stat in enumerate(("mean", "std")):
        pair = [images[f"{stat}_before"], images[f"{stat}_after"]]
        lo, hi = _limits(np.concatenate([_finite(p.values) for p in pair]), None, None, 1.0,
                         False, None)
        norm = _make_norm(lo, hi, False)
        axs = []
        for col, (when, image) in enumerate(zip(("before", "after"), pair, strict=True)):
            ax = fig.add_subplot(grid[row, col])
            mappable = _draw_image(ax, image, cmap=cmap, norm=norm, labels=False)
            label = f"temporal {stat}, {when}"
            c = corr[when]
            if c is not None and not isinstance(c, xr.DataArray) and row == 0:
                label += f"\nmean corr. with reference {float(c):.3f}"
            elif isinstance(c, xr.DataArray) and row == 0:
                label += f"\nmean corr. with reference {float(c.mean()):.3f}"
            ax.set_title(label)
            _, xlabel, ylabel = _extent(image)
            ax.set_xlabel(xlabel)
            if col == 0:
                ax.set_ylabel(ylabel)
            axs.append(ax)
        _colorbar(fig, mappable, axs, f"{stat} ({_units(pair[0], 'a.u.')})")
    if per_frame:
        ax = fig.add_subplot(grid[2, :])
        for when, color in (("before", "#7f8c8d"), ("after", "#1a5276")):
            c = corr[when]
            t, tlabel = _time_values(c)
            ax.plot(t, np.asarray(c.values, dtype=float), color=color, linewidth=0.9, label=when)
        ax.set_xlabel(tlabel)
        ax.set_ylabel("corr. with reference")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _style_axes(ax)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


plot_before_after = plot_registration_qc


# --------------------------------------------------------------------------- motion


@_styled
def plot_motion(
    motion: xr.Dataset | xr.DataArray,
    *,
    truth: xr.Dataset | xr.DataArray | None = None,
    title: str | None = None,
) -> Figure:
    """Motion traces over time: translations (mm), rotations (deg), framewise displacement.

    Parameters
    ----------
    motion : xarray.Dataset or xarray.DataArray
        ``Workspace.motion()`` (a Dataset with ``parameters`` ``(time, parameter)`` and,
        optionally, ``framewise_displacement`` ``(time,)``), or the parameters
        DataArray alone. Parameter names ``t*`` are translations in mm, ``r*``
        rotations in degrees.
    truth : xarray.Dataset or xarray.DataArray, optional
        Ground-truth motion ``(time, parameter)`` with the same convention (e.g.
        ``Workspace.ground_truth()["motion"]``), drawn dashed in black.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    params = motion_parameters(motion, "motion")
    fd = motion.get("framewise_displacement") if isinstance(motion, xr.Dataset) else None
    truth_params = motion_parameters(truth, "truth") if truth is not None else None
    names = [str(p) for p in np.asarray(params["parameter"].values)]
    groups = [
        ("translation (mm)", [p for p in names if p.startswith("t")]),
        ("rotation (deg)", [p for p in names if p.startswith("r")]),
    ]
    groups = [g for g in groups if g[1]]
    panels = len(groups) + (fd is not None)
    fig = _new_figure(8.0, 1.9 * panels + 0.5)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    t, tlabel = _time_values(params)
    palette = ["#1a5276", "#c0392b", "#1e8449"]
    for ax, (label, group) in zip(axes, groups, strict=False):
        for k, p in enumerate(group):
            color = palette[k % len(palette)]
            ax.plot(t, np.asarray(params.sel(parameter=p).values, dtype=float), color=color,
                    linewidth=0.9, label=f"{p} estimated" if truth_params is not None else p)
            if truth_params is not None and p in list(truth_params["parameter"].values):
                tt, _ = _time_values(truth_params)
                ax.plot(tt, np.asarray(truth_params.sel(parameter=p).values, dtype=float),
                        color=color, linestyle="--", linewidth=1.0, alpha=0.9,
                        label=f"{p} true")
        ax.set_ylabel(label)
        # beside the axes, not on the traces
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncols=1)
        ax.axhline(0.0, color="#999999", linewidth=0.5)
    if fd is not None:
        ax = axes[-1]
        ax.plot(t, np.asarray(fd.values, dtype=float), color="black", linewidth=0.9)
        ax.set_ylabel(f"framewise\ndisplacement ({_units(fd, 'mm')})")
    for ax in axes:
        _style_axes(ax)
        ax.set_xlim(t[0], t[-1])
    axes[-1].set_xlabel(tlabel)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
