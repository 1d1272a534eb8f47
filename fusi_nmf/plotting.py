"""Figures for the fusi-nmf book: volumes in mm, NMF components, motion, QC, errors.

Every function builds a :class:`matplotlib.figure.Figure` with the object-oriented API
(no pyplot state: nothing is shown or kept alive behind your back) and returns it. In a
notebook, end the cell with the figure (``fig = plot_volume(...); fig``) or call
``display(fig)``; in a script, ``fig.savefig("out.png")``.

Conventions
    * Physical axes: images are drawn with ``x`` (mm) horizontal and ``y`` (mm, depth)
      vertical, increasing downwards, with equal aspect *in mm* (fUSI voxels are
      anisotropic: x 0.1 mm, y 0.04832 mm, so equal aspect in voxels would distort).
    * Explicit white face colour and dark text, so figures read the same on light and
      dark book themes.
    * Deterministic: the same inputs give the same PNG bytes
      (``fig.savefig(buf, format="png", metadata={"Software": None})``).
    * Components are numbered from 1 in labels (the ``component`` coordinate stays
      0-based), legends sit outside the data, and a figure's text form (``repr``, the
      ``text/plain`` a notebook stores beside the image) is its title, which the book
      uses as the image's alt text.

Besides figures, a few small helpers turn pipeline results into tables for the book
(:func:`metadata_table`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fusi_nmf._xr import SPATIAL_DIMS
from fusi_nmf.metrics import correlation_matrix, match_components

# the table lives in the evaluation layer; re-exported for the chapters that import it here
from fusi_nmf.metrics import motion_error_table as motion_error_table

__all__ = [
    "TitledFigure",
    "metadata_table",
    "motion_error_table",
    "plot_before_after",
    "plot_cleaning_effect",
    "plot_component_match",
    "plot_components",
    "plot_distributions",
    "plot_error_curve",
    "plot_map_columns",
    "plot_motion",
    "plot_recovery",
    "plot_registration_qc",
    "plot_sign_split",
    "plot_similarity",
    "plot_snr_sweep",
    "plot_timeseries",
    "plot_volume",
]

F = TypeVar("F", bound=Callable[..., Any])
FACECOLOR = "white"
TEXTCOLOR = "black"
# Colours for the pos/neg channels and for estimate vs ground truth.
POS_COLOR = "#c0392b"
NEG_COLOR = "#2471a3"
TRUTH_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0}
# Fixed rc for every figure: explicit colours (no dependence on a dark style sheet the
# user or the book may have loaded) and a fixed font size.
_RC = {
    "figure.facecolor": FACECOLOR,
    "axes.facecolor": FACECOLOR,
    "savefig.facecolor": FACECOLOR,
    "text.color": TEXTCOLOR,
    "axes.labelcolor": TEXTCOLOR,
    "axes.edgecolor": TEXTCOLOR,
    "xtick.color": TEXTCOLOR,
    "ytick.color": TEXTCOLOR,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "font.size": 9,
}


# --------------------------------------------------------------------------- helpers


def _styled(func: F) -> F:
    """Run a figure function under the package rc (fonts, colours), whatever the user's style."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with mpl.rc_context(_RC):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class TitledFigure(Figure):
    """A figure whose text form is its title: ``<Figure: title>``.

    A notebook stores this text beside the PNG (``text/plain``); the book turns it into
    the image's alt text (:mod:`fusi_nmf.book`), so a screen reader hears the title, not
    a file name.
    """

    def title_text(self) -> str:
        """The suptitle, else the first axes title, else ``""``."""
        if self._suptitle is not None and self._suptitle.get_text():
            return self._suptitle.get_text()
        for ax in self.axes:
            for loc in ("center", "left"):
                text = ax.get_title(loc=loc)
                if text:
                    return text
        return ""

    def __repr__(self) -> str:
        title = " ".join(self.title_text().split())
        if title:
            return f"<Figure: {title}>"
        return super().__repr__().replace(type(self).__name__, "Figure", 1)


def _new_figure(width: float, height: float) -> Figure:
    """A white, layout-managed figure that pyplot does not track."""
    return TitledFigure(figsize=(width, height), facecolor=FACECOLOR, layout="constrained")


