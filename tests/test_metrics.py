"""Tests for fusi_nmf.metrics on constructed cases with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fusi_nmf.metrics import (
    align_to_truth,
    chance_corrected,
    correlation_matrix,
    match_components,
    motion_error_table,
    recovery_with_chance,
    source_recovery,
    validation_table,
)
from fusi_nmf.signal import CLEAN_DEFAULTS


def _maps(k=4, shape=(1, 6, 5), seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.random((k, *shape)),
        dims=("component", "z", "y", "x"),
        coords={"component": np.arange(k), "y": np.arange(shape[1]) * 0.05},
    )


def test_correlation_matrix_matches_numpy_and_constant_rows():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 20)), rng.standard_normal((2, 20))
    expected = np.corrcoef(np.vstack([a, b]))[:3, 3:]
    np.testing.assert_allclose(correlation_matrix(a, b), expected, atol=1e-12)
    const = correlation_matrix(np.ones((1, 20)), b)
    np.testing.assert_array_equal(const, 0.0)
    with pytest.raises(ValueError, match="same number of columns"):
        correlation_matrix(a, b[:, :5])


def test_match_components_recovers_permutation():
    a = _maps()
    perm = np.array([2, 0, 3, 1])
    b = a.isel(component=perm).assign_coords(component=np.arange(4))
    table = match_components(a, b)
    # a's component i is b's component where perm == i
    np.testing.assert_array_equal(table["a"].to_numpy(), np.arange(4))
    np.testing.assert_array_equal(table["b"].to_numpy(), np.argsort(perm))
    np.testing.assert_allclose(table["correlation"], 1.0)


def test_match_components_sign_and_dim_b_and_rectangular():
    a = _maps()
    b = (-a.isel(component=[3, 1])).rename(component="source")
    b = b.assign_coords(source=["s0", "s1"])
    table = match_components(a, b, dim_b="source")
    assert list(table["a"]) == [1, 3]
    assert list(table["b"]) == ["s1", "s0"]
    np.testing.assert_allclose(table["correlation"], -1.0)
    np.testing.assert_allclose(table["abs_correlation"], 1.0)
    # signed matching does not prefer anti-correlated pairs
    signed = match_components(a, b, dim_b="source", absolute=False)
    assert (signed["correlation"] > -1).all()


def test_match_components_time_courses_any_dim_order():
    rng = np.random.default_rng(2)
    tc = xr.DataArray(rng.random((50, 3)), dims=("time", "component"))
    other = tc.isel(component=[1, 2, 0]).transpose("component", "time")
    table = match_components(tc, other)
    assert list(table["b"]) == [2, 0, 1]


def test_match_components_errors():
    a = _maps()
    with pytest.raises(ValueError, match="no 'source' dim"):
        match_components(a, a, dim_b="source")
    with pytest.raises(ValueError, match="same non-component dims"):
        match_components(a, a.isel(y=slice(0, 3)))
    with pytest.raises(TypeError, match="DataArray"):
        match_components(a.values, a)


def _truth(n_time=120, shape=(1, 8, 6), seed=0):
    rng = np.random.default_rng(seed)
    maps = rng.random((3, *shape)) ** 4
    tcs = rng.random((n_time, 3)) - 0.2
    sign = np.array([1, -1, 1])
    tcs[:, 1] = -np.abs(tcs[:, 1])  # a decrease: signed time course below 0
    return xr.Dataset(
        {
            "source_maps": (("source", "z", "y", "x"), maps),
            "source_timecourses": (("time", "source"), tcs),
            "source_sign": (("source",), sign),
        },
        coords={"source": np.arange(3), "time": np.arange(n_time) * 0.3},
    )


def test_source_recovery_perfect_with_sign_channels():
    truth = _truth()
    maps_t = truth["source_maps"].values
    tcs = truth["source_timecourses"].values
    order = [2, 0, 1]  # components are a permutation of the sources
    k_maps = np.zeros((3, 2, *maps_t.shape[1:]))
    k_tc = np.zeros((tcs.shape[0], 3))
    for c, s in enumerate(order):
        ch = 0 if truth["source_sign"].values[s] > 0 else 1
        k_maps[c, ch] = maps_t[s]
        k_tc[:, c] = np.abs(tcs[:, s]) if ch else tcs[:, s] + 0.2
    maps = xr.DataArray(
        k_maps,
        dims=("component", "sign", "z", "y", "x"),
        coords={"component": np.arange(3), "sign": ["pos", "neg"]},
    )
    tc = xr.DataArray(k_tc, dims=("time", "component"), coords={"component": np.arange(3)})
    table = source_recovery(tc, maps, truth)
    assert list(table["component"]) == [1, 2, 0]
    np.testing.assert_allclose(table["timecourse_r"], 1.0)
    np.testing.assert_allclose(table["map_r"], 1.0)
    # the decrease sits in the neg channel: negative signed map, anti-correlated time course
    assert table.loc[1, "map_r_signed"] == pytest.approx(-1.0)
    assert table.loc[1, "timecourse_r_signed"] == pytest.approx(-1.0)
    assert table["sign_consistent"].all()
    assert list(table["source_sign"]) == [1, -1, 1]


def test_source_recovery_fewer_components_and_errors():
    truth = _truth()
    maps = truth["source_maps"].rename(source="component").isel(component=[0, 2])
    tc = truth["source_timecourses"].rename(source="component").isel(component=[0, 2])
    table = source_recovery(tc, maps, truth)
    assert table.loc[1, "component"] == -1
    assert np.isnan(table.loc[1, "timecourse_r"])
    assert table.loc[1, "sign_consistent"] is None
    np.testing.assert_allclose(table.loc[[0, 2], "timecourse_r"], 1.0)
    with pytest.raises(ValueError, match="frames"):
        source_recovery(tc.isel(time=slice(0, 10)), maps, truth)
    with pytest.raises(ValueError, match="source_maps"):
        source_recovery(tc, maps, truth.drop_vars("source_maps"))
    with pytest.raises(ValueError, match="match_on"):
        source_recovery(tc, maps, truth, match_on="voxels")
    bad_sign = maps.expand_dims(sign=["up", "down"], axis=1)
    with pytest.raises(ValueError, match="pos"):
        source_recovery(tc, bad_sign, truth)


# ------------------------------------------------------------ compare_decompositions
@pytest.fixture(scope="module")
def small_standardized(tmp_path_factory, small_recording_path):
    from fusi_nmf.pipeline import Workspace

    ws = Workspace(tmp_path_factory.mktemp("work"), dataset=str(small_recording_path),
                   preset="small", progress=False)
    from fusi_nmf.simulate import load_ground_truth

    return ws.standardized(), load_ground_truth(small_recording_path)


def test_compare_decompositions_on_the_small_preset(small_standardized):
    from fusi_nmf.metrics import compare_decompositions

    standardized, truth = small_standardized
    table = compare_decompositions(standardized, truth, n_components=8, random_state=0)
    n_sources = truth.sizes["source"]
    assert table.shape == (n_sources, 3)
    assert list(table.columns) == ["NMF", "PCA", "FastICA"]
    assert table.index.name == "source"
    assert all(dtype == np.float64 for dtype in table.dtypes)
    values = table.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    # NMF finds the planted sources well above chance: the same analysis scored against
    # the truth circularly shifted by half the recording (matched |r| of unrelated
    # series is not 0: ~0.2-0.3 here)
    shifted = truth.copy()
    shifted["source_timecourses"] = truth["source_timecourses"].roll(
        time=truth.sizes["time"] // 2, roll_coords=False
    )
    chance = compare_decompositions(standardized, shifted, n_components=8, random_state=0)
    assert table["NMF"].mean() > chance["NMF"].mean() + 0.1, (table, chance)
    assert table["NMF"].max() > chance["NMF"].max()
    assert sorted(table.attrs["components"]) == ["FastICA", "NMF", "PCA"]
    assert len(set(table.attrs["components"]["PCA"])) == n_sources  # one to one
    # deterministic
    again = compare_decompositions(standardized, truth, n_components=8, random_state=0)
    pd.testing.assert_frame_equal(table, again)


def test_compare_decompositions_is_sign_blind_and_scores_missing_sources_zero(
    small_standardized,
):
    from fusi_nmf.metrics import compare_decompositions

    standardized, truth = small_standardized
    flipped = compare_decompositions(-standardized, truth, n_components=8, random_state=0)
    table = compare_decompositions(standardized, truth, n_components=8, random_state=0)
    # PCA of -X is PCA of X with flipped signs: the same |r|
    np.testing.assert_allclose(flipped["PCA"], table["PCA"], atol=1e-6)
    few = compare_decompositions(standardized, truth, n_components=2, random_state=0)
    assert ((few == 0).sum() == truth.sizes["source"] - 2).all()


def test_compare_decompositions_bad_input(small_standardized):
    from fusi_nmf.metrics import compare_decompositions

    standardized, truth = small_standardized
    with pytest.raises(TypeError, match="time"):
        compare_decompositions(standardized.values, truth, n_components=3)
    with pytest.raises(ValueError, match="n_components"):
        compare_decompositions(standardized, truth, n_components=0)
    with pytest.raises(ValueError, match="NaN"):
        compare_decompositions(standardized.where(standardized > 5), truth, n_components=3)


# ------------------------------------------------------------ chance levels
def _chance_truth(n_time=300, k=3, shape=(1, 30, 24), seed=0) -> xr.Dataset:
    """Sparse event time courses and Gaussian-blob maps, like the simulator's."""
    rng = np.random.default_rng(seed)
    events = (rng.random((n_time, k)) < 0.03).astype(float)
    kernel = np.exp(-np.arange(15) / 4.0)
    tc = np.stack([np.convolve(events[:, j], kernel)[:n_time] for j in range(k)], axis=1)
    yy, xx = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    maps = np.stack(
        [
            np.exp(-((yy - rng.uniform(4, 26)) ** 2 + (xx - rng.uniform(4, 20)) ** 2) / 18.0)
            for _ in range(k)
        ]
    )[:, None]
    return xr.Dataset(
        {
            "source_timecourses": (("time", "source"), tc),
            "source_maps": (("source", "z", "y", "x"), maps),
        }
    )


