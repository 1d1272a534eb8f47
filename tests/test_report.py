"""fusi_nmf.report: the chapters' computed readings, on data whose answer is known.

A small synthetic recording is built from three sources with known, non-overlapping maps
and independent sparse time courses (one of them a decrease), plus a global fluctuation
over the whole field of view and noise; the real estimators (NMF, PCA, FastICA) run on
it, and the readings must name the right ground truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fusi_nmf import report
from fusi_nmf.datasets import recording_path
from fusi_nmf.decomposition import NMF
from fusi_nmf.signal import split_sign, standardize
from fusi_nmf.simulate import load_ground_truth

NT, NY, NX = 400, 16, 24


def _synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(NT) * 0.3
    yy, xx = np.mgrid[0:NY, 0:NX]
    centres = [(4, 4), (11, 12), (5, 19)]
    maps = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0) for cy, cx in centres])
    kernel = np.exp(-np.arange(20) / 4.0)
    courses = []
    for _ in centres:
        events = (rng.random(NT) < 0.04) * rng.uniform(1, 2, NT)
        courses.append(np.convolve(events, kernel)[:NT])
    courses = np.stack(courses, axis=1)
    sign = np.array([1.0, -1.0, 1.0])
    global_course = np.convolve(rng.normal(size=NT), np.ones(15) / 15, mode="same")
    data = (courses * sign) @ maps.reshape(3, -1)
    data += 0.6 * global_course[:, None] * np.ones((1, NY * NX))
    data += 0.05 * rng.normal(size=data.shape)
    coords = {"time": ("time", t, {"units": "s"}), "z": [0.0],
              "y": ("y", np.arange(NY) * 0.05, {"units": "mm"}),
              "x": ("x", np.arange(NX) * 0.1, {"units": "mm"})}
    rec = xr.DataArray(10 + data.reshape(NT, 1, NY, NX).astype("float32"),
                       dims=("time", "z", "y", "x"), coords=coords, name="power_doppler")
    truth = xr.Dataset(
        {
            "source_timecourses": (("time", "source"), courses * sign),
            "source_maps": (("source", "z", "y", "x"), maps[:, None]),
            "source_sign": (("source",), sign),
            "global_fluctuation": (("time",), global_course),
            "surge": (("time",), np.zeros(NT)),
            "drift": (("time",), np.ones(NT)),
        },
        coords={"time": t, "source": np.arange(3), "z": [0.0], "y": coords["y"][1],
                "x": coords["x"][1]},
    )
    return rec, truth


@pytest.fixture(scope="module")
def fitted():
    rec, truth = _synthetic()
    z = standardize(rec)
    split = split_sign(z)
    model = NMF(n_components=5, random_state=0, max_iter=400)
    tc = model.fit_transform(split)
    return rec, truth, z, split, model.maps_, tc


def test_hoyer_sparsity_bounds_and_scale_invariance():
    x = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 3.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0]])
    s = report.hoyer_sparsity(x, axis=1)
    np.testing.assert_allclose(s[:2], [0.0, 1.0])
    assert 0 < s[2] < 1
    np.testing.assert_allclose(report.hoyer_sparsity(7 * x, axis=1), s)


def test_ranges_reads_like_prose():
    assert report._ranges([1, 2, 3, 5]) == "1-3 and 5"
    assert report._ranges([4]) == "4"
    assert report._ranges([1, 3, 4, 6]) == "1, 3-4 and 6"


def test_readings_name_sources_and_the_global_signal(fitted):
    _, truth, _, _, maps, tc = fitted
    table = report.component_readings(maps, tc, truth=truth)
    assert list(table.index) == [1, 2, 3, 4, 5]  # numbered from 1
    assert 0 < table.attrs["chance_r"] < 0.5
    found = set(table["truth"])
    assert {"source 1", "source 2", "source 3"} <= found
    assert "global fluctuation" in found
    # the global fluctuation covers the field of view, a source is compact
    glob = table[table["truth"] == "global fluctuation"]["extent %"].min()
    src = table[table["truth"].str.startswith("source")]["extent %"].max()
    assert glob > 2 * src
    # the decreasing source 2 sits on the neg channel
    assert table.loc[table["truth"] == "source 2", "pos %"].max() < 50
    text = report.describe_components(table)
    assert "global fluctuation" in text and "source 2" in text and "chance" in text


def test_readings_without_truth_judge_localisation_and_motion(fitted):
    _, _, _, split, maps, tc = fitted
    fd = xr.Dataset({"framewise_displacement": ("time", np.abs(tc.isel(component=0).values))})
    rep = report.split_half_r(split, maps, random_state=0, max_iter=400)
    assert rep.shape == (5,) and (rep <= 1.0 + 1e-9).all()
    assert np.median(rep) > 0.7  # the planted structure comes back in both halves
    table = report.component_readings(maps, tc, motion=fd, reproducibility=rep)
    assert "truth" not in table
    assert table["FD r"].iloc[0] == pytest.approx(1.0)
    text = report.describe_components(table)
    assert "Most motion-linked: component 1" in text and "Most localised" in text


def test_alternatives_and_recovery_by_method(fitted):
    _, truth, z, _, maps, tc = fitted
    fits = {"NMF": (tc, maps)} | report.fit_alternatives(z, 5, random_state=0)
    assert list(fits) == ["NMF", "PCA", "temporal ICA", "spatial ICA"]
    table = report.recovery_by_method(fits, truth)
    assert list(table.index) == [1, 2, 3]
    assert table.shape == (3, 8)
    # non-overlapping sparse maps: spatial ICA and NMF find them
    assert table[("spatial ICA", "map |r|")].min() > 0.8
    assert table[("NMF", "map |r|")].min() > 0.8
    columns = report.truth_map_columns(truth, fits, table)
    assert list(columns) == ["truth", *fits]
    for method in fits:  # flipped to correlate positively with the true footprint
        for s in range(3):
            a = columns[method].isel(source=s).values.ravel()
            b = truth["source_maps"].isel(source=s).values.ravel()
            assert np.corrcoef(a, b)[0, 1] > 0


def test_fewer_components_than_sources_leave_blank_maps(fitted):
    _, truth, z, _, _, _ = fitted
    fits = report.fit_alternatives(z, 2, random_state=0)
    table = report.recovery_by_method(fits, truth)
    assert (table.attrs["components"]["PCA"].count(0)) == 1  # one source unmatched
    columns = report.truth_map_columns(truth, fits, table)
    unmatched = table.attrs["components"]["PCA"].index(0)
    assert float(abs(columns["PCA"].isel(source=unmatched)).max()) == 0.0
    assert columns["PCA"].sizes["source"] == 3


def test_matched_to_truth_relabels_for_the_component_figure(fitted):
    _, truth, _, _, maps, tc = fitted
    out = report.matched_to_truth(maps, tc, truth)
    assert len(out["row_labels"]) == 3
    assert all(label.startswith(f"source {i + 1} / component ")
               for i, label in enumerate(out["row_labels"]))
    assert list(out["truth"]["component"].values) == list(out["maps"]["component"].values)
    np.testing.assert_array_equal(out["truth"]["time"].values, tc["time"].values)


def test_mode_agreement_and_factor_summary(fitted):
    _, truth, _, split, maps, tc = fitted
    spatial = NMF(n_components=5, mode="spatial", random_state=0, max_iter=400)
    tc_s = spatial.fit_transform(split)
    pairs = report.mode_agreement(maps, tc, spatial.maps_, tc_s)
    assert sorted(pairs["a"]) == [1, 2, 3, 4, 5]
    assert pairs["map r"].min() > 0.9  # the same factorisation, transposed
    row_t = report.factor_summary(tc, maps, truth=truth)
    row_s = report.factor_summary(tc_s, spatial.maps_, truth=truth)
    # the scale moves between the factors, the (scale-free) sparsity does not
    assert row_t["map max"] / row_s["map max"] > 2
    assert row_t["map sparsity"] == pytest.approx(row_s["map sparsity"], abs=0.05)


def test_without_paths_and_cleaning_view():
    rec, _ = _synthetic()
    rec.attrs = {"source_file": "/tmp/x/sub-01_pwd.nii.gz", "task": "rest/odd"}
    shown = report.without_paths(rec)
    assert shown.attrs == {"source_file": "sub-01_pwd.nii.gz", "task": "rest/odd"}
    assert rec.attrs["source_file"].startswith("/tmp")  # the original is untouched
    from fusi_nmf.metrics import validation_table

    view, steps = report.cleaning_view(validation_table("cleaning"))
    rows = list(view.index)
    assert rows.index("raw") < rows.index("registered") < rows.index(steps[0])
    assert rows[-1] == "default chain"
    assert steps and all(s.startswith("+ ") for s in steps)
    # every recovery number stands beside its chance level
    assert isinstance(view.columns, pd.MultiIndex)
    measures = list(view.columns.get_level_values("measure"))
    assert measures.count("time course |r|") == 2 and measures.count("chance") == 2


def test_shift_chance_is_low_for_unrelated_and_beaten_by_a_real_match():
    rng = np.random.default_rng(3)
    ref = np.convolve(rng.normal(size=500), np.ones(10), mode="same")[:, None]
    chance = report.shift_chance_r(ref + 0.1 * rng.normal(size=(500, 1)), ref)
    assert chance < 0.5
    assert abs(np.corrcoef(ref[:, 0], ref[:, 0] + 0.1 * rng.normal(size=500))[0, 1]) > chance


def _other_truth(truth: xr.Dataset, shift: int) -> xr.Dataset:
    """Another recording's ground truth: sources moved across the field of view."""
    maps = np.roll(truth["source_maps"].values, shift, axis=-1)
    return truth.assign(source_maps=(truth["source_maps"].dims, maps))