def _style_axes(ax: Axes) -> None:
    """Force readable colours on one axes (also when the caller passed ``ax``)."""
    ax.set_facecolor(FACECOLOR)
    for spine in ax.spines.values():
        spine.set_color(TEXTCOLOR)
    ax.tick_params(colors=TEXTCOLOR, labelsize=8)
    ax.xaxis.label.set_color(TEXTCOLOR)
    ax.yaxis.label.set_color(TEXTCOLOR)
    ax.title.set_color(TEXTCOLOR)


def _require_dataarray(data: Any, name: str) -> xr.DataArray:
    if not isinstance(data, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.DataArray with named dims (e.g. ('z', 'y', 'x')), "
            f"got {type(data).__name__}; wrap arrays with xarray.DataArray(values, dims=...)."
        )
    return data


def _units(obj: Any, default: str = "") -> str:
    attrs = getattr(obj, "attrs", {}) or {}
    return str(attrs.get("units", default) or default)


def _coord_values(data: xr.DataArray, dim: str) -> tuple[np.ndarray, bool]:
    """Values of a spatial coordinate in mm, or voxel indices when it has no coordinate."""
    n = data.sizes[dim]
    if dim in data.coords:
        values = np.asarray(data[dim].values, dtype=float)
        if values.ndim == 1 and np.all(np.isfinite(values)):
            return values, True
    return np.arange(n, dtype=float), False


def _step(values: np.ndarray, coord: xr.DataArray | None) -> float:
    """Voxel size along one axis: coordinate spacing, else ``attrs['voxdim']``, else 1."""
    if values.size > 1:
        return float(np.median(np.diff(values)))
    if coord is not None and "voxdim" in coord.attrs:
        return float(coord.attrs["voxdim"])
    return 1.0


def _extent(image: xr.DataArray) -> tuple[list[float], str, str]:
    """imshow extent (x horizontal, y downwards) and axis labels for a (y, x) image."""
    xs, x_mm = _coord_values(image, "x")
    ys, y_mm = _coord_values(image, "y")
    dx = _step(xs, image["x"] if "x" in image.coords else None)
    dy = _step(ys, image["y"] if "y" in image.coords else None)
    # Half a voxel beyond the centres so every voxel is drawn at its full size.
    extent = [xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2]
    xlabel = "x (mm)" if x_mm else "x (voxel)"
    ylabel = "y, depth (mm)" if y_mm else "y (voxel)"
    return extent, xlabel, ylabel


def _as_spatial(data: xr.DataArray, name: str, allowed_extra: Sequence[str] = ()) -> xr.DataArray:
    """Check that ``data`` holds an image/volume: dims among z, y, x (+ allowed extras)."""
    data = _require_dataarray(data, name)
    if "time" in data.dims:
        raise ValueError(
            f"{name} still has a 'time' dim (dims {tuple(data.dims)}); reduce it first, e.g. "
            f"{name}.mean('time') for the mean image, {name}.std('time') for the temporal std, "
            f"or {name}.isel(time=0) for one frame."
        )
    extra = [d for d in data.dims if d not in SPATIAL_DIMS and d not in allowed_extra]
    if extra:
        raise ValueError(
            f"{name} has non-spatial dim(s) {extra} (dims {tuple(data.dims)}); select one "
            f"value with .sel()/.isel(), e.g. {name}.isel({extra[0]}=0)."
        )
    for dim in ("y", "x"):
        if dim not in data.dims:
            raise ValueError(
                f"{name} needs 'y' and 'x' dims to be drawn as an image, got dims "
                f"{tuple(data.dims)}; name the axes with .rename() or xarray.DataArray(dims=...)."
            )
    return data


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _limits(
    values: np.ndarray,
    vmin: float | None,
    vmax: float | None,
    robust: float | tuple[float, float] | None,
    log: bool,
    center: float | None,
) -> tuple[float, float]:
    """Colour limits: explicit values win, else robust percentiles, else min/max."""
    finite = _finite(values)
    if log:
        finite = finite[finite > 0]
    if finite.size == 0:
        lo, hi = (1e-3, 1.0) if log else (0.0, 1.0)
    elif robust:
        lo_q, hi_q = (robust, 100 - robust) if np.isscalar(robust) else robust
        lo, hi = (float(v) for v in np.percentile(finite, [lo_q, hi_q]))
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if center is not None and vmin is None and vmax is None:
        half = max(abs(hi - center), abs(lo - center))
        lo, hi = center - half, center + half
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if not hi > lo:
        hi = lo + (abs(lo) * 1e-3 if lo else 1.0)
    return lo, hi


