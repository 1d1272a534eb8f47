"""Model selection: bi-cross-validation, stability, recommendation, and a real sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fusi_nmf import selection


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


def test_split_half_stability_on_planted_data():
    table = selection.split_half_stability(_low_rank(0), [2, 3], max_iter=100)
    assert list(table["n_components"]) == [2, 3]
    assert ((table["split_half"] > 0.5) & (table["split_half"] <= 1.0)).all()
    assert (table["split_half_min"] <= table["split_half"]).all()


def test_find_sweep_notebook(tmp_path, monkeypatch):
    found = selection.find_sweep_notebook()
    assert found.name == "04_temporal_nmf.ipynb" and found.is_file()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        selection.find_sweep_notebook(tmp_path / "nope.ipynb")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"searched .*sweep_notebook="):
        selection.find_sweep_notebook(name="99_missing.ipynb")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        selection.component_sweep(tmp_path / "work", [2], [0], notebook=tmp_path / "x.ipynb")


# ------------------------------------------------------- a real sweep of chapter 4
@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """Chapter 4 executed twice by papermill (k=2, seeds 0 and 1, random init), small preset."""
    work = tmp_path_factory.mktemp("sweep") / "work"
    sweep_dir = selection.component_sweep(
        work, [2], [0, 1], jobs=2, preset="small", max_iter=100, progress=False
    )
    return work, sweep_dir


@pytest.mark.slow
def test_component_sweep_records_table_and_fits(small_sweep):
    work, sweep_dir = small_sweep
    assert sweep_dir.parent == work.resolve() / "sweeps"
    assert (sweep_dir / "runs.tsv").is_file()
    table = selection.sweep_table(sweep_dir)
    assert list(table["n_components"]) == [2, 2]
    assert list(table["random_state"]) == [0, 1]
    assert table["preset"].eq("small").all()
    assert table["init"].eq("random").all()  # component_sweep's default: seeds matter
    assert ((table["explained_variance"] > 0) & (table["explained_variance"] < 1)).all()
    assert (table["reconstruction_err"] > 0).all()

    fits = selection.load_sweep_fits(sweep_dir)
    assert sorted(fits) == [(2, 0), (2, 1)]
    maps, tcs = fits[(2, 0)]["maps"], fits[(2, 0)]["timecourses"]
    assert maps.sizes["component"] == 2 and tcs.dims == ("time", "component")
    assert tcs.sizes["time"] == 300 and tcs.sizes["component"] == 2
    # the saved maps are the fit the run made: same as the cached fit in the work dir
    from fusi_nmf.pipeline import Workspace

    cached = Workspace(work, preset="small", progress=False).nmf(
        "temporal", n_components=2, max_iter=100, random_state=0, init="random"
    )
    np.testing.assert_allclose(
        tcs.values, cached.timecourses.transpose("time", "component").values, rtol=1e-4,
        atol=1e-5
    )
    # random restarts: the two seeds start from different points and end in different fits
    other = fits[(2, 1)]["timecourses"].transpose("time", "component").values
    assert not np.allclose(tcs.values, other, rtol=1e-3, atol=1e-4)
    stab = selection.stability(fits)
    assert stab.loc[0, "n_pairs"] == 1 and 0.0 < stab.loc[0, "stability"] <= 1.0


@pytest.mark.slow
def test_component_sweep_resumes_without_work(small_sweep):
    work, sweep_dir = small_sweep
    records = sorted((sweep_dir / "runs").glob("*/record.json"))
    before = {p: os.stat(p).st_mtime_ns for p in records}
    again = selection.component_sweep(
        work, [2], [0, 1], jobs=2, preset="small", max_iter=100, progress=False
    )
    assert again == sweep_dir
    assert {p: os.stat(p).st_mtime_ns for p in records} == before
    assert all(json.loads(p.read_text())["status"] == "ok" for p in records)


def test_component_sweep_rejects_bad_grids(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        selection.component_sweep(tmp_path, [], [0])
    with pytest.raises(TypeError, match="integers"):
        selection.component_sweep(tmp_path, [2.5], [0])
    with pytest.raises(ValueError, match="set by component_sweep"):
        selection.component_sweep(tmp_path, [2], [0], n_components=3)


def test_component_sweep_warns_when_the_init_ignores_the_seed(tmp_path):
    # The warning comes before any run; the bad preset then stops the sweep early.
    with pytest.warns(UserWarning, match="init='nndsvda' does not depend on the seed"), \
            pytest.raises(ValueError, match="preset"):
        selection.component_sweep(tmp_path, [2], [0, 1], init="nndsvda", preset="nope")