def test_recovery_table_puts_chance_beside_every_score(fitted):
    _, truth, _, _, maps, tc = fitted
    others = [_other_truth(truth, 8), _other_truth(truth, 16)]
    perfect_tc = truth["source_timecourses"].rename(source="component")
    perfect_maps = truth["source_maps"].rename(source="component")
    table = report.recovery_table({"NMF": (tc, maps), "truth": (perfect_tc, perfect_maps)},
                                  truth, others)
    assert list(table.columns) == list(report.RECOVERY_COLUMNS)
    assert table.loc["truth", "time course |r|"] == pytest.approx(1.0)
    assert table.loc["truth", "time course corrected"] == pytest.approx(1.0)
    assert table.loc["truth", "map corrected"] == pytest.approx(1.0)
    nmf = table.loc["NMF"]
    # the fit beats both chance levels, which are well above 0 but below the fit
    assert 0 < nmf["time course chance"] < nmf["time course |r|"]
    assert 0 < nmf["map chance"] < nmf["map |r|"]
    text = report.describe_recovery(nmf, "NMF")
    assert "by chance" in text and f"{nmf['map chance']:.2f}" in text
    # without other truths the map has no chance level, and the reading says so
    bare = report.recovery_table({"NMF": (tc, maps)}, truth).loc["NMF"]
    assert np.isnan(bare["map chance"])
    assert "no chance level" in report.describe_recovery(bare)