def _label(data: xr.DataArray, cbar_label: str | None) -> str:
    if cbar_label is not None:
        return cbar_label
    # standardized data keep the recording's name; say what the numbers are
    if data.attrs.get("standardize") == "zscore":
        return "z-score (units of the voxel's s.d.)"
    if data.attrs.get("standardize") == "psc":
        return "signal change (%)"
    name = data.attrs.get("long_name") or data.name or "value"
    name = str(name).replace("_", " ")
    units = _units(data)
    return f"{name} ({units})" if units else name


def _slice_indices(data: xr.DataArray, z: int | Sequence[int] | None) -> list[int | None]:
    if "z" not in data.dims:
        if z not in (None, 0, [0], (0,)):
            raise ValueError(f"z={z!r} was given but the image has no 'z' dim.")
        return [None]
    nz = data.sizes["z"]
    indices = list(range(nz)) if z is None else ([z] if np.isscalar(z) else list(z))
    for i in indices:
        if not isinstance(i, int | np.integer) or not -nz <= int(i) < nz:
            raise ValueError(
                f"z={z!r}: slice indices must be integers in [0, {nz}) (the image has {nz} "
                "z slice(s)); pass z=None to draw every slice as a mosaic."
            )
    return [int(i) % nz for i in indices]


def _slice_title(data: xr.DataArray, index: int | None) -> str:
    if index is None or "z" not in data.dims:
        return ""
    zs, z_mm = _coord_values(data, "z")
    return f"z = {zs[index]:.2f} mm" if z_mm else f"z = {index}"


def _draw_image(
    ax: Axes,
    image: xr.DataArray,
    *,
    cmap: str,
    norm: mcolors.Normalize,
    labels: bool = True,
) -> Any:
    image = image.transpose("y", "x")
    extent, xlabel, ylabel = _extent(image)
    im = ax.imshow(
        np.asarray(image.values, dtype=float),
        cmap=cmap,
        norm=norm,
        extent=extent,
        origin="upper",
        interpolation="nearest",
        aspect="equal",
    )
    if labels:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    _style_axes(ax)
    return im


def _make_norm(lo: float, hi: float, log: bool) -> mcolors.Normalize:
    if log:
        lo = max(lo, np.finfo(float).tiny)
        hi = max(hi, lo * 10)
        return mcolors.LogNorm(vmin=lo, vmax=hi, clip=True)
    return mcolors.Normalize(vmin=lo, vmax=hi)


def _colorbar(fig: Figure, mappable: Any, ax: Axes | Sequence[Axes], label: str) -> None:
    cbar = fig.colorbar(mappable, ax=ax, shrink=0.9, pad=0.02)
    cbar.set_label(label, color=TEXTCOLOR)
    cbar.ax.tick_params(colors=TEXTCOLOR, labelsize=8)
    cbar.outline.set_edgecolor(TEXTCOLOR)


def _time_values(data: xr.DataArray | xr.Dataset) -> tuple[np.ndarray, str]:
    if "time" in data.coords:
        units = _units(data["time"], "s")
        return np.asarray(data["time"].values, dtype=float), f"time ({units})"
    return np.arange(data.sizes["time"], dtype=float), "time (frame)"


def _grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = int(ncols) if ncols else min(n, 4)
    ncols = max(1, min(ncols, n))
    return int(np.ceil(n / ncols)), ncols


# --------------------------------------------------------------------------- tables


