"""NMF components: map rows beside time courses, similarity matrices, matched maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from fusi_nmf.metrics import correlation_matrix, match_components, signed_maps
from fusi_nmf.plotting._style import (
    TEXTCOLOR,
    TRUTH_STYLE,
    _as_spatial,
    _colorbar,
    _component_image,
    _draw_image,
    _extent,
    _finite,
    _make_norm,
    _new_figure,
    _require_dataarray,
    _style_axes,
    _styled,
    _time_values,
)

__all__ = ["plot_component_match", "plot_components", "plot_map_columns", "plot_similarity"]


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
    sa, sb = signed_maps(_require_dataarray(a, "a")), signed_maps(_require_dataarray(b, "b"))
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
    # a supxlabel, not fig.text: the constrained layout makes room for it below the panels
    fig.supxlabel(f"each panel: {xlabel} across, {ylabel} down; red > 0 > blue, "
                  "scaled to its own largest |value|", fontsize=7, color=TEXTCOLOR)
    if title:
        fig.suptitle(title, color=TEXTCOLOR)
    return fig