def _estimates(truth: xr.Dataset):
    tc = truth["source_timecourses"].rename(source="component")
    maps = truth["source_maps"].rename(source="component")
    return tc, maps


def test_chance_corrected_known_values():
    assert chance_corrected(1.0, 0.3) == 1.0
    assert chance_corrected(0.3, 0.3) == 0.0
    assert chance_corrected(0.65, 0.3) == pytest.approx(0.5)
    assert chance_corrected(0.2, 0.3) < 0
    assert np.isnan(chance_corrected(0.9, 1.0))


def test_perfect_estimate_scores_one_far_above_chance():
    truth = _chance_truth()
    others = [_chance_truth(seed=s) for s in (1, 2)]
    tc, maps = _estimates(truth)
    out = recovery_with_chance(tc, maps, truth, other_truths=others)
    assert out["timecourse_r"] == pytest.approx(1.0)
    assert out["map_r"] == pytest.approx(1.0)
    assert out["timecourse_chance"] < 0.5
    assert out["timecourse_corrected"] == pytest.approx(1.0)
    assert out["map_corrected"] == pytest.approx(1.0)
    # smooth blobs correlate with unrelated blobs: the map chance level is far from 0
    assert out["map_chance"] > 0.1


def test_estimate_of_another_recording_scores_near_chance():
    truth = _chance_truth()
    others = [_chance_truth(seed=s) for s in range(2, 12)]
    tc, maps = _estimates(_chance_truth(seed=1))  # outputs that belong to another recording
    out = recovery_with_chance(tc, maps, truth, other_truths=others, n_shifts=50)
    assert out["timecourse_r"] > 0.05  # matched |r| of unrelated signals is not 0 ...
    assert abs(out["timecourse_corrected"]) < 0.15  # ... but it is at chance
    assert abs(out["map_corrected"]) < 0.35


