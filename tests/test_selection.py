"""Model selection: bi-cross-validation, stability, recommendation, the in-process comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.exceptions import ConvergenceWarning

from fusi_nmf import selection
from fusi_nmf.decomposition import NMF
from fusi_nmf.pipeline import PipelineConfig, Workspace


def _low_rank(seed: int, rank: int = 3) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    W = rng.random((200, rank))
    H = rng.random((rank, 160)) ** 2
    X = np.abs(W @ H + 0.3 * rng.standard_normal((200, 160)))
    return xr.DataArray(X, dims=("time", "voxel"))


@pytest.mark.parametrize("seed", [0, 1])
def test_bicv_minimum_at_true_rank_then_rises(seed):
    curve = selection.bicv_curve(_low_rank(seed), range(1, 7), repeats=3, random_state=seed)
    err = curve.set_index("n_components")["heldout_error"]
    assert err.idxmin() == 3
    assert err[1] > err[2] > err[3]
    assert err[4] > err[3] and err[6] > err[3]
    # the training error would keep falling: bi-CV is what turns around
    assert list(curve.columns) == ["n_components", "heldout_error", "heldout_error_sd"]


def test_bicv_blocks_keep_voxel_channels_together_and_reject_bad_input():
    data = xr.DataArray(
        np.random.default_rng(0).random((40, 2, 1, 6, 4)),
        dims=("time", "sign", "z", "y", "x"),
        coords={"y": np.arange(6) * 0.1, "x": np.arange(4) * 0.1, "sign": ["pos", "neg"]},
    )
    groups = selection._column_groups(data, block_mm=0.2).reshape(2, 1, 6, 4)
    np.testing.assert_array_equal(groups[0], groups[1])  # pos and neg of a voxel share a tile
    assert len(np.unique(groups)) == 3 * 2  # 0.2 mm tiles: 3 along y, 2 along x
    assert 0 < selection.bicv_error(data, 2, block_frames=5, block_mm=0.2) < 2
    with pytest.raises(ValueError, match="non-negative"):
        selection.bicv_error(data - 1, 2)
    with pytest.raises(ValueError, match="time"):
        selection.bicv_error(data.rename(time="frame"), 2)
    with pytest.raises(ValueError, match="exceeds"):
        selection.bicv_error(data, 30)


def _fit(seed: int, k: int = 4) -> dict[str, xr.DataArray]:
    rng = np.random.default_rng(seed)
    maps = xr.DataArray(
        rng.random((k, 2, 1, 8, 6)),
        dims=("component", "sign", "z", "y", "x"),
        coords={"component": np.arange(k), "sign": ["pos", "neg"]},
    )
    tcs = xr.DataArray(rng.random((30, k)), dims=("time", "component"),
                       coords={"component": np.arange(k)})
    return {"maps": maps, "timecourses": tcs}


def test_stability_of_identical_and_permuted_fits_is_one():
    fit = _fit(0)
    perm = [2, 0, 3, 1]
    permuted = {
        "maps": fit["maps"].isel(component=perm).assign_coords(component=np.arange(4)),
        "timecourses": fit["timecourses"].isel(component=perm),
    }
    other = _fit(5)
    table = selection.stability(
        {(4, 0): fit, (4, 1): fit, (4, 2): permuted, (3, 0): _fit(1, 3), (3, 1): _fit(2, 3)}
    ).set_index("n_components")
    assert table.loc[4, "n_pairs"] == 3
    assert table.loc[4, "stability"] == pytest.approx(1.0)
    assert table.loc[4, "stability_min"] == pytest.approx(1.0)
    # independent random maps are far from reproducible
    assert table.loc[3, "stability"] < 0.5
    single = selection.stability({(4, 0): fit, (4, 9): other}).iloc[0]
    assert single["stability"] < 0.5


def test_recommend_k_rule():
    table = pd.DataFrame(
        {
            "n_components": [2, 4, 6, 8, 10],
            "heldout_error": [0.30, 0.1995, 0.199, 0.198, 0.25],
            "stability": [0.99, 0.70, 0.90, 0.95, 0.99],
        }
    )
    # candidates within 1 % of 0.198: 4, 6, 8; the smallest stable one (>= 0.8) is 6
    choice = selection.recommend_k(table.sample(frac=1, random_state=0))
    assert choice["n_components"] == 6
    assert choice["candidates"] == [4, 6, 8] and choice["stable"] == [6, 8]
    assert "k=6" in choice["reason"]
    # nothing stable enough: the smallest candidate
    assert selection.recommend_k(table, stability_threshold=0.999)["n_components"] == 4
    # a tighter tolerance leaves only the minimum
    assert selection.recommend_k(table, tolerance=0.0)["n_components"] == 8
    # another reproducibility column; NaN counts as not reproducible
    table["split_half"] = [np.nan, np.nan, 0.5, 0.85, 0.9]
    assert selection.recommend_k(table, stability_column="split_half")["n_components"] == 8
    with pytest.raises(ValueError, match="missing"):
        selection.recommend_k(table.drop(columns="heldout_error"))


def test_recovery_by_k_counts_a_missing_source_as_zero():
    rng = np.random.default_rng(0)
    tcs = rng.standard_normal((50, 2))
    maps = rng.random((2, 1, 5, 4))
    truth = xr.Dataset(
        {
            "source_timecourses": (("time", "source"), tcs),
            "source_maps": (("source", "z", "y", "x"), maps),
        },
        coords={"source": [0, 1]},
    )
    # one component, equal to source 0: source 1 has no component
    fit = {
        "maps": xr.DataArray(maps[:1], dims=("component", "z", "y", "x"),
                             coords={"component": [0]}),
        "timecourses": xr.DataArray(tcs[:, :1], dims=("time", "component"),
                                    coords={"component": [0]}),
    }
    table = selection.recovery_by_k({(1, 0): fit, (1, 1): fit}, truth)
    row = table.set_index("n_components").loc[1]
    assert row["timecourse_r"] == pytest.approx(0.5)
    assert row["map_r"] == pytest.approx(0.5)
    assert row["timecourse_r_min"] == 0.0
    # chance beside the scores: white-noise truth shifted in time is unrelated
    assert 0 < row["timecourse_chance"] < 0.5 * row["timecourse_r"]
    assert np.isnan(row["map_chance"])  # no other recordings given
    other = truth.assign(source_maps=(("source", "z", "y", "x"), rng.random((2, 1, 5, 4))))
    row = selection.recovery_by_k({(1, 0): fit}, truth, [other]).iloc[0]
    assert 0 < row["map_chance"] < row["map_r"]
    assert row["map_corrected"] == pytest.approx((row["map_r"] - row["map_chance"])
                                                 / (1 - row["map_chance"]))


def test_split_half_stability_on_planted_data():
    table = selection.split_half_stability(_low_rank(0), [2, 3], max_iter=100)
    assert list(table["n_components"]) == [2, 3]
    assert ((table["split_half"] > 0.5) & (table["split_half"] <= 1.0)).all()
    assert (table["split_half_min"] <= table["split_half"]).all()


# ------------------------------------------- the in-process comparison on the small preset
@pytest.fixture(scope="module")
def small_selection(tmp_path_factory, small_recording_path):
    """select_components on the small simulated recording: k 2 and 3, seeds 0 and 1."""
    work = tmp_path_factory.mktemp("selection") / "work"
    ws = Workspace(work, preset="small", max_iter=100, progress=False)
    ds = selection.select_components(ws, [3, 2], [1, 0], bicv_max_iter=50, block_frames=10)
    return ws, ds


@pytest.mark.slow
def test_select_components_dataset_holds_every_view(small_selection):
    _, ds = small_selection
    assert list(ds["n_components"].values) == [2, 3]  # sorted
    assert list(ds["random_state"].values) == [0, 1]
    assert ds["reconstruction_err"].dims == ("n_components", "random_state")
    for name in ("heldout_error", "stability", "stability_min", "timecourse_r", "map_r"):
        assert ds[name].dims == ("n_components",), name
        assert np.isfinite(ds[name]).all(), name
    assert ds.attrs["recommended_k"] in (2, 3)
    assert set(ds.attrs["candidates"]) <= {2, 3} and ds.attrs["has_ground_truth"] == 1
    assert ds.attrs["init"] == "random" and ds.attrs["max_iter"] == 100
    assert ds.attrs["tol"] == selection.SELECTION_TOL == 1e-3
    # more components fit better, on every seed
    err = ds["reconstruction_err"]
    assert (err.sel(n_components=3) < err.sel(n_components=2)).all()


@pytest.mark.slow
def test_select_components_numbers_are_the_fits_and_tables_they_claim(small_selection):
    ws, ds = small_selection
    data = ws.split()
    # one fit, redone by hand with the estimator: the same error
    model = NMF(n_components=3, init="random", random_state=1, max_iter=100, mask=ws.mask(),
                tol=selection.SELECTION_TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data)
    np.testing.assert_allclose(
        ds["reconstruction_err"].sel(n_components=3, random_state=1), model.reconstruction_err_,
        rtol=1e-6,
    )
    # random restarts: the two seeds end in different fits
    assert ds["reconstruction_err"].sel(n_components=3).std() > 0
    # held-out error: bicv_curve with the same settings
    curve = selection.bicv_curve(data, [2, 3], max_iter=50, block_frames=10, block_mm=0.5)
    np.testing.assert_allclose(ds["heldout_error"].values, curve["heldout_error"], rtol=1e-6)
    # stability and recovery: the table functions on the cached fits
    fits = {}
    for k, seed in [(2, 0), (2, 1), (3, 0), (3, 1)]:
        r = ws.nmf("temporal", n_components=k, random_state=seed, init="random",
                   tol=selection.SELECTION_TOL)
        fits[(k, seed)] = {"maps": r.maps, "timecourses": r.timecourses}
    stab = selection.stability(fits).set_index("n_components")
    np.testing.assert_allclose(ds["stability"].values, stab["stability"], rtol=1e-9)
    rec = selection.recovery_by_k(fits, ws.ground_truth()).set_index("n_components")
    np.testing.assert_allclose(ds["timecourse_r"].values, rec["timecourse_r"], rtol=1e-9)


@pytest.mark.slow
def test_select_components_parallel_threads_give_the_same_numbers(small_selection, tmp_path):
    _, serial = small_selection
    ws = Workspace(tmp_path / "work", preset="small", max_iter=100, progress=False)
    def convergence_filters():
        return [f for f in warnings.filters if f[2] is ConvergenceWarning]

    filters = convergence_filters()
    parallel = selection.select_components(
        ws, [2, 3], [0, 1], bicv_max_iter=50, block_frames=10, n_jobs=2
    )
    # the threads left no "ignore ConvergenceWarning" behind in the caller's filters
    assert convergence_filters() == filters
    xr.testing.assert_allclose(parallel, serial, rtol=1e-6)
    assert parallel.attrs == serial.attrs
    # a second call reads every fit from the workspace cache: no new cache file
    files = sorted(p.name for p in (tmp_path / "work").iterdir())
    selection.select_components(ws, [2, 3], [0, 1], bicv_max_iter=50, block_frames=10)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == files


def test_select_components_rejects_bad_grids_and_warns_on_seedless_init(tmp_path):
    ws = Workspace(tmp_path, preset="small", progress=False)
    with pytest.raises(ValueError, match="empty"):
        selection.select_components(ws, [], [0])
    with pytest.raises(TypeError, match="integers"):
        selection.select_components(ws, [2.5], [0])
    with pytest.raises(ValueError, match="n_jobs"):
        selection.select_components(ws, [2], [0], n_jobs=0)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        selection.select_components(ws, [2], [0], tol=0)
    with pytest.raises(ValueError, match="bicv_repeats"):
        selection.select_components(ws, [2], [0], bicv_repeats=0)


@pytest.mark.slow
def test_select_components_warns_that_a_deterministic_init_makes_stability_trivial(
    small_selection,
):
    ws, _ = small_selection
    with pytest.warns(UserWarning, match="init='nndsvda' does not depend on the seed"):
        ds = selection.select_components(ws, [2], [0, 1], init="nndsvda", bicv_max_iter=20)
    # and it is trivial: both seeds give the same fit
    assert float(ds["stability"].sel(n_components=2)) == pytest.approx(1.0, abs=1e-6)


def test_default_grid_includes_the_chapters_k():
    assert PipelineConfig().n_components in selection.DEFAULT_KS
