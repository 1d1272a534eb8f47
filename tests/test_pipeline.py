"""The cached pipeline and the ``run`` command, end to end on the small simulated recording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusi_nmf.cli import main
from fusi_nmf.io import load_nifti
from fusi_nmf.pipeline import PipelineConfig, Workspace

SMALL = {"preset": "small", "n_components": 4, "max_iter": 200}


def test_run_command_writes_every_output(tmp_path: Path, small_recording_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--simulate",
            "--preset",
            "small",
            "--n-components",
            "4",
            "--max-iter",
            "200",
            "--mode",
            "both",
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["n_components"] == 4
    assert set(summary["results"]) == {"temporal", "spatial"}
    assert summary["shape"] == {"time": 300, "z": 1, "y": 48, "x": 40}
    for stage in ("load", "registration", "standardized", "nmf_temporal", "nmf_spatial"):
        assert summary["timings_s"][stage] >= 0
    for mode in ("temporal", "spatial"):
        res = summary["results"][mode]
        assert res["n_iter"] >= 1 and 0 < res["explained_variance"] <= 1
        maps = load_nifti(out / f"maps_{mode}.nii.gz")
        assert maps.dims == ("component", "sign", "z", "y", "x")
        assert maps.sizes["component"] == 4 and list(maps["sign"].values) == ["pos", "neg"]
        assert float(maps.min()) >= 0
        tcs = pd.read_csv(out / f"timecourses_{mode}.tsv", sep="\t", index_col="time")
        assert set(tcs.pop("censored").unique()) <= {0, 1}  # frames censoring interpolated
        assert tcs.shape == (300, 4) and (tcs.to_numpy() >= 0).all()
        np.testing.assert_allclose(tcs.index[:2], [10.608, 10.908], atol=1e-4)
    motion = pd.read_csv(out / "motion.tsv", sep="\t", index_col="time")
    assert list(motion.columns) == ["tx", "ty", "rz", "framewise_displacement"]


def test_stages_are_cached_and_verified(tmp_path: Path, small_recording_path: Path) -> None:
    first = Workspace(tmp_path, progress=False, **SMALL)
    a = first.nmf("temporal")
    assert "nmf_temporal" in first.timings

    second = Workspace(tmp_path, progress=False, **SMALL)
    b = second.nmf("temporal")
    assert second.cache_hits == ["nmf_temporal"], "a cached stage was recomputed"
    assert second.timings.keys() <= {"fetch", "load", "input_digest", "nmf_temporal"}
    np.testing.assert_array_equal(a.maps.values, b.maps.values)
    np.testing.assert_array_equal(a.timecourses.values, b.timecourses.values)
    assert b.maps.dims == a.maps.dims and b.maps.attrs == a.maps.attrs
    assert a.reconstruction_err == b.reconstruction_err

    # A corrupted cache entry fails its checksum and is recomputed, not trusted.
    entry = next(tmp_path.glob("nmf_temporal-*.nc"))
    raw = bytearray(entry.read_bytes())
    raw[-10] ^= 0xFF
    entry.write_bytes(bytes(raw))
    third = Workspace(tmp_path, progress=False, **SMALL)
    c = third.nmf("temporal")
    assert "nmf_temporal" in third.timings and "nmf_temporal" not in third.cache_hits
    np.testing.assert_array_equal(a.maps.values, c.maps.values)


def test_parameters_change_the_cache_key(tmp_path: Path, small_recording_path: Path) -> None:
    ws = Workspace(tmp_path, progress=False, **SMALL)
    k4 = ws.nmf("temporal")
    k3 = ws.nmf("temporal", n_components=3)
    assert k4.maps.sizes["component"] == 4 and k3.maps.sizes["component"] == 3
    assert len(list(tmp_path.glob("nmf_temporal-*.nc"))) == 2


def test_registration_can_be_switched_off(tmp_path: Path, small_recording_path: Path) -> None:
    ws = Workspace(tmp_path, progress=False, registration=False, cleaning=False, **SMALL)
    assert ws.motion() is None
    assert ws.registered() is ws.timed()
    summary = ws.run(modes=("temporal",), out_dir=tmp_path / "out")
    assert "motion" not in summary and not (tmp_path / "out" / "motion.tsv").exists()


def test_motion_stage_matches_ground_truth_shape(
    tmp_path: Path, small_recording_path: Path
) -> None:
    ws = Workspace(tmp_path, progress=False, **SMALL)
    motion, truth = ws.motion(), ws.ground_truth()
    assert motion["parameters"].dims == ("time", "parameter")
    assert list(motion["parameter"].values) == list(truth["motion"]["parameter"].values)
    assert motion["converged"].dtype == bool
    qc = ws.registration_qc()
    assert qc["mean_correlation_after"] > qc["mean_correlation_before"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_components": 0}, "n_components"),
        ({"preset": "huge"}, "preset"),
        ({"standardize": "rank"}, "standardize"),
        ({"n_comps": 3}, "Unknown pipeline parameter"),
        ({"max_iter": 2.5}, "max_iter"),
    ],
)
def test_bad_parameters_are_rejected(tmp_path: Path, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Workspace(tmp_path, **params)


def test_config_round_trip() -> None:
    cfg = PipelineConfig(preset="small", n_components=3)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_run_command_reports_a_missing_file(tmp_path: Path, capsys) -> None:
    code = main(["run", "--data", str(tmp_path / "nope_pwd.nii.gz"), "--work-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope_pwd.nii.gz" in err


def test_cleaning_settings_reach_the_chain(tmp_path: Path, small_recording_path: Path) -> None:
    default = Workspace(tmp_path, progress=False, **SMALL).cleaned()
    assert "high-pass" in default.attrs["history"] or "0.01" in default.attrs["history"]
    off = Workspace(
        tmp_path,
        progress=False,
        high_pass=0,
        smooth_fwhm_mm=0,
        censor_fd=0,
        censor_dvars=0,
        **SMALL,
    ).cleaned()
    assert off.attrs["history"].count("\n") < default.attrs["history"].count("\n")
    assert len(list(tmp_path.glob("cleaned-*.nc"))) == 2  # different settings, different cache
    with pytest.raises(ValueError, match="high_pass"):
        Workspace(tmp_path, high_pass=-1.0, **SMALL)


def test_brain_mask_option(tmp_path: Path, small_recording_path: Path) -> None:
    ws = Workspace(tmp_path, progress=False, brain_mask=True, **SMALL)
    mask = ws.mask()
    assert mask.dims == ("z", "y", "x") and mask.dtype == bool and mask.any()
    result = ws.nmf("temporal")
    outside = result.maps.where(~mask).fillna(0)
    assert float(abs(outside).max()) == 0.0


def test_random_init_depends_on_the_seed(tmp_path: Path, small_recording_path: Path) -> None:
    ws = Workspace(tmp_path, progress=False, init="random", **SMALL)
    a, b = ws.nmf("temporal", random_state=0), ws.nmf("temporal", random_state=1)
    assert not np.array_equal(a.maps.values, b.maps.values)
    again = Workspace(tmp_path, progress=False, init="random", **SMALL).nmf("temporal")
    np.testing.assert_array_equal(a.maps.values, again.maps.values)
    with pytest.raises(ValueError, match="init"):
        Workspace(tmp_path, init="svd", **SMALL)


def test_top_level_exports_resolve() -> None:
    import fusi_nmf

    for name in fusi_nmf.__all__:
        assert getattr(fusi_nmf, name) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        fusi_nmf.not_a_thing  # noqa: B018