def test_time_shifted_estimate_scores_at_chance_and_shifted_back_perfect():
    truth = _chance_truth(n_time=400)
    tc, maps = _estimates(truth)
    shifted = tc.copy(data=np.roll(tc.values, 150, axis=0))
    out = recovery_with_chance(shifted, maps, truth, n_shifts=50)
    assert abs(out["timecourse_corrected"]) < 0.15
    assert np.isnan(out["map_chance"])  # no other truths: no map chance level


def test_missing_component_counts_zero_and_bad_inputs():
    truth = _chance_truth(k=3)
    tc, maps = _estimates(truth)
    out = recovery_with_chance(tc.isel(component=[0, 1]), maps.isel(component=[0, 1]), truth)
    assert out["timecourse_r"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="frames"):
        recovery_with_chance(tc.isel(time=slice(0, 100)), maps, truth)
    with pytest.raises(ValueError, match="n_shifts"):
        recovery_with_chance(tc, maps, truth, n_shifts=0)


# --------------------------------------------------------------------------- motion

def test_align_to_truth_removes_constant_offset():
    truth = xr.DataArray(
        np.column_stack([np.linspace(0, 0.2, 5), np.linspace(0.1, -0.1, 5),
                         np.linspace(-1, 1, 5)]),
        dims=("time", "parameter"), coords={"parameter": ["tx", "ty", "rz"]},
    )
    # estimate relative to a template that sits at W0 = (0.05, -0.03, 0.7 deg):
    # M_t = T_t o W0^-1, i.e. R_M = R_T R0^T, t_M = t_T - R_M t0
    r0 = np.radians(0.7)
    t0 = np.array([0.05, -0.03])
    est = truth.copy()
    for i in range(5):
        a = np.radians(truth.values[i, 2]) - r0
        r_m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        est.values[i, :2] = truth.values[i, :2] - r_m @ t0
        est.values[i, 2] = np.degrees(a)
    np.testing.assert_allclose(align_to_truth(est, truth).values, truth.values, atol=1e-10)


