"""Tests for fusi_nmf.qc: DVARS, frame flags, censoring, brain mask."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from synthetic import make_recording

from fusi_nmf.qc import brain_mask, censor, dvars, flag_frames


def test_dvars_peaks_at_a_surge_frame():
    data = make_recording(n_time=50, ny=10, nx=10)
    data[20] = data[20] * 3  # a power surge on frame 20
    d = dvars(data)
    assert d.dims == ("time",) and d.attrs["units"] == "%"
    np.testing.assert_array_equal(d["time"].values, data["time"].values)
    assert float(d[0]) == 0
    top2 = set(np.argsort(d.values)[-2:])
    assert top2 == {20, 21}  # the change into and out of the surge
    flags = flag_frames(dvars=d, dvars_z=5)
    assert set(np.flatnonzero(flags.values)) == {20, 21}


def test_censor_drop_indices_and_threshold():
    data = make_recording(n_time=30)
    out = censor(data, [3, 4, 17], progress=False)
    assert out.sizes["time"] == 27
    np.testing.assert_array_equal(out["time"].values, np.delete(data["time"].values, [3, 4, 17]))
    np.testing.assert_array_equal(out.values, np.delete(data.values, [3, 4, 17], axis=0))
    assert out.attrs["censored_frames"] == 3
    assert out.attrs["censored_share"] == pytest.approx(0.1)
    assert out.attrs["censored_indices"] == "3,4,17"
    assert "censor: drop 3/30" in out.attrs["history"]
    assert out.attrs["source_file"] == "sim.nii.gz"
    fd = xr.DataArray(np.zeros(30), dims="time")
    fd[[5, 6]] = 0.3
    by_fd = censor(data, 0.2, fd=fd, progress=False)
    np.testing.assert_array_equal(by_fd["time"].values, np.delete(data["time"].values, [5, 6]))
    mask = np.zeros(30, dtype=bool)
    mask[-1] = True
    assert censor(data, mask, progress=False).sizes["time"] == 29


def test_censor_interpolate_is_linear_in_time():
    data = make_recording(n_time=20)
    out = censor(data, [5, 6, 0, 19], method="interpolate", progress=False)
    assert out.sizes == data.sizes
    np.testing.assert_array_equal(out["time"].values, data["time"].values)
    x = data.values.astype(np.float64)
    np.testing.assert_allclose(out.values[5], x[4] + (x[7] - x[4]) / 3, rtol=1e-5)
    np.testing.assert_allclose(out.values[6], x[4] + 2 * (x[7] - x[4]) / 3, rtol=1e-5)
    np.testing.assert_allclose(out.values[0], x[1], rtol=1e-6)  # ends: nearest kept frame
    np.testing.assert_allclose(out.values[19], x[18], rtol=1e-6)
    np.testing.assert_array_equal(out.values[10], data.values[10])


def test_censor_refuses_everything_and_bad_input():
    data = make_recording(n_time=10)
    fd = xr.DataArray(np.ones(10), dims="time")
    with pytest.raises(ValueError, match="at least 2 must remain"):
        censor(data, 0.5, fd=fd, progress=False)
    with pytest.raises(ValueError, match="method='cut'"):
        censor(data, [1], method="cut", progress=False)
    with pytest.raises(ValueError, match="exactly one series"):
        censor(data, 0.5, progress=False)
    with pytest.raises(ValueError, match="data has 10 frames"):
        censor(data, np.zeros(4, dtype=bool), progress=False)
    with pytest.raises(ValueError, match="frame indices"):
        censor(data, [12], progress=False)
    with pytest.raises(ValueError, match="positive number"):
        flag_frames(fd=fd, fd_mm=-1)


def test_brain_mask_excludes_zero_background():
    data = make_recording(n_time=20, ny=30, nx=20)
    values = data.values.copy()
    values[:, :, :8, :] = 0  # background above the brain
    values[:, :, :, :3] = 0
    # a dark but varying hole inside the brain stays in (filled)
    values[:, 0, 15, 10] = 10.0 + np.arange(20)
    data = data.copy(data=values)
    mask = brain_mask(data)
    assert mask.dims == ("z", "y", "x") and mask.dtype == bool
    np.testing.assert_array_equal(mask["y"].values, data["y"].values)
    assert not mask.isel(y=slice(0, 8)).any()
    assert not mask.isel(x=slice(0, 3)).any()
    assert mask.isel(y=slice(8, None), x=slice(3, None)).all()
    assert mask.attrs["n_voxels"] == 22 * 17
    assert not brain_mask(data, fill_holes=False).isel(z=0, y=15, x=10)
    with pytest.raises(ValueError, match="fraction"):
        brain_mask(data, threshold=1.5)


@pytest.mark.parametrize("block_bytes", [1, 8 * 30 * 3, 8 * 1000, 2**40])
def test_dvars_and_censoring_in_blocks_give_the_whole_array_numbers(monkeypatch, block_bytes):
    # one frame (voxel) per block, a few, one block. DVARS is a mean over the voxels of
    # each frame: numpy's SIMD sum of a row depends on its address alignment, so rows
    # of 30 float64 that sit differently in memory can differ in the last bit (on the
    # default recording, 9120 voxels, rows align alike and the output is bit-identical).
    monkeypatch.setattr("fusi_nmf._xr._BLOCK_BYTES", block_bytes)
    data = make_recording()
    data.values[5] *= 1.5  # a surge, flagged below
    x = data.values.astype(np.float64).reshape(data.sizes["time"], -1)
    keep = np.abs(x.mean(axis=0)) > 0  # the whole-array computation, as written before
    rel = x[:, keep] / x[:, keep].mean(axis=0)
    expected = np.zeros(x.shape[0])
    expected[1:] = 100.0 * np.sqrt(np.mean(np.diff(rel, axis=0) ** 2, axis=1))
    np.testing.assert_allclose(dvars(data).values, expected, rtol=1e-14, atol=0)
    flags = np.zeros(data.sizes["time"], dtype=bool)
    flags[[0, 5, 6]] = True
    out = censor(data, flags, method="interpolate")
    t = data["time"].values.astype(np.float64)
    w = (t[5] - t[4]) / (t[7] - t[4])
    np.testing.assert_array_equal(out.values[5], ((1 - w) * x[4] + w * x[7]).astype(np.float32)
                                  .reshape(data.shape[1:]))
    np.testing.assert_array_equal(out.values[0], data.values[1])  # clipped at the start
    np.testing.assert_array_equal(out.values[3], data.values[3])  # kept frames unchanged