def metadata_table(data: xr.DataArray) -> pd.DataFrame:
    """Describe a recording as a two-column table (what, value) for the book.

    Parameters
    ----------
    data : xarray.DataArray
        A recording ``(time, z, y, x)`` as returned by ``Workspace.raw()`` (any
        DataArray works: its dims, coords and attrs are listed).

    Returns
    -------
    pandas.DataFrame
        Index ``property``; one column ``value`` (strings): shape and dtype, for every
        dim its size, range, step and units, then every attribute (long values are
        shortened).
    """
    data = _require_dataarray(data, "data")
    rows: list[tuple[str, str]] = [
        ("name", str(data.name)),
        ("dims", " x ".join(f"{d}={data.sizes[d]}" for d in data.dims)),
        ("dtype", str(data.dtype)),
        ("size in memory", f"{data.nbytes / 2**20:.1f} MiB"),
    ]
    for dim in data.dims:
        if dim not in data.coords:
            continue
        values = np.asarray(data[dim].values)
        units = _units(data[dim])
        if np.issubdtype(values.dtype, np.number) and values.size:
            step = float(np.median(np.diff(values))) if values.size > 1 else float("nan")
            if values.size == 1 and "voxdim" in data[dim].attrs:
                step = float(data[dim].attrs["voxdim"])
            text = f"{values.size} values, {values.min():.4g} to {values.max():.4g}"
            if np.isfinite(step):
                text += f", step {step:.4g}"
            rows.append((f"{dim} coordinate", f"{text} {units}".strip()))
        else:
            rows.append((f"{dim} coordinate", ", ".join(map(str, values[:6]))))
    for key, value in data.attrs.items():
        text = value if isinstance(value, str) else repr(value)
        text = text.replace("\n", " | ")
        if len(text) > 120:
            text = text[:117] + "..."
        rows.append((f"attrs[{key!r}]", text))
    table = pd.DataFrame(rows, columns=["property", "value"]).set_index("property")
    return table


# --------------------------------------------------------------------------- images


@_styled
def plot_volume(
    data: xr.DataArray,
    *,
    ax: Axes | None = None,
    z: int | Sequence[int] | None = None,
    cmap: str = "magma",
    title: str | None = None,
    cbar_label: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: float | tuple[float, float] | None = 1.0,
    log: bool = False,
    center: float | None = None,
    ncols: int | None = None,
    panel_width: float = 3.2,
) -> Figure:
    """Draw an image ``(y, x)`` or a volume ``(z, y, x)`` with physical axes in mm.

    Parameters
    ----------
    data : xarray.DataArray
        Dims ``(y, x)`` or ``(z, y, x)`` (any order) with coordinates in mm. A ``time``
        dim is refused: reduce it first (``data.mean("time")``).
    ax : matplotlib.axes.Axes, optional
        Draw into this axes (one slice only); default: a new figure.
    z : int or sequence of int, optional
        Slice index/indices to draw; default every slice (a mosaic when there are
        several).
    cmap : str
        Matplotlib colormap name.
    title : str, optional
        Figure title (default: the array name).
    cbar_label : str, optional
        Colour-bar label; default ``"<long_name or name> (<units>)"`` from the attrs.
    vmin, vmax : float, optional
        Colour limits; each one not given comes from ``robust``.
    robust : float or (float, float) or None
        Percentile(s) of the finite values used as colour limits (``1.0`` -> 1st and 99th
        percentiles, so a few bright vessels do not wash out the image); ``None`` uses
        min and max.
    log : bool
        Logarithmic colour scale (non-positive values are drawn as the lowest colour).
    center : float, optional
        Make the colour limits symmetric about this value (use with a diverging cmap,
        e.g. ``center=0, cmap="RdBu_r"`` for z-scores or correlations).
    ncols : int, optional
        Columns of the mosaic (default up to 4).
    panel_width : float
        Width of one panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (``ax.figure`` when ``ax`` was given).
    """
    data = _as_spatial(data, "data")
    indices = _slice_indices(data, z)
    if ax is not None and len(indices) > 1:
        raise ValueError(
            f"ax= draws a single slice but the volume has {len(indices)} z slices; "
            "pass z=<index> or leave ax=None for a mosaic."
        )
    lo, hi = _limits(data.values, vmin, vmax, robust, log, center)
    norm = _make_norm(lo, hi, log)

    if ax is None:
        ny, nx = (data.sizes["y"], data.sizes["x"])
        first = data.isel(z=indices[0]) if indices[0] is not None else data
        extent, _, _ = _extent(first)
        aspect = abs(extent[2] - extent[3]) / max(abs(extent[1] - extent[0]), 1e-12)
        nrows, ncol = _grid_shape(len(indices), ncols)
        width = panel_width * ncol + 1.0
        height = max(panel_width * aspect * nrows + 0.8, 1.8)
        fig = _new_figure(width, height)
        axes = fig.subplots(nrows, ncol, squeeze=False, sharex=True, sharey=True)
        del ny, nx
    else:
        fig = ax.figure
        axes = np.array([[ax]])
        nrows, ncol = 1, 1

    flat = list(axes.ravel())
    mappable = None
    for k, index in enumerate(indices):
        image = data.isel(z=index) if index is not None else data
        row, col = divmod(k, ncol)
        mappable = _draw_image(flat[k], image, cmap=cmap, norm=norm, labels=False)
        if row == nrows - 1 or k + ncol >= len(indices):
            flat[k].set_xlabel(_extent(image)[1])
        if col == 0:
            flat[k].set_ylabel(_extent(image)[2])
        if len(indices) > 1 or (index is not None and data.sizes.get("z", 1) > 1):
            flat[k].set_title(_slice_title(data, index))
    for extra in flat[len(indices) :]:
        extra.set_visible(False)
    _colorbar(fig, mappable, flat[: len(indices)], _label(data, cbar_label))
    heading = title
    if heading is None:
        heading = str(data.name).replace("_", " ") if data.name else ""
    if heading:
        if ax is None:
            fig.suptitle(heading, color=TEXTCOLOR)
        else:
            ax.set_title(heading)
    return fig