def _motion(n=50, seed=0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        np.cumsum(rng.normal(0, 0.01, (n, 3)), axis=0),
        dims=("time", "parameter"),
        coords={"time": 0.3 * np.arange(n), "parameter": ["tx", "ty", "rz"]},
    )


def test_motion_error_table_separates_offset_from_trace_error():
    est = _motion()
    table = motion_error_table(xr.Dataset({"parameters": est}), est + 0.05)
    assert list(table.index) == ["tx", "ty", "rz"]
    np.testing.assert_allclose(table["rmse"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(table["rmse_offset_removed"], 0.0, atol=1e-12)
    np.testing.assert_allclose(table["r"], 1.0)
    assert table.loc["rz", "units"] == "deg" and table.loc["tx", "units"] == "mm"


def test_motion_error_table_trace_error_matches_a_direct_computation():
    truth = _motion(seed=1)
    noise = _motion(seed=2) - _motion(seed=2).mean("time")
    est = (truth + noise + 0.2).sel(parameter=["rz", "tx"])  # subset, other order
    table = motion_error_table(est, xr.Dataset({"motion": truth}))
    assert list(table.index) == ["rz", "tx"]
    for p in ("rz", "tx"):
        d = noise.sel(parameter=p).values
        np.testing.assert_allclose(table.loc[p, "rmse_offset_removed"], np.sqrt(np.mean(d**2)))
        np.testing.assert_allclose(table.loc[p, "max_abs_error"], np.abs(d).max())
        np.testing.assert_allclose(
            table.loc[p, "r"], np.corrcoef(est.sel(parameter=p), truth.sel(parameter=p))[0, 1]
        )
        t = truth.sel(parameter=p).values
        assert table.loc[p, "true_range"] == pytest.approx(t.max() - t.min())


def test_motion_error_table_errors():
    est = _motion()
    with pytest.raises(ValueError, match="frames"):
        motion_error_table(est, est.isel(time=slice(0, 10)))
    with pytest.raises(ValueError, match="share no motion parameter"):
        motion_error_table(est, est.assign_coords(parameter=["a", "b", "c"]))
    with pytest.raises(ValueError, match="'parameters'"):
        motion_error_table(xr.Dataset({"x": est}), est)
    with pytest.raises(ValueError, match="dims"):
        motion_error_table(est.rename(parameter="p"), est)
    with pytest.raises(TypeError, match="truth"):
        motion_error_table(est, est.values)


# ------------------------------------------------------------- shipped measurements
def test_packaged_cleaning_measurement_is_readable() -> None:
    table = validation_table("cleaning")
    assert {"reference (ConfUSIus example)", "raw", "registered", "default chain"} <= set(
        table.index
    )
    for mode in ("temporal", "spatial"):
        for col in ("timecourse_r", "timecourse_chance", "timecourse_corrected",
                    "timecourse_r_ceiling", "map_r", "map_chance", "map_corrected"):
            assert f"{mode}_{col}" in table.columns
    # the shipped numbers belong to the shipped defaults, on seeds they were not tuned on
    assert str(CLEAN_DEFAULTS) in table.attrs["note"]
    assert "seeds=[10, 11, 12]" in table.attrs["note"]
    chain, ref = table.loc["default chain"], table.loc["reference (ConfUSIus example)"]
    assert chain["temporal_timecourse_corrected"] >= ref["temporal_timecourse_corrected"] + 0.1
    assert (table["temporal_timecourse_r"] > table["temporal_timecourse_chance"]).all()
    sweep = validation_table("snr_sweep")
    assert {"amplitude", "noise_sd", "analysis", "mode", "timecourse_corrected",
            "timecourse_chance", "timecourse_r_ceiling"} <= set(sweep.columns)
    with pytest.raises(ValueError, match="snr_sweep"):
        validation_table("cleaning_recovery")


def test_shipped_measurements_have_one_reader() -> None:
    """Only metrics reads fusi_nmf/data: a second reader could drift from validation_table."""
    package = Path(__file__).resolve().parents[1] / "fusi_nmf"
    for data_file in sorted((package / "data").glob("*.tsv")):
        readers = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
                   if data_file.name in p.read_text(encoding="utf-8")]
        assert readers == ["metrics.py"], (data_file.name, readers)
