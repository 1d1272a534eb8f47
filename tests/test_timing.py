"""Frame timing stage: inspection, uniform resampling, gaps, parameters (real computations)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fusi_nmf import signal, timing
from fusi_nmf.timing import inspect_timing, resample_uniform, uniform_grid

F1, F2 = 0.1, 0.3  # Hz: haemodynamic band, well below the 1.67 Hz Nyquist of a 0.3 s step


def known_signal(t: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * F1 * t) + 0.5 * np.sin(2 * np.pi * F2 * t + 1.0)


# max |x''| of known_signal, for the linear-interpolation bound h**2 / 8 * max|x''|
CURVATURE = (2 * np.pi * F1) ** 2 + 0.5 * (2 * np.pi * F2) ** 2


def real_like_onsets(seed: int = 1, n: int = 752, drop: int | None = 200) -> np.ndarray:
    """0.3 s step from 10.608 s, 3 ms onset jitter, one 87 ms long interval, a dropped frame."""
    rng = np.random.default_rng(seed)
    t = 10.608 + 0.3 * np.arange(n) + rng.normal(0, 0.003, n)
    t[400:] += 0.087
    return np.delete(t, drop) if drop is not None else t


def recording(t: np.ndarray, n_vox: int = 6) -> xr.DataArray:
    """(time, z, y, x) float32 recording whose voxels are scaled copies of known_signal."""
    gains = np.linspace(1.0, 3.0, n_vox, dtype=np.float64)
    values = (1000.0 + 100.0 * known_signal(t)[:, None] * gains).astype(np.float32)
    return xr.DataArray(values.reshape(t.size, 1, 2, n_vox // 2), dims=("time", "z", "y", "x"),
                        coords={"time": ("time", t, {"units": "s"}), "z": [0.0],
                                "y": [0.0, 0.05], "x": np.arange(n_vox // 2) * 0.1},
                        name="power_doppler", attrs={"volume_timing": list(t), "task": "x"})


def test_regular_grid_passes_through_bit_identical():
    t = 10.608 + 0.3 * np.arange(200)
    da = recording(t)
    out = resample_uniform(da)
    assert out is da  # the very same object: nothing copied, nothing changed
    assert inspect_timing(da).regular and inspect_timing(da).n_irregular == 0
    # jitter below the tolerance is still regular, and signal's filters accept it
    wobble = t + np.tile([0.0, 0.0001], 100)
    assert resample_uniform(recording(wobble)).time.values is not None
    assert inspect_timing(wobble).regular
    assert signal._sampling_rate(wobble, "time") == pytest.approx(1 / 0.3, rel=1e-3)


def test_inspect_reports_step_jitter_gap_and_dropped_frames():
    t = real_like_onsets()
    info = inspect_timing(t)
    assert info.n_frames == 751 and not info.regular
    assert info.step == pytest.approx(0.3, abs=5e-4)
    assert info.dropped_frames == 1
    assert info.longest_interval == pytest.approx(0.6, abs=0.02)
    assert 0.002 < info.jitter < 0.008  # intervals of 3 ms onset jitter: ~4.2 ms s.d.
    assert info.share_irregular > 0.5  # jitter of 3 ms is > 0.1 % of 0.3 s
    line = info.summary()
    assert "~1 dropped" in line and "0.3 s" in line
    # a sidecar stride that agrees with the median wins as the nominal step
    da = recording(t)
    da.attrs["power_doppler_integration_stride"] = 0.3
    assert inspect_timing(da).step == 0.3


def test_known_signal_error_is_below_stated_bound():
    t = real_like_onsets()
    da = xr.DataArray(known_signal(t), dims="time", coords={"time": t})
    out = resample_uniform(da)
    grid = out.time.values
    step = inspect_timing(t).step  # the median interval (no sidecar stride here)
    assert step == pytest.approx(0.3, abs=1e-4)
    np.testing.assert_allclose(np.diff(grid), step, rtol=0, atol=1e-12)
    assert grid[0] == t[0] and grid[-1] <= t[-1] < grid[-1] + step
    assert grid.size == 752  # 751 onsets + the dropped frame, on the 0.3 s grid
    err = np.abs(out.values - known_signal(grid))
    h = np.diff(t).max()
    bound = h**2 / 8 * CURVATURE  # analytic bound of linear interpolation
    assert err.max() < bound
    assert err.max() < 0.08 and np.sqrt(np.mean(err**2)) < 0.01  # the docstring's numbers
    # far from the dropped frame the error is much smaller
    assert err[(grid > t[250]) & (grid < t[700])].max() < 0.04
    cubic = resample_uniform(da, method="cubic")
    assert np.abs(cubic.values - known_signal(grid)).max() < 0.005
    # chance level: not resampling at all (reading the onsets as if on the grid)
    naive = np.abs(known_signal(t)[:752] - known_signal(grid[:751])).max()
    assert naive > 5 * err.max()


def test_recording_keeps_dtype_dims_attrs_and_onsets():
    t = real_like_onsets(n=120, drop=50)
    da = recording(t)
    out = resample_uniform(da)
    assert out.dims == da.dims and out.dtype == np.float32 and out.name == "power_doppler"
    assert out.sizes["time"] == 120 and out.sizes["x"] == da.sizes["x"]
    assert out.attrs["frame_onsets"] == [float(v) for v in t]
    assert "volume_timing" not in out.attrs and out.attrs["task"] == "x"
    assert "linear interpolation of 119 frame onsets" in out.attrs["time_resampling"]
    assert out.time.attrs["units"] == "s" and out.time.attrs["resampled"] == "uniform"
    # a grid point exactly on an onset keeps that frame's values exactly
    np.testing.assert_array_equal(out.isel(time=0).values, da.isel(time=0).values)
    # the result is regular for the filters, and idempotent
    signal._sampling_rate(out.time.values, "time")
    assert resample_uniform(out) is out


def test_dataset_resamples_floats_and_takes_nearest_for_flags():
    t = real_like_onsets(n=60, drop=30)
    flags = np.zeros(t.size, bool)
    flags[10] = True
    ds = xr.Dataset({"x": ("time", known_signal(t)), "flag": ("time", flags),
                     "static": ("source", [1, 2])}, coords={"time": t, "source": [0, 1]})
    out = resample_uniform(ds)
    assert out["flag"].dtype == bool and int(out["flag"].sum()) == 1
    assert float(out.time[out["flag"].values.argmax()]) == pytest.approx(t[10], abs=0.15)
    assert out["static"].equals(ds["static"])
    np.testing.assert_array_equal(out.time.values, uniform_grid(t, inspect_timing(t).step))


def test_too_long_gap_raises_naming_it():
    t = real_like_onsets(n=100, drop=None)
    t = np.delete(t, [40, 41, 42])  # three consecutive frames missing: a 1.2 s interval
    da = recording(t)
    with pytest.raises(ValueError, match=r"frame 39\).*4\.0 nominal steps.*max_gap=3\.5") as err:
        resample_uniform(da)
    assert "--max-time-gap" in str(err.value) and "separately" in str(err.value)
    out = resample_uniform(da, max_gap=4.5)  # accepted when asked for
    assert out.sizes["time"] == 100
    # two missing frames are within the default
    two = resample_uniform(recording(np.delete(real_like_onsets(n=100, drop=None), [40, 41])))
    assert two.sizes["time"] == 100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "sinc"}, "method='sinc' is not one of"),
        ({"max_gap": 1.0}, "max_gap=1.0 must be a number of nominal frame steps > 1"),
        ({"max_gap": "3"}, "max_gap='3'"),
        ({"rtol": -0.1}, r"rtol must be a number in \[0, 0.5\)"),
        ({"step": 0}, "step must be a positive number"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, match):
    da = recording(real_like_onsets(n=50, drop=20))
    with pytest.raises(ValueError, match=match):
        resample_uniform(da, **kwargs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match=r"needs an xarray\.DataArray"):
        resample_uniform(np.arange(3.0))
    da = xr.DataArray(np.arange(3.0), dims="time")
    with pytest.raises(ValueError, match="no 'time' coordinate"):
        resample_uniform(da)
    with pytest.raises(ValueError, match=r"increase strictly.*frame 1"):
        inspect_timing([0.0, 0.3, 0.3, 0.9])
    with pytest.raises(ValueError, match="NaN/Inf"):
        inspect_timing([0.0, np.nan, 0.6])
    with pytest.raises(ValueError, match="at least 2 frames"):
        inspect_timing([1.0])


def test_filter_error_names_the_switch_not_censoring():
    da = recording(real_like_onsets(n=120, drop=50))
    with pytest.raises(ValueError, match="not regularly sampled") as err:
        signal.filter_temporal(da, high_pass=0.01)
    msg = str(err.value)
    assert "resample_time" in msg and "--no-resample-time" in msg
    assert "censor" not in msg.lower()
    # frames dropped by censoring get the censoring advice
    da.attrs["censor_method"] = "drop"
    with pytest.raises(ValueError, match="censor"):
        signal.filter_temporal(da, high_pass=0.01)
    assert timing.REGULAR_RTOL == 1e-3


def test_workspace_timing_stage_and_ground_truth_share_the_grid(small_recording_path, tmp_path):
    from fusi_nmf.pipeline import Workspace

    ws = Workspace(tmp_path, progress=False, preset="small")
    raw, timed, truth = ws.raw(), ws.timed(), ws.ground_truth()
    assert not ws.frame_timing().regular  # the simulator writes the converter's onsets
    np.testing.assert_array_equal(timed.attrs["frame_onsets"], raw.time.values)
    np.testing.assert_allclose(np.diff(timed.time.values), 0.3, rtol=0, atol=1e-9)
    # the truth lives at the onsets in the file, and comes back on the pipeline's grid
    np.testing.assert_array_equal(truth.time.values, timed.time.values)
    from fusi_nmf.simulate import load_ground_truth

    at_onsets = load_ground_truth(ws.recording_path)
    np.testing.assert_array_equal(at_onsets.time.values, raw.time.values)
    same = resample_uniform(at_onsets, step=0.3)
    np.testing.assert_array_equal(truth.source_timecourses.values,
                                  same.source_timecourses.values)
    # switched off: nothing is resampled, truth stays at the onsets, cache keys differ
    off = Workspace(tmp_path, progress=False, preset="small", resample_time=False)
    assert off.timed() is off.raw()
    np.testing.assert_array_equal(off.ground_truth().time.values, raw.time.values)
    assert off._stage_params("nmf") != ws._stage_params("nmf")
    assert ws._stage_params("nmf")["resample_time"] is True
    with pytest.raises(ValueError, match="max_time_gap"):
        Workspace(tmp_path, progress=False, max_time_gap=1)


def _linear_reference(t: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The straightforward full-array float64 blend: (1 - w) * lower + w * upper."""
    j = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 2)
    w = ((grid - t[j]) / (t[j + 1] - t[j])).reshape((-1,) + (1,) * (values.ndim - 1))
    work = np.result_type(values.dtype, np.float64)
    return (values[j].astype(work) * (1.0 - w) + values[j + 1].astype(work) * w).astype(
        values.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_blocked_linear_interpolation_equals_the_full_array_computation(monkeypatch, dtype):
    """Blocks of 4 frames (7 blocks, the last one short), rounded block by block, give the
    very numbers of one float64 pass over the whole array rounded at the end."""
    t = real_like_onsets(n=27, drop=11)
    rng = np.random.default_rng(3)
    values = rng.lognormal(0.0, 2.0, (t.size, 1, 2, 3))
    if dtype is np.complex64:  # the imaginary part is interpolated too, not dropped
        values = values + 1j * rng.normal(0.0, 5.0, values.shape)
    values = values.astype(dtype)
    monkeypatch.setattr(timing, "_INTERP_BLOCK_BYTES", 4 * 8 * 6)  # 4 frames of 6 voxels
    da = xr.DataArray(values, dims=("time", "z", "y", "x"), coords={"time": t})
    out = resample_uniform(da)
    assert out.dtype == dtype and out.sizes["time"] == 27
    expected = _linear_reference(t, values, out.time.values)
    np.testing.assert_array_equal(out.values, expected)
    if dtype is np.complex64:
        assert np.abs(out.values.imag).max() > 1.0
    # the time axis elsewhere than first: the same numbers, moved
    moved = resample_uniform(da.transpose("y", "time", "z", "x"))
    np.testing.assert_array_equal(moved.transpose(*da.dims).values, expected)
