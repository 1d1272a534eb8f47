"""Images and volumes in mm, and the recording's metadata table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fusi_nmf.plotting._style import (
    TEXTCOLOR,
    _as_spatial,
    _colorbar,
    _draw_image,
    _extent,
    _grid_shape,
    _label,
    _limits,
    _make_norm,
    _new_figure,
    _require_dataarray,
    _slice_indices,
    _slice_title,
    _styled,
    _units,
)

__all__ = ["metadata_table", "plot_volume"]


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
