"""fusi_nmf.plotting: figures in physical units, readable colours, deterministic bytes.

Inputs are small synthetic DataArrays with the package's data model (time in s, space in
mm with anisotropic voxels), plus the real small simulated recording for the tables.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure

from fusi_nmf import plotting as fplot

DX, DY, DZ = 0.1, 0.04832, 0.4


def _space(nz: int = 1, ny: int = 30, nx: int = 20) -> dict:
    return {
        "z": ("z", np.arange(nz) * DZ, {"units": "mm", "voxdim": DZ}),
        "y": ("y", 1.0 + np.arange(ny) * DY, {"units": "mm", "voxdim": DY}),
        "x": ("x", -1.0 + np.arange(nx) * DX, {"units": "mm", "voxdim": DX}),
    }


def _recording(nt: int = 60, nz: int = 1, ny: int = 30, nx: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 100.0, size=(nt, nz, ny, nx)).astype("float32")
    coords = {"time": ("time", np.arange(nt) * 0.4, {"units": "s"}), **_space(nz, ny, nx)}
    return xr.DataArray(values, dims=("time", "z", "y", "x"), coords=coords,
                        name="power_doppler", attrs={"units": "a.u.", "history": "a\nb"})


def _nmf_like(k: int = 3, nt: int = 60, seed: int = 1):
    rng = np.random.default_rng(seed)
    maps = xr.DataArray(
        rng.random((k, 2, 1, 30, 20)), dims=("component", "sign", "z", "y", "x"),
        coords={"component": np.arange(k), "sign": ["pos", "neg"], **_space()},
    )
    tc = xr.DataArray(rng.random((nt, k)), dims=("time", "component"),
                      coords={"time": ("time", np.arange(nt) * 0.4, {"units": "s"}),
                              "component": np.arange(k)})
    return maps, tc


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _motion(nt: int = 60, seed: int = 2) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    params = xr.DataArray(
        np.cumsum(rng.normal(0, 0.01, (nt, 3)), axis=0), dims=("time", "parameter"),
        coords={"time": ("time", np.arange(nt) * 0.4, {"units": "s"}),
                "parameter": ["tx", "ty", "rz"]},
    )
    fd = np.abs(params.diff("time")).sum("parameter").reindex(time=params.time, fill_value=0)
    fd.attrs["units"] = "mm"
    return xr.Dataset({"parameters": params, "framewise_displacement": fd})


def _all_figures() -> dict[str, Figure]:
    rec = _recording()
    maps, tc = _nmf_like()
    z = (rec - rec.mean("time")) / rec.std("time")
    split = xr.concat([np.maximum(z, 0), np.maximum(-z, 0)],
                      dim=pd.Index(["pos", "neg"], name="sign")).transpose("time", "sign", ...)
    qc = {"mean_before": rec.mean("time"), "mean_after": rec.mean("time") * 1.01,
          "std_before": rec.std("time"), "std_after": rec.std("time") * 0.9,
          "correlation_before": xr.DataArray(np.linspace(0.8, 0.9, 60), dims="time",
                                             coords={"time": rec.time}),
          "correlation_after": xr.DataArray(np.linspace(0.95, 0.97, 60), dims="time",
                                            coords={"time": rec.time})}
    motion = _motion()
    return {
        "volume": fplot.plot_volume(rec.mean("time"), log=True),
        "mosaic": fplot.plot_volume(_recording(nz=3).mean("time")),
        "components": fplot.plot_components(maps, tc, truth=tc),
        "components_nosign": fplot.plot_components(maps.sel(sign="pos"), tc),
        "motion": fplot.plot_motion(motion, truth=motion["parameters"] * 1.1),
        "qc": fplot.plot_registration_qc(qc),
        "error": fplot.plot_error_curve(pd.Series([3.0, 2.0, 1.5],
                                                  index=pd.Index([2, 4, 8], name="k"))),
        "timeseries": fplot.plot_timeseries(rec, n=3),
        "split": fplot.plot_sign_split(split),
        "distributions": fplot.plot_distributions(rec, z),
        "match": fplot.plot_component_match(maps, maps.isel(component=[2, 0, 1])),
        "recovery": fplot.plot_recovery(pd.DataFrame({"NMF": [0.9, 0.8], "PCA": [0.4, 0.5]})),
        "cleaning": fplot.plot_cleaning_effect(_cleaning_table()),
    }


def _cleaning_table() -> pd.DataFrame:
    """A small table shaped like ``fusi_nmf.metrics.validation_table("cleaning")``."""
    index = pd.Index(["raw", "registered", "+ step", "chain"], name="condition")
    return pd.DataFrame(
        {
            "temporal_timecourse_r": [0.2, 0.3, 0.4, 0.7],
            "temporal_map_r": [0.1, 0.3, 0.5, 0.8],
            "spatial_timecourse_r": [0.25, 0.35, 0.3, 0.75],
            "spatial_map_r": [0.1, 0.2, 0.6, 0.9],
            "temporal_timecourse_r_sd": [0.01, 0.1, 0.05, 0.02],
            "seconds": [1.0, 2.0, 3.0, 4.0],
        },
        index=index,
    )


def test_every_figure_is_white_and_deterministic():
    first, second = _all_figures(), _all_figures()
    for name, fig in first.items():
        assert isinstance(fig, Figure), name
        assert fig.get_facecolor() == to_rgba("white"), name
        assert all(ax.get_facecolor() == to_rgba("white") for ax in fig.axes if ax.get_visible())
        a, b = _png(fig), _png(second[name])
        assert a[:8] == b"\x89PNG\r\n\x1a\n"
        assert a == b, f"{name}: same inputs gave different PNG bytes"


def test_different_data_gives_a_different_image():
    a = fplot.plot_volume(_recording(seed=0).mean("time"))
    b = fplot.plot_volume(_recording(seed=1).mean("time"))
    assert _png(a) != _png(b)


def test_volume_axes_are_in_mm_with_equal_physical_aspect():
    image = _recording(ny=30, nx=20).mean("time")
    fig = fplot.plot_volume(image, title="mean")
    ax = fig.axes[0]
    x0, x1, y1, y0 = ax.images[0].get_extent()
    # Half a voxel beyond the first and last centres, y increasing downwards (depth).
    assert (x0, x1) == pytest.approx((-1.0 - DX / 2, -1.0 + 19 * DX + DX / 2))
    assert (y0, y1) == pytest.approx((1.0 - DY / 2, 1.0 + 29 * DY + DY / 2))
    assert ax.get_aspect() == 1.0
    assert ax.get_xlabel() == "x (mm)"
    assert "mm" in ax.get_ylabel()
    cbar = fig.axes[-1]
    assert cbar.get_ylabel() == "power doppler (a.u.)"
    assert fig.get_suptitle() == "mean"


def test_volume_mosaic_one_panel_per_slice_and_single_slice_into_ax():
    volume = _recording(nz=5).mean("time")
    fig = fplot.plot_volume(volume, ncols=2)
    titled = [ax.get_title() for ax in fig.axes if ax.images]
    assert titled == [f"z = {k * DZ:.2f} mm" for k in range(5)]
    fig2 = fplot.plot_volume(volume, z=[1, 3])
    assert len([ax for ax in fig2.axes if ax.images]) == 2
    host = Figure()
    ax = host.subplots()
    assert fplot.plot_volume(volume, ax=ax, z=2) is host
    with pytest.raises(ValueError, match="single slice"):
        fplot.plot_volume(volume, ax=ax)


def test_volume_colour_limits_robust_explicit_log_and_centre():
    image = _recording().mean("time")
    values = image.values.ravel()
    fig = fplot.plot_volume(image, robust=5)
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx(tuple(np.percentile(values, [5, 95])))
    norm = fplot.plot_volume(image, vmin=0, vmax=1000).axes[0].images[0].norm
    assert (norm.vmin, norm.vmax) == (0, 1000)
    assert isinstance(fplot.plot_volume(image, log=True).axes[0].images[0].norm, LogNorm)
    centred = fplot.plot_volume(image - 200.0, center=0.0, cmap="RdBu_r").axes[0].images[0].norm
    assert centred.vmin == pytest.approx(-centred.vmax)


def test_volume_refuses_time_and_other_dims_with_a_hint():
    rec = _recording()
    with pytest.raises(ValueError, match=r"mean\('time'\)"):
        fplot.plot_volume(rec)
    with pytest.raises(ValueError, match="component"):
        fplot.plot_volume(_nmf_like()[0].sel(sign="pos"))
    with pytest.raises(TypeError, match="DataArray"):
        fplot.plot_volume(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="slice indices"):
        fplot.plot_volume(rec.mean("time"), z=5)


def test_components_one_row_per_component_pos_neg_and_time_course():
    maps, tc = _nmf_like(k=4)
    fig = fplot.plot_components(maps, tc, components=[1, 3])
    image_axes = [ax for ax in fig.axes if ax.images]
    line_axes = [ax for ax in fig.axes if ax.lines and not ax.images]
    assert len(image_axes) == 4 and len(line_axes) == 2
    assert image_axes[0].get_title().startswith("pos")
    assert image_axes[1].get_title().startswith("neg")
    # pos and neg of one component share a colour scale
    assert image_axes[0].images[0].norm.vmax == image_axes[1].images[0].norm.vmax
    np.testing.assert_allclose(line_axes[1].lines[0].get_ydata(), tc.sel(component=3).values)
    np.testing.assert_allclose(line_axes[1].lines[0].get_xdata(), tc["time"].values)
    assert line_axes[1].get_xlabel() == "time (s)"
    labelled = fplot.plot_components(maps, tc, components=[1, 3], row_labels=["a", "b"])
    assert labelled.axes[0].get_ylabel().startswith("a\n")
    with pytest.raises(ValueError, match="one label per"):
        fplot.plot_components(maps, tc, components=[1, 3], row_labels=["a"])
    with pytest.raises(ValueError, match=r"components \[7\]"):
        fplot.plot_components(maps, tc, components=[7])
    with pytest.raises(ValueError, match="dims"):
        fplot.plot_components(maps, tc.T.rename({"component": "k"}))


def test_motion_panels_units_and_truth_overlay():
    motion = _motion()
    fig = fplot.plot_motion(motion, truth=motion["parameters"])
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels[0] == "translation (mm)" and labels[1] == "rotation (deg)"
    assert "framewise" in labels[2]
    assert len(fig.axes[0].lines) == 2 * 2 + 1  # tx, ty estimated + true, zero line
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed[0].get_ydata(), motion["parameters"].sel(parameter="tx"))
    only_params = fplot.plot_motion(motion["parameters"])
    assert len(only_params.axes) == 2
    with pytest.raises(ValueError, match="parameter"):
        fplot.plot_motion(motion["framewise_displacement"])


@pytest.mark.parametrize(
    "bad",
    [
        xr.Dataset({"fd": ("time", np.zeros(60))}),
        xr.DataArray(np.zeros((60, 3)), dims=("time", "param")),
        np.zeros((60, 3)),
    ],
    ids=["dataset-without-parameters", "wrong-dims", "numpy"],
)
def test_plot_motion_checks_motion_like_motion_error_table(bad):
    """One check of a motion input: the figure and the error table reject it alike."""
    from fusi_nmf.metrics import motion_error_table

    good = _motion()["parameters"]
    with pytest.raises((TypeError, ValueError)) as figure:
        fplot.plot_motion(good, truth=bad)
    with pytest.raises((TypeError, ValueError)) as table:
        motion_error_table(good, bad)
    assert (type(figure.value), str(figure.value)) == (type(table.value), str(table.value))


def test_time_panels_share_the_full_time_axis():
    """plot_timeseries and plot_sign_split finish their time panels the same way."""
    rec = _recording()
    split = xr.concat([rec.clip(min=0), (-rec).clip(min=0)], dim="sign").assign_coords(
        sign=["pos", "neg"]).transpose("time", "sign", ...)
    t = rec["time"].values
    figures = (fplot.plot_timeseries(rec, n=2, title="T"), fplot.plot_sign_split(split, title="T"))
    for fig in figures:
        assert [ax.get_xlim() for ax in fig.axes] == [(t[0], t[-1])] * len(fig.axes)
        assert fig.axes[-1].get_xlabel() == "time (s)" and fig.get_suptitle() == "T"
        assert [ax.get_xlabel() for ax in fig.axes[:-1]] == [""] * (len(fig.axes) - 1)


@pytest.mark.parametrize("plot", ["plot_cleaning_effect", "plot_snr_sweep"])
def test_recovery_figures_want_a_dataframe(plot):
    with pytest.raises(TypeError, match="table must be a pandas DataFrame, got dict"):
        getattr(fplot, plot)({"raw": [0.1]})


def test_registration_qc_needs_the_qc_keys():
    with pytest.raises(ValueError, match="mean_after"):
        fplot.plot_registration_qc({"mean_before": _recording().mean("time")})


def test_error_curve_accepts_series_frame_dataarray_and_lists():
    frame = pd.DataFrame({"reconstruction_err": [3.0, 2.0], "explained_variance": [0.3, 0.5]},
                         index=pd.Index([2, 4], name="n_components"))
    fig = fplot.plot_error_curve(frame)
    assert [ax.get_ylabel() for ax in fig.axes] == ["reconstruction err", "explained variance"]
    assert fig.axes[-1].get_xlabel() == "n components"
    da = xr.DataArray([5.0, 4.0, 3.5], dims="n_components", coords={"n_components": [1, 2, 3]})
    np.testing.assert_allclose(fplot.plot_error_curve(da).axes[0].lines[0].get_xdata(), [1, 2, 3])
    fig = fplot.plot_error_curve([4.0, 2.0, 1.0, 0.5], logy=True)
    assert fig.axes[0].get_xlabel() == "iteration" and fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="no numeric"):
        fplot.plot_error_curve(pd.DataFrame({"a": ["x"]}))


def test_timeseries_picks_the_most_variable_voxels_or_the_given_ones():
    rec = _recording()
    rec[:, 0, 10, 5] *= 50.0  # make one voxel by far the most variable
    fig = fplot.plot_timeseries(rec, n=2)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), rec[:, 0, 10, 5].values)
    title = fig.axes[0].get_title(loc="left")
    assert "y=1.48" in title and "x=-0.50" in title
    fig = fplot.plot_timeseries(rec, voxels=[{"z": 0, "y": 1, "x": 2}])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), rec[:, 0, 1, 2].values)
    with pytest.raises(ValueError, match="every"):
        fplot.plot_timeseries(rec, voxels=[{"y": 1}])
    with pytest.raises(ValueError, match="not a valid index"):
        fplot.plot_timeseries(rec, voxels=[{"z": 0, "y": 100, "x": 0}])


def test_distributions_and_recovery_and_similarity():
    rec = _recording()
    z = (rec - rec.mean("time")) / rec.std("time")
    fig = fplot.plot_distributions(rec, z, labels=("raw", "z"))
    assert fig.axes[0].get_title().startswith("raw") and fig.axes[1].get_yscale() == "log"
    assert fig.axes[1].get_legend() is not None  # standard normal overlay
    fig = fplot.plot_recovery(pd.Series([0.9, 0.2], index=pd.Index(["a", "b"], name="source")))
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [0.9, 0.2]
    with pytest.raises(ValueError, match="not in table"):
        fplot.plot_recovery(pd.DataFrame({"a": [1.0]}), value="b")
    fig = fplot.plot_similarity(np.eye(3))
    assert fig.axes[0].images[0].norm.vmin == -1


def test_component_match_puts_matched_pairs_on_the_diagonal():
    maps, _ = _nmf_like(k=3)
    shuffled = maps.isel(component=[2, 0, 1]).assign_coords(component=[0, 1, 2])
    fig = fplot.plot_component_match(maps, shuffled)
    r = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.diag(r), 1.0, atol=1e-6)
    # components are numbered from 1 on the axes (coordinate 0 is component 1)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["2", "3", "1"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1", "2", "3"]


def test_components_numbered_from_one_and_titles_are_the_text_form():
    maps, tc = _nmf_like(k=3)
    fig = fplot.plot_components(maps, tc, title="Three  parts\nof a test")
    assert fig.axes[0].get_ylabel().startswith("component 1\n")
    # the notebook stores repr(fig) as text/plain; the book makes it the alt text
    assert repr(fig) == "<Figure: Three parts of a test>"
    untitled = fplot.plot_recovery(pd.Series([0.5], index=pd.Index(["a"], name="source")))
    assert repr(untitled).startswith("<Figure size")  # no title: matplotlib's own text


def _inside(legend, ax) -> bool:
    """Whether a legend's box overlaps the axes' data area."""
    fig = ax.figure
    fig.canvas.draw()
    box = legend.get_window_extent()
    area = ax.get_window_extent()
    return box.overlaps(area) and not (box.y0 >= area.y1 - 1 or box.x0 >= area.x1 - 1)


def test_legends_sit_off_the_data():
    table = pd.DataFrame({"NMF": [0.9, 0.8], "PCA": [0.7, 0.95]},
                         index=pd.Index([1, 2], name="source"))
    fig = fplot.plot_recovery(table, title="bars")
    ax = fig.axes[0]
    assert ax.get_legend() is not None and not _inside(ax.get_legend(), ax)
    motion = _motion()
    fig = fplot.plot_motion(motion, truth=motion["parameters"])
    for ax in fig.axes[:2]:
        assert not _inside(ax.get_legend(), ax)


def test_z_scores_are_labelled_as_such():
    rec = _recording()
    z = rec.copy(data=((rec - rec.mean("time")) / rec.std("time")).values)
    z.attrs = {"standardize": "zscore", "units": "1"}
    fig = fplot.plot_timeseries(z, n=1)
    assert fig.axes[0].get_ylabel().startswith("z-score")


def test_map_columns_one_row_per_source_own_symmetric_scale():
    maps, _ = _nmf_like(k=2)
    truth = maps.sel(sign="pos").rename(component="source")
    other = -3 * truth
    other[1] = 0.0  # an unmatched source: a blank panel, not an error
    fig = fplot.plot_map_columns({"truth": truth, "method": other}, title="maps")
    axes = fig.axes
    assert [a.get_title() for a in axes[:2]] == ["truth", "method"]
    norm = axes[1].images[0].norm
    assert norm.vmin == -norm.vmax == -float(np.abs(other[0]).max())
    assert not axes[3].images and axes[3].texts[0].get_text() == "no match"
    assert axes[0].get_ylabel() == "source 1"
    with pytest.raises(ValueError, match="same length"):
        fplot.plot_map_columns({"a": truth, "b": truth.isel(source=[0])})


def test_motion_error_table_separates_offset_from_trace_error():
    motion = _motion()
    truth = motion["parameters"] + 0.05  # constant offset only
    table = fplot.motion_error_table(motion, truth)
    assert list(table.index) == ["tx", "ty", "rz"]
    np.testing.assert_allclose(table["rmse"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(table["rmse_offset_removed"], 0.0, atol=1e-12)
    np.testing.assert_allclose(table["r"], 1.0)
    assert table.loc["rz", "units"] == "deg"
    with pytest.raises(ValueError, match="frames"):
        fplot.motion_error_table(motion, truth.isel(time=slice(0, 10)))


def test_metadata_table_lists_geometry_and_sidecar(small_recording_path):
    from fusi_nmf.io import load_recording

    rec = load_recording(small_recording_path)
    table = fplot.metadata_table(rec)
    assert table.loc["dims", "value"] == "time=300 x z=1 x y=48 x x=40"
    assert "step 0.04832 mm" in table.loc["y coordinate", "value"]
    assert "step 0.1 mm" in table.loc["x coordinate", "value"]
    assert any(k.startswith("attrs[") for k in table.index)
    fig = fplot.plot_volume(rec.mean("time"), log=True)
    assert fig.axes[0].get_xlabel() == "x (mm)"


def test_cleaning_effect_one_row_per_condition_dots_at_the_values_and_reference_lines():
    table = _cleaning_table()
    fig = fplot.plot_cleaning_effect(table, rows=["registered", "+ step", "chain"])
    time_ax, map_ax = fig.axes
    # conditions top to bottom in the given order
    assert [t.get_text() for t in time_ax.get_yticklabels()] == ["registered", "+ step", "chain"]
    assert time_ax.get_ylim()[0] > time_ax.get_ylim()[1]
    assert "time-course" in time_ax.get_xlabel() and "map" in map_ax.get_xlabel()
    # one dot per mode and condition, at the table's values; reference lines at "registered"
    for ax, metric in ((time_ax, "timecourse_r"), (map_ax, "map_r")):
        dots = {line.get_color(): line.get_xdata() for line in ax.lines
                if line.get_marker() in ("o", "s")}
        assert sorted(np.round(np.concatenate(list(dots.values())), 6)) == sorted(
            np.round(table.loc[["registered", "+ step", "chain"],
                               [f"temporal_{metric}", f"spatial_{metric}"]].to_numpy().ravel(), 6)
        )
        verticals = sorted(round(float(line.get_xdata()[0]), 6) for line in ax.lines
                           if line.get_linestyle() == ":")
        assert verticals == sorted([table.loc["registered", f"temporal_{metric}"],
                                    table.loc["registered", f"spatial_{metric}"]])
    # the sd column gives error bars on the temporal time-course dots only
    assert len(time_ax.collections) == 1 and len(map_ax.collections) == 0
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "temporal NMF", "spatial NMF", "registered (reference)"]


def test_cleaning_effect_rejects_missing_rows_columns_and_reference():
    table = _cleaning_table()
    with pytest.raises(ValueError, match="nope"):
        fplot.plot_cleaning_effect(table, rows=["raw", "nope"])
    with pytest.raises(ValueError, match="baseline"):
        fplot.plot_cleaning_effect(table, reference="baseline")
    with pytest.raises(ValueError, match="temporal_other"):
        fplot.plot_cleaning_effect(table, metrics=("other",))
    with pytest.raises(TypeError, match="DataFrame"):
        fplot.plot_cleaning_effect(table.to_numpy())
    fig = fplot.plot_cleaning_effect(table, reference=None)
    assert not [line for ax in fig.axes for line in ax.lines if line.get_linestyle() == ":"]


def test_cleaning_effect_draws_the_shipped_measurement():
    from fusi_nmf.metrics import validation_table

    table = validation_table("cleaning")
    fig = fplot.plot_cleaning_effect(table)
    assert len(fig.axes[0].get_yticklabels()) == len(table)


def test_model_selection_panels_recommended_line_and_threshold():
    from fusi_nmf.plotting import plot_model_selection

    table = pd.DataFrame({"n_components": [8, 4, 12], "heldout_error": [0.3, 0.33, 0.28],
                          "stability": [0.8, 0.64, 0.86]})

    def draw():
        return plot_model_selection(table, ["heldout_error", "stability"], recommended=8,
                                    candidates=[8, 12], thresholds={"stability": 0.75})

    fig = draw()
    assert _png(fig) == _png(draw()) and fig.get_facecolor() == to_rgba("white")
    err_ax, stab_ax = fig.axes
    assert list(err_ax.lines[0].get_xdata()) == [4, 8, 12]  # sorted by k
    assert stab_ax.get_ylabel() == "seed stability"
    assert [t.get_text() for t in stab_ax.texts] == ["threshold 0.75"]
    assert not err_ax.texts
    dashed = [line for line in stab_ax.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [8]
    with pytest.raises(ValueError, match="nope"):
        plot_model_selection(table, ["nope"])


def test_snr_sweep_draws_the_shipped_table_with_chance_and_ceiling():
    from fusi_nmf.metrics import validation_table

    table = validation_table("snr_sweep")
    fig = fplot.plot_snr_sweep(table, title="sweep")
    noises = sorted(set(table["noise_sd"]))
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [f"noise s.d. {n:g}" for n in noises]
    amplitudes = list(dict.fromkeys(table["amplitude"]))
    assert [t.get_text() for t in axes[0].get_xticklabels()] == amplitudes
    # every panel: a chance line at 0, and per analysis a line of the shipped values
    # and its ceiling, with the values of that noise level in amplitude order
    for ax, noise in zip(axes, noises, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        lines |= {bars.get_label(): bars.lines[0] for bars in ax.containers}  # errorbars
        assert list(lines["chance"].get_ydata()) == [0.0, 0.0]
        for analysis, label in (("default", "default chain"), ("reference",
                                                               "reference analysis")):
            rows = table[(table["mode"] == "temporal") & (table["noise_sd"] == noise)
                         & (table["analysis"] == analysis)].set_index("amplitude")
            np.testing.assert_allclose(lines[label].get_ydata(),
                                       rows.loc[amplitudes, "timecourse_corrected"])
            np.testing.assert_allclose(lines[f"{label}: ceiling"].get_ydata(),
                                       rows.loc[amplitudes, "timecourse_corrected_ceiling"])
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out (constrained layout)
    assert all(not _inside(fig.legends[0], ax) for ax in axes)
    spatial = fplot.plot_snr_sweep(table, mode="spatial", metric="map")
    assert "map" in spatial.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="mode"):
        fplot.plot_snr_sweep(table, mode="both")
    with pytest.raises(ValueError, match="not in table"):
        fplot.plot_snr_sweep(table.drop(columns="noise_sd"))


def test_recovery_bars_draw_the_chance_level():
    table = pd.DataFrame({"NMF": [0.9, 0.3]}, index=pd.Index([1, 2], name="source"))
    ax = fplot.plot_recovery(table, chance=0.35).axes[0]
    chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.35, 0.35]
    assert ax.get_legend() is not None