def test_readings_and_factor_summary_carry_map_chance(fitted):
    _, truth, _, _, maps, tc = fitted
    others = [_other_truth(truth, 8), _other_truth(truth, 16)]
    table = report.component_readings(maps, tc, truth=truth, other_truths=others)
    chance = table.attrs["map_chance_r"]
    assert 0 < chance < table["map |r|"].max()
    assert f"{chance:.2f}" in report.describe_components(table)
    row = report.factor_summary(tc, maps, truth=truth, other_truths=others)
    assert row["source map chance"] < row["source map |r|"]
    assert row["source time course chance"] < row["source time course |r|"]


def test_snr_sweep_reading_is_computed_from_the_table():
    from fusi_nmf.metrics import validation_table

    table = validation_table("snr_sweep")
    text = report.describe_snr_sweep(table)
    seeds = table.attrs["note"].split("seeds=[")[1].split("]")[0]
    assert f"seeds {seeds}" in text
    # flip the analyses: the reading must now find the default worse
    flipped = table.assign(analysis=table["analysis"].map({"default": "reference",
                                                           "reference": "default"}))
    worse = report.describe_snr_sweep(flipped)
    assert "worse than the reference at peaks 0.10-0.20" in worse
    assert "peaks 0.20-0.35 (noise s.d. 0.03, 0.063, 0.12)" in worse.split("worse")[1]
    assert "worse than the reference at no cell" in text
    with pytest.raises(ValueError, match="mode"):
        report.describe_snr_sweep(table, mode="both")


def test_chance_truths_are_other_seeds_of_the_same_preset(small_recording_path):
    own = load_ground_truth(recording_path("simulated", preset="small", seed=0))
    others = report.chance_truths("small", 0, n=2)
    assert len(others) == 2
    for other in others:
        assert other["source_maps"].shape == own["source_maps"].shape
        assert not np.allclose(other["source_maps"].values, own["source_maps"].values)
    assert not np.allclose(others[0]["source_maps"].values, others[1]["source_maps"].values)
    # exactly the ground truth of those recordings, without simulating them
    for i, other in enumerate(others, start=1):
        truth = load_ground_truth(recording_path("simulated", preset="small", seed=i))
        for name in ("source_maps", "source_timecourses", "source_sign"):
            np.testing.assert_array_equal(other[name].values, truth[name].values)
        # the same frames; the written dataset puts them on converter-like onsets
        assert other.sizes["time"] == truth.sizes["time"]
    with pytest.raises(ValueError, match="positive integer"):
        report.chance_truths("small", 0, n=0)