def _component_image(maps: xr.DataArray, z: int | None) -> tuple[xr.DataArray, str]:
    """A (.., y, x) image per component: the chosen slice, or the max over z."""
    if "z" not in maps.dims:
        return maps, ""
    if maps.sizes["z"] == 1:
        return maps.isel(z=0), ""
    if z is None:
        return maps.max("z"), " (max over z)"
    return maps.isel(z=z), f" ({_slice_title(maps, z)})"


@_styled
def plot_components(
    maps: xr.DataArray,
    timecourses: xr.DataArray,
    *,
    components: Sequence[int] | None = None,
    cmap: str = "magma",
    z: int | None = None,
    robust: float | None = 0.5,
    title: str | None = None,
    truth: xr.DataArray | None = None,
    row_labels: Sequence[str] | None = None,
    row_height: float = 1.6,
) -> Figure:
    """One row per NMF component: its ``pos`` and ``neg`` maps beside its time course.

    Parameters
    ----------
    maps : xarray.DataArray
        Dims ``(component, sign, z, y, x)`` (``sign`` = ``pos``/``neg``), or
        ``(component, z, y, x)`` without the sign split (one map column).
    timecourses : xarray.DataArray
        Dims ``(time, component)``, time in s.
    components : sequence of int, optional
        Component coordinate values to draw (default: all).
    cmap : str
        Colormap of the maps.
    z : int, optional
        Slice index for multi-slice maps; default: the maximum over ``z``.
    robust : float or None
        Upper colour limit of a row = this upper percentile of its maps
        (``100 - robust``); pos and neg maps of one component share the scale so their
        loadings compare directly; ``None`` uses the maximum.
    title : str, optional
        Figure title.
    truth : xarray.DataArray, optional
        Ground-truth time courses ``(time, component)`` matched to these components
        (e.g. from the validation chapter): drawn dashed under each estimate, scaled to
        the estimate.
    row_labels : sequence of str, optional
        One label per drawn row (default ``"component <n>"``, numbered from 1 in the
        order of the ``component`` coordinate), e.g. the matched source.
    row_height : float
        Height of one row in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    maps = _require_dataarray(maps, "maps")
    timecourses = _require_dataarray(timecourses, "timecourses")
    if "component" not in maps.dims:
        raise ValueError(f"maps needs a 'component' dim, got dims {tuple(maps.dims)}.")
    if set(timecourses.dims) != {"time", "component"}:
        raise ValueError(
            f"timecourses must have dims ('time', 'component'), got {tuple(timecourses.dims)}."
        )
    _as_spatial(maps.isel(component=0), "maps", allowed_extra=("sign",))
    if "component" in maps.coords:
        comp_values = list(np.asarray(maps["component"].values))
    else:
        comp_values = list(range(maps.sizes["component"]))
    chosen = comp_values if components is None else list(components)
    missing = [c for c in chosen if c not in comp_values]
    if missing:
        raise ValueError(
            f"components {missing} are not in maps (components are {comp_values}); "
            "pass values of the 'component' coordinate."
        )
    if not chosen:
        raise ValueError("components is empty; pass at least one component or None for all.")
    if row_labels is None:
        row_labels = [f"component {comp_values.index(c) + 1}" for c in chosen]
    elif len(row_labels) != len(chosen):
        raise ValueError(
            f"row_labels has {len(row_labels)} labels for {len(chosen)} components; "
            "give one label per drawn component."
        )
    signs = list(np.asarray(maps["sign"].values)) if "sign" in maps.dims else [None]
    t, tlabel = _time_values(timecourses)

    n = len(chosen)
    ncols_maps = len(signs)
    first = maps.isel(component=0)
    first = first.isel(sign=0) if "sign" in first.dims else first
    image0, _ = _component_image(first, z)
    extent, xlabel, ylabel = _extent(image0)
    aspect = abs(extent[2] - extent[3]) / max(abs(extent[1] - extent[0]), 1e-12)
    map_width = row_height / max(aspect, 0.2)
    width = ncols_maps * map_width + 5.5
    fig = _new_figure(width, row_height * n + 0.7)
    axes = fig.subplots(
        n,
        ncols_maps + 1,
        squeeze=False,
        gridspec_kw={"width_ratios": [map_width] * ncols_maps + [5.0]},
    )
    position = {c: i for i, c in enumerate(comp_values)}
    for row, comp in enumerate(chosen):
        comp_maps = maps.isel(component=position[comp])
        image, note = _component_image(comp_maps, z)
        values = _finite(image.values)
        hi = float(np.percentile(values, 100 - robust)) if robust and values.size else (
            float(values.max()) if values.size else 1.0
        )
        norm = _make_norm(0.0, hi if hi > 0 else 1.0, False)
        mappable = None
        for col, sign in enumerate(signs):
            ax = axes[row, col]
            img = image.sel(sign=sign) if sign is not None else image
            mappable = _draw_image(ax, img, cmap=cmap, norm=norm, labels=False)
            if row == 0:
                ax.set_title(f"{sign} map{note}" if sign is not None else f"map{note}")
            if row == n - 1:
                ax.set_xlabel(xlabel)
            else:
                ax.tick_params(labelbottom=False)
            if col == 0:
                ax.set_ylabel(f"{row_labels[row]}\n{ylabel}")
            else:
                ax.tick_params(labelleft=False)
        _colorbar(fig, mappable, axes[row, ncols_maps - 1], "loading")
        ax = axes[row, -1]
        course = np.asarray(timecourses.sel(component=comp).transpose("time").values, dtype=float)
        ax.plot(t, course, color="#1a5276", linewidth=0.9, label="estimate")
        if truth is not None and comp in list(np.asarray(truth["component"].values)):
            ref = np.asarray(truth.sel(component=comp).transpose("time").values, dtype=float)
            scale = float(np.dot(ref, course) / max(np.dot(ref, ref), 1e-12))
            ax.plot(t, ref * scale, label="ground truth", **TRUTH_STYLE)
            if row == 0:
                ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, ncols=2)
        ax.set_xlim(t[0], t[-1])
        ax.set_ylabel("activation")
        if row == 0:
            ax.set_title("time course", loc="left")
        if row == n - 1:
            ax.set_xlabel(tlabel)
        else:
            ax.tick_params(labelbottom=False)
        _style_axes(ax)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


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


def _motion_parameters(motion: Any, name: str) -> tuple[xr.DataArray, xr.DataArray | None]:
    if isinstance(motion, xr.Dataset):
        for key in ("parameters", "motion"):
            if key in motion:
                fd = motion.get("framewise_displacement")
                return motion[key], fd
        raise ValueError(
            f"{name} is a Dataset without a 'parameters' (or 'motion') variable "
            f"(variables: {list(motion.data_vars)}); pass Workspace.motion()."
        )
    motion = _require_dataarray(motion, name)
    if set(motion.dims) != {"time", "parameter"}:
        raise ValueError(
            f"{name} must have dims ('time', 'parameter'), got {tuple(motion.dims)}."
        )
    return motion, None


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
    params, fd = _motion_parameters(motion, "motion")
    truth_params = _motion_parameters(truth, "truth")[0] if truth is not None else None
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


# --------------------------------------------------------------------------- time series


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
        ax.set_xlim(t[0], t[-1])
        _style_axes(ax)
    axes[len(axes) // 2].set_ylabel(label)
    axes[-1].set_xlabel(tlabel)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


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
    for ax in axes:
        ax.set_xlim(t[0], t[-1])
        _style_axes(ax)
    axes[-1].set_xlabel(tlabel)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig


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


# --------------------------------------------------------------------------- summaries


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


@_styled
def plot_similarity(
    similarity: xr.DataArray | pd.DataFrame | np.ndarray,
    *,
    row_label: str = "temporal component",
    col_label: str = "spatial component",
    cmap: str = "RdBu_r",
    annotate: bool = True,
    title: str | None = None,
) -> Figure:
    """Heat map of a similarity (e.g. map correlation) matrix between two sets of components.

    Parameters
    ----------
    similarity : xarray.DataArray, pandas.DataFrame or 2-D array
        Rows: components of the first set; columns: of the second. Values in [-1, 1].
    row_label, col_label : str
        Axis labels.
    cmap : str
        Diverging colormap, centred on 0.
    annotate : bool
        Write the value in every cell (only when the matrix is at most 15 x 15).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(similarity, xr.DataArray):
        if similarity.ndim != 2:
            raise ValueError(f"similarity must be 2-D, got dims {tuple(similarity.dims)}.")
        rows, cols = (
            [str(v) for v in similarity[d].values] if d in similarity.coords else None
            for d in similarity.dims
        )
        values = np.asarray(similarity.values, dtype=float)
    elif isinstance(similarity, pd.DataFrame):
        rows, cols = [str(v) for v in similarity.index], [str(v) for v in similarity.columns]
        values = similarity.to_numpy(dtype=float)
    else:
        values = np.asarray(similarity, dtype=float)
        rows = cols = None
        if values.ndim != 2:
            raise ValueError(f"similarity must be 2-D, got shape {values.shape}.")
    nr, nc = values.shape
    rows = rows or [str(i) for i in range(nr)]
    cols = cols or [str(i) for i in range(nc)]
    fig = _new_figure(0.45 * nc + 2.4, 0.4 * nr + 1.4)
    ax = fig.subplots()
    im = ax.imshow(values, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_xticks(range(nc), cols)
    ax.set_yticks(range(nr), rows)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    if annotate and nr <= 15 and nc <= 15:
        for i in range(nr):
            for j in range(nc):
                v = values[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v) > 0.6 else "black")
    _style_axes(ax)
    _colorbar(fig, im, ax, "correlation")
    if title:
        ax.set_title(title)
    return fig


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
        :func:`fusi_nmf.signal.cleaning_recovery_table`.
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
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}.")
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
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}.")
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


