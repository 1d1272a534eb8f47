"""The look every figure shares (rc, colours, :class:`TitledFigure`) and the image helpers.

Private to :mod:`fusi_nmf.plotting`: the topic modules import their shared helpers (physical
extents in mm, colour limits, slices, colour bars, input checks) from here and only here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fusi_nmf._xr import SPATIAL_DIMS

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


def _require_dataframe(table: Any, name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}.")
    return table


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


def _component_image(maps: xr.DataArray, z: int | None) -> tuple[xr.DataArray, str]:
    """A (.., y, x) image per component: the chosen slice, or the max over z."""
    if "z" not in maps.dims:
        return maps, ""
    if maps.sizes["z"] == 1:
        return maps.isel(z=0), ""
    if z is None:
        return maps.max("z"), " (max over z)"
    return maps.isel(z=z), f" ({_slice_title(maps, z)})"
