"""The original analysis one switch away: NMF projection time courses and analysis='reference'."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.exceptions import ConvergenceWarning

from fusi_nmf.decomposition import NMF
from fusi_nmf.pipeline import PipelineConfig, Workspace
from fusi_nmf.signal import split_sign, standardize


def _zsplit(seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    n_time, ny, nx, k = 90, 9, 7, 3
    tc = rng.gamma(1.0, 1.0, (n_time, k))
    maps = rng.random((k, ny * nx)) ** 3
    x = tc @ maps + 0.1 * rng.standard_normal((n_time, ny * nx)) + 5.0
    da = xr.DataArray(
        x.reshape(n_time, 1, ny, nx),
        dims=("time", "z", "y", "x"),
        coords={"time": 0.3 * np.arange(n_time)},
    )
    return split_sign(standardize(da))


def test_projection_equals_sklearn_fit_then_transform_and_is_signed():
    X = _zsplit()
    A = X.values.reshape(X.sizes["time"], -1).astype(np.float64)
    model = NMF(4, mode="spatial", solver="cd", random_state=0, max_iter=300,
                timecourses="projection")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tc = model.fit_transform(X)
        sk = SklearnNMF(4, init="nndsvda", solver="cd", random_state=0, max_iter=300)
        sk.fit(A.T.astype(np.float32))
        sk_maps = sk.transform(A.T.astype(np.float32)).T  # (k, features)
    sk_tc = (A - A.mean(axis=0)) @ sk_maps.T.astype(np.float64)
    maps = model.maps_.values.reshape(4, -1)
    # the same components, in this package's energy order
    order = [int(np.argmin(np.abs(sk_maps - m).sum(axis=1))) for m in maps]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(maps, sk_maps[order], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tc.values, sk_tc[:, order], rtol=1e-3, atol=1e-3)
    # and it is the centred projection of the data onto the package's own maps
    np.testing.assert_allclose(tc.values, (A - A.mean(axis=0)) @ maps.T, rtol=1e-4, atol=1e-4)
    assert (tc.values < 0).any()
    np.testing.assert_allclose(tc.values.mean(axis=0), 0.0, atol=1e-3)


def test_factor_time_courses_are_the_default_and_non_negative():
    X = _zsplit(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tc = NMF(3, mode="spatial", random_state=0).fit_transform(X)
        temporal = NMF(3, random_state=0, timecourses="projection").fit_transform(X)
    assert (tc.values >= 0).all()
    assert (temporal.values >= 0).all()  # temporal mode ignores the option
    with pytest.raises(ValueError, match="timecourses"):
        NMF(3, timecourses="centred").fit(X)


def test_reference_config_sets_no_cleaning_and_cd():
    cfg = PipelineConfig(analysis="reference")
    assert cfg.cleaning is False and cfg.solver == "cd"
    assert PipelineConfig().analysis == "default" and PipelineConfig().solver == "hals"
    with pytest.raises(ValueError, match="solver"):
        PipelineConfig(analysis="reference", solver="mu")
    with pytest.raises(ValueError, match="analysis"):
        PipelineConfig(analysis="original")
    with pytest.raises(ValueError, match="censor_method"):
        PipelineConfig(censor_method="zap")


def test_nmf_settings_map_the_analysis_to_the_estimator():
    ref = PipelineConfig(analysis="reference")
    assert ref.nmf_settings("spatial") == {"solver": "cd", "timecourses": "projection"}
    assert ref.nmf_settings("temporal") == {"solver": "cd", "timecourses": "factor"}
    for mode in ("temporal", "spatial"):
        assert PipelineConfig().nmf_settings(mode) == {"solver": "hals", "timecourses": "factor"}
    assert PipelineConfig(solver="mu").nmf_settings("spatial")["solver"] == "mu"
    with pytest.raises(ValueError, match="mode"):
        ref.nmf_settings("both")


def test_reference_pipeline_outputs(tmp_path: Path, small_recording_path: Path) -> None:
    ws = Workspace(tmp_path / "work", preset="small", analysis="reference", n_components=4,
                   max_iter=200, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        summary = ws.run(out_dir=tmp_path / "out")
    assert summary["parameters"]["solver"] == "cd"
    assert "censored_frames" not in summary  # no cleaning, nothing censored
    spatial = ws.nmf("spatial")
    X = ws.split()
    A = X.values.reshape(X.sizes["time"], -1).astype(np.float64)
    maps = spatial.maps.values.reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(
        spatial.timecourses.values, (A - A.mean(axis=0)) @ maps.T, rtol=1e-3, atol=1e-2
    )
    assert (spatial.timecourses.values < 0).any()
    # the default analysis caches apart from the reference one
    default = Workspace(tmp_path / "work", preset="small", n_components=4, max_iter=200,
                        progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = default.run(modes=("temporal",), out_dir=tmp_path / "out2")
    assert (default.nmf("temporal").timecourses.values >= 0).all()
    record = out["censored_frames"]
    assert record["method"] == "interpolate" and record["count"] == len(record["indices"])
    tsv = pd.read_csv(tmp_path / "out2" / "timecourses_temporal.tsv", sep="\t")
    assert tsv["censored"].sum() == record["count"]
    assert np.flatnonzero(tsv["censored"].to_numpy()).tolist() == record["indices"]
    saved = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert saved["censored_frames"]["indices"] == record["indices"]
