"""Tests for fusi_nmf.signal: standardization, sign split, cleaning steps."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fusi_nmf.signal import split_sign, standardize


def make_recording(n_time=40, nz=1, ny=6, nx=5, seed=0, dt=0.3, t0=10.608):
    """A small positive (time, z, y, x) recording with proper coords and attrs."""
    rng = np.random.default_rng(seed)
    values = 1000.0 + 200.0 * rng.standard_normal((n_time, nz, ny, nx))
    return xr.DataArray(
        values.astype(np.float32),
        dims=("time", "z", "y", "x"),
        coords={
            "time": ("time", t0 + dt * np.arange(n_time), {"units": "s"}),
            "z": ("z", 0.4 * np.arange(nz), {"units": "mm", "voxdim": 0.4}),
            "y": ("y", 0.04832 * np.arange(ny), {"units": "mm", "voxdim": 0.04832}),
            "x": ("x", 0.1 * np.arange(nx), {"units": "mm", "voxdim": 0.1}),
        },
        attrs={"source_file": "sim.nii.gz", "repetition_time": dt},
        name="power_doppler",
    )


# ----------------------------------------------------------------- standardize


def test_zscore_mean_zero_std_one_and_metadata():
    data = make_recording()
    z = standardize(data)
    assert z.dtype == np.float32
    assert z.dims == data.dims
    for name in data.coords:
        np.testing.assert_array_equal(z[name].values, data[name].values)
        assert z[name].attrs == data[name].attrs
    assert z.attrs["source_file"] == "sim.nii.gz"
    assert z.attrs["standardize"] == "zscore"
    assert "zscore" in z.attrs["history"]
    np.testing.assert_allclose(z.mean("time"), 0, atol=1e-5)
    np.testing.assert_allclose(z.std("time", ddof=1), 1, rtol=1e-5)
    # agrees with a direct ddof=1 computation
    x = data.values.astype(np.float64)
    ref = (x - x.mean(0)) / x.std(0, ddof=1)
    np.testing.assert_allclose(z.values, ref, rtol=1e-5, atol=1e-5)


def test_psc_is_percent_change_from_mean():
    data = make_recording()
    p = standardize(data, method="psc")
    x = data.values.astype(np.float64)
    np.testing.assert_allclose(p.values, 100 * (x - x.mean(0)) / x.mean(0), rtol=1e-4, atol=1e-4)
    assert p.attrs["standardize"] == "psc"
    assert p.dtype == np.float32


def test_constant_and_zero_voxels_give_zero_not_nan():
    data = make_recording()
    data[:, 0, 0, 0] = 1234.5  # constant, non-zero
    data[:, 0, 1, 1] = 0.0  # zero everywhere (background)
    for method in ("zscore", "psc"):
        out = standardize(data, method=method)
        assert np.all(np.isfinite(out.values))
        np.testing.assert_array_equal(out[:, 0, 0, 0].values, 0)
        np.testing.assert_array_equal(out[:, 0, 1, 1].values, 0)
        # the rest is untouched by the special case
        assert np.all(out[:, 0, 2, 2].values != 0)


def test_standardize_other_dim_and_input_not_modified():
    data = make_recording().rename(time="t")
    before = data.copy(deep=True)
    out = standardize(data, dim="t")
    xr.testing.assert_identical(data, before)
    np.testing.assert_allclose(out.mean("t"), 0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "robust"}, ValueError, "method='robust'"),
        ({"dim": "frames"}, ValueError, "no 'frames' dim"),
    ],
)
def test_standardize_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        standardize(make_recording(), **kwargs)


def test_standardize_bad_input():
    data = make_recording()
    data[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        standardize(data)
    with pytest.raises(TypeError, match="DataArray"):
        standardize(np.ones((4, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        standardize(make_recording(n_time=1))


# ----------------------------------------------------------------- split_sign


def test_split_sign_layout_and_values():
    z = standardize(make_recording())
    s = split_sign(z)
    assert s.dims == ("time", "sign", "z", "y", "x")
    assert list(s["sign"].values) == ["pos", "neg"]
    assert s.dtype == np.float32
    assert float(s.min()) >= 0
    pos, neg = s.sel(sign="pos"), s.sel(sign="neg")
    np.testing.assert_array_equal((pos - neg).values, z.values)
    # never both non-zero at once
    assert not np.any((pos.values > 0) & (neg.values > 0))
    np.testing.assert_array_equal(pos.values, np.maximum(z.values, 0))
    np.testing.assert_array_equal(s["time"].values, z["time"].values)
    assert s["x"].attrs["voxdim"] == 0.1
    assert s.attrs["standardize"] == "zscore"
    assert s.attrs["history"].splitlines()[-1].startswith("split_sign")


def test_split_sign_time_not_first():
    z = standardize(make_recording()).transpose("z", "time", "y", "x")
    s = split_sign(z)
    assert s.dims == ("z", "time", "sign", "y", "x")


def test_split_sign_bad_input():
    s = split_sign(standardize(make_recording()))
    with pytest.raises(ValueError, match="already has a 'sign'"):
        split_sign(s)
    with pytest.raises(ValueError, match="no 'time' dim"):
        split_sign(xr.DataArray(np.zeros((3, 2)), dims=("a", "b")))
    bad = standardize(make_recording())
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/Inf"):
        split_sign(bad)