def _signed(maps: xr.DataArray) -> xr.DataArray:
    """``pos - neg`` for maps with a ``sign`` dim (the signed loading), else the maps."""
    if "sign" in maps.dims:
        return maps.sel(sign="pos") - maps.sel(sign="neg")
    return maps


@_styled
def plot_component_match(
    a: xr.DataArray,
    b: xr.DataArray,
    *,
    labels: tuple[str, str] = ("temporal", "spatial"),
    title: str | None = None,
) -> Figure:
    """Correlation of every map of ``a`` with every map of ``b``, columns in matched order.

    Maps with a ``sign`` dim are compared as signed maps ``pos - neg``. Columns (the
    components of ``b``) are reordered so that the one-to-one match found by
    :func:`fusi_nmf.metrics.match_components` lies on the diagonal: a bright diagonal
    means the two decompositions found the same components.

    Parameters
    ----------
    a, b : xarray.DataArray
        Maps ``(component, [sign,] z, y, x)`` of two decompositions of the same data.
    labels : (str, str)
        Names of ``a`` and ``b`` for the axis labels.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sa, sb = _signed(_require_dataarray(a, "a")), _signed(_require_dataarray(b, "b"))
    if "component" not in sa.dims or "component" not in sb.dims:
        raise ValueError(f"a and b need a 'component' dim, got {sa.dims} and {sb.dims}.")
    other = [d for d in sa.dims if d != "component"]
    pairs = match_components(sa, sb)
    rest = [c for c in sb["component"].values if c not in set(pairs["b"])]
    order_b = [*pairs["b"], *rest]
    rows_a = [*pairs["a"], *[c for c in sa["component"].values if c not in set(pairs["a"])]]
    fa = sa.sel(component=rows_a).transpose("component", *other).values.reshape(len(rows_a), -1)
    fb = sb.sel(component=order_b).transpose("component", *other).values.reshape(len(order_b), -1)
    r = correlation_matrix(fa, fb)
    number_a = {c: i + 1 for i, c in enumerate(sa["component"].values)}
    number_b = {c: i + 1 for i, c in enumerate(sb["component"].values)}
    frame = pd.DataFrame(r, index=[str(number_a[c]) for c in rows_a],
                         columns=[str(number_b[c]) for c in order_b])
    return plot_similarity(
        frame,
        row_label=f"{labels[0]} component",
        col_label=f"{labels[1]} component (matched order)",
        title=title,
    )


@_styled
def plot_map_columns(
    columns: Mapping[str, xr.DataArray],
    *,
    row_labels: Sequence[str] | None = None,
    dim: str = "source",
    title: str | None = None,
    row_height: float = 1.3,
) -> Figure:
    """Signed maps side by side: one column per method, one row per source.

    Each panel is scaled to its own largest ``|value|`` (a diverging colour map centred
    on 0), because the methods' scales are arbitrary; what compares is the shape. An
    all-zero panel (a source no component was matched to) is left blank.

    Parameters
    ----------
    columns : mapping of str to xarray.DataArray
        Column title -> maps ``(dim, [z,] y, x)`` (a single ``z`` slice, or the slice
        of largest ``|value|`` is drawn); all with the same ``dim`` length.
    row_labels : sequence of str, optional
        One per row (default ``"<dim> <n>"``, numbered from 1).
    dim : str
        The row dim (``"source"``).
    title : str, optional
        Figure title.
    row_height : float
        Height of one row in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not columns:
        raise ValueError("columns is empty; pass at least one {title: maps} entry.")
    names = list(columns)
    arrays = [_require_dataarray(columns[n], n) for n in names]
    sizes = {a.sizes.get(dim, -1) for a in arrays}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"every column needs a {dim!r} dim of the same length; got "
                         f"{[dict(a.sizes) for a in arrays]}.")
    n = sizes.pop()
    labels = list(row_labels) if row_labels is not None else [f"{dim} {i + 1}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"row_labels has {len(labels)} labels for {n} rows.")
    first = arrays[0].isel({dim: 0})
    first = first.max("z") if "z" in first.dims else first
    extent, xlabel, ylabel = _extent(first)
    aspect = abs(extent[2] - extent[3]) / max(abs(extent[1] - extent[0]), 1e-12)
    panel_w = row_height / max(aspect, 0.2)
    fig = _new_figure(panel_w * len(names) + 1.2, row_height * n + 0.9)
    axes = fig.subplots(n, len(names), squeeze=False)
    for col, (name, maps) in enumerate(zip(names, arrays, strict=True)):
        for row in range(n):
            image = maps.isel({dim: row})
            if "z" in image.dims:
                strength = np.abs(image).max([d for d in image.dims if d != "z"])
                image = image.isel(z=int(np.argmax(strength.values)))
            ax = axes[row, col]
            peak = float(np.nanmax(np.abs(image.values))) if image.size else 0.0
            if peak > 0:
                _draw_image(ax, image, cmap="RdBu_r",
                            norm=mcolors.Normalize(vmin=-peak, vmax=peak), labels=False)
            else:
                _style_axes(ax)
                ax.text(0.5, 0.5, "no match", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(labels[row])
    fig.text(0.5, 0.0, f"each panel: {xlabel} across, {ylabel} down; red > 0 > blue, "
             "scaled to its own largest |value|", ha="center", va="bottom", fontsize=7)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
