"""Tests of the simulated recording (fusi_nmf.simulate) on the small preset."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from fusi_nmf import simulate as S
from fusi_nmf.simulate import (
    load_ground_truth,
    recording_path,
    simulate_recording,
    simulated_dataset,
    write_simulated_dataset,
)
from fusi_nmf.simulate._base import _Grid
from fusi_nmf.simulate.nuisance import _apply_motion

DX, DY, DZ = 0.1, 0.04832, 0.4
OFF = {"motion": False, "drift": False, "global_signal": False, "surges": False}


@pytest.fixture(scope="module")
def sim() -> xr.Dataset:
    return simulate_recording("small", seed=0)


def test_same_seed_same_numbers_other_seed_differs(sim):
    again = simulate_recording("small", seed=0)
    for name in sim.data_vars:
        np.testing.assert_array_equal(again[name].values, sim[name].values, err_msg=name)
    other = simulate_recording("small", seed=1)
    assert not np.array_equal(other.power_doppler.values, sim.power_doppler.values)
    assert not np.array_equal(other.source_maps.values, sim.source_maps.values)
    assert not np.array_equal(other.motion.values, sim.motion.values)


def test_switching_an_effect_off_keeps_everything_else(sim):
    still = simulate_recording("small", seed=0, motion=False)
    for name in ("baseline", "source_maps", "source_timecourses", "clean", "surge", "drift"):
        np.testing.assert_array_equal(still[name].values, sim[name].values, err_msg=name)
    assert (still.motion.values == 0).all()
    assert not still.motion_events.any()


def test_data_model_shape_dtype_coords_time(sim):
    pd = sim.power_doppler
    assert pd.name == "power_doppler"
    assert pd.dims == ("time", "z", "y", "x")
    assert pd.shape == (300, 1, 48, 40)
    assert pd.dtype == np.float32
    t = sim.time.values
    assert t[0] == pytest.approx(10.608)
    np.testing.assert_allclose(np.diff(t), 0.3, atol=1e-9)
    assert sim.time.attrs["units"] == "s"
    for dim, size in (("x", DX), ("y", DY), ("z", DZ)):
        assert sim[dim].attrs == {"units": "mm", "voxdim": size}
        if sim.sizes[dim] > 1:
            np.testing.assert_allclose(np.diff(sim[dim].values), size, atol=1e-6)
    assert pd.attrs["repetition_time"] == 0.3
    assert pd.attrs["delay_after_trigger"] == pytest.approx(10.608)
    assert sim.source_maps.dims == ("source", "z", "y", "x")
    assert sim.source_timecourses.dims == ("time", "source")
    assert sim.motion.dims == ("time", "parameter")
    assert list(sim.parameter.values) == ["tx", "ty", "rz"]
    assert sim.clean.dims == pd.dims and sim.baseline.dims == ("z", "y", "x")
    # the default preset is the real recording's shape (checked without generating it)
    assert S.PRESETS["default"] == (751, (1, 114, 80))


def test_value_range_vessel_dominated_and_positive(sim):
    base = sim.baseline.values
    assert 700 < base.min() and np.percentile(base, 5) > 1000
    assert 1.5e4 < base.max() < 5e4
    # vessels: a small share of voxels is several times brighter than the median
    assert np.percentile(base, 99) > 4 * np.median(base)
    rec = sim.power_doppler.values
    assert np.isfinite(rec).all() and (rec > 0).all()
    assert rec.max() < 1e5


def test_clean_is_baseline_times_one_plus_sources(sim):
    maps = sim.source_maps.values.reshape(sim.sizes["source"], -1)
    tc = sim.source_timecourses.values
    expect = sim.baseline.values.reshape(1, -1) * (1 + tc @ maps)
    np.testing.assert_allclose(sim.clean.values.reshape(len(tc), -1), expect, rtol=1e-5)
    assert (sim.source_maps.values >= 0).all()
    np.testing.assert_allclose(sim.source_maps.max(("z", "y", "x")).values, 1.0)


def test_at_least_one_source_decreases_below_baseline(sim):
    sign = sim.source_sign.values
    assert set(np.unique(sign)) == {-1, 1}
    tc = sim.source_timecourses.values
    assert (tc[:, sign < 0] <= 0).all() and (tc[:, sign > 0] >= 0).all()
    neg = int(np.flatnonzero(sign < 0)[0])
    peak = sim.source_maps.isel(source=neg).argmax(("z", "y", "x"))
    at_peak = sim.clean.isel(peak).values
    assert at_peak.min() < 0.85 * float(sim.baseline.isel(peak))


def test_motion_present_bounded_with_jumps(sim):
    m = sim.motion.values
    vox = np.abs(m[:, :2]) / np.array([DX, DY])
    assert vox.max() <= 2.0 + 1e-9 and np.abs(m[:, 2]).max() <= 1.0 + 1e-9
    assert vox.max() > 0.5 and np.abs(m[:, 2]).max() > 0.2
    # abrupt jumps: frame-to-frame steps far above the slow wander
    step = np.abs(np.diff(m, axis=0)) / np.array([DX, DY, 1.0])
    big = (step[:, :2].max(axis=1) > 0.25) | (step[:, 2] > 0.1)
    assert big.sum() >= 2
    events = np.flatnonzero(sim.motion_events.values)
    assert len(events) >= 2
    # power surges happen at the motion events
    assert (sim.surge.values[events] > 0.3).all()


def test_motion_convention_translation_and_rotation_in_mm():
    grid = _Grid((1, 41, 41))
    img = np.full((1, 41, 41), 1.0)
    img[0, 20, 30] = 100.0  # 10 voxels = 1.0 mm to +x of the centre
    frames = np.repeat(img[None], 3, axis=0)
    params = np.array([[0.2, 0.0, 0.0], [0.0, 2 * DY, 0.0], [0.0, 0.0, 30.0]])
    out = _apply_motion(frames, params, grid)
    # +tx moves content to +x (2 voxels), +ty to +y (2 voxels)
    assert np.unravel_index(out[0, 0].argmax(), (41, 41)) == (20, 32)
    assert np.unravel_index(out[1, 0].argmax(), (41, 41)) == (22, 30)
    # +rz turns +x towards +y, in mm: (1 mm, 0) -> (cos 30, sin 30) mm
    yy, xx = np.unravel_index(out[2, 0].argmax(), (41, 41))
    assert xx == 20 + round(np.cos(np.pi / 6) / DX)
    assert abs(yy - (20 + np.sin(np.pi / 6) / DY)) <= 1
    assert (out > 0).all()


def test_effects_off_recording_is_the_clean_signal():
    quiet = simulate_recording("small", seed=2, n_frames=60, noise=False, nuisance=False)
    np.testing.assert_allclose(quiet.power_doppler.values, quiet.clean.values, rtol=1e-6)


def test_three_d_shape_moves_in_plane():
    vol = simulate_recording("small", seed=0, n_frames=40, shape=(3, 24, 20))
    assert vol.power_doppler.shape == (40, 3, 24, 20)
    np.testing.assert_allclose(np.diff(vol.z.values), DZ)
    assert (vol.power_doppler.values > 0).all()
    assert (vol.source_maps.max(("y", "x")) > 0).any()


def test_planted_sources_recoverable_without_motion_and_drift():
    """The calibration claim the core NMF test relies on (noise on, motion etc. off)."""
    from sklearn.decomposition import NMF

    clean = simulate_recording("small", seed=0, nuisance=False)
    X = clean.power_doppler.values.reshape(clean.sizes["time"], -1).astype(float)
    z = (X - X.mean(0)) / X.std(0, ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W = NMF(10, init="nndsvda", max_iter=400, random_state=0).fit_transform(
            np.concatenate([np.maximum(z, 0), np.maximum(-z, 0)], axis=1)
        )
    tc = clean.source_timecourses.values
    r = np.corrcoef(np.c_[tc, W].T)[: tc.shape[1], tc.shape[1] :]
    assert (np.abs(r).max(axis=1) >= 0.8).all(), np.abs(r).max(axis=1)


def test_written_layout_and_round_trip(tmp_path, sim):
    import nibabel as nib

    from fusi_nmf.io import load_recording

    nii = write_simulated_dataset(tmp_path, sim)
    stem = "sub-sim01_ses-20201011_task-spontaneous_acq-slice03"
    assert nii == tmp_path / "sub-sim01" / "ses-20201011" / "fusi" / f"{stem}_pwd.nii.gz"
    assert nii == recording_path(tmp_path) and nii.exists()
    side = json.loads(nii.with_name(f"{stem}_pwd.json").read_text())
    # the real converter's conventions: onsets, no single repetition time, qform only
    assert "RepetitionTime" not in side and len(side["VolumeTiming"]) == sim.sizes["time"]
    assert side["PowerDopplerIntegrationStride"] == 0.3 and side["TaskName"] == "spontaneous"
    onsets = np.asarray(side["VolumeTiming"])
    steps = np.diff(onsets)
    assert onsets[0] == pytest.approx(10.608) and steps.max() > 0.3 + 0.08 > steps.min()
    hdr = nib.load(nii).header
    assert int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 1
    assert float(hdr["pixdim"][4]) == 0.0
    desc = json.loads((tmp_path / "dataset_description.json").read_text())
    assert {"Name", "BIDSVersion", "License"} <= set(desc)
    assert "SIMULATED" in desc["SimulationNote"]
    gt_file = (
        tmp_path / "derivatives" / "simulation" / "sub-sim01" / "ses-20201011" / "fusi"
        / f"{stem}_desc-groundtruth.nc"
    )
    assert gt_file.exists()
    assert not list(tmp_path.rglob("*.part*"))  # atomic writes left no temp files

    rec = load_recording(nii)
    np.testing.assert_array_equal(rec.values, sim.power_doppler.values)
    np.testing.assert_array_equal(rec.time.values, onsets)
    np.testing.assert_allclose(rec.x.values, sim.x.values, atol=1e-6)
    np.testing.assert_allclose(rec.y.values, sim.y.values, atol=1e-6)
    for where in (tmp_path, nii, gt_file):
        gt = load_ground_truth(where)
        np.testing.assert_array_equal(gt.time.values, onsets)  # truth at the onsets
        for name in ("clean", "baseline", "source_maps", "source_timecourses", "source_sign",
                     "motion", "motion_events"):
            np.testing.assert_array_equal(gt[name].values, sim[name].values, err_msg=name)
        assert list(gt.parameter.values) == ["tx", "ty", "rz"]


def test_dropped_frames_leave_recording_and_truth_aligned(tmp_path, sim):
    from fusi_nmf.io import load_recording

    nii = write_simulated_dataset(tmp_path, sim, dropped_frames=2)
    rec, gt = load_recording(nii), load_ground_truth(tmp_path)
    assert rec.sizes["time"] == gt.sizes["time"] == sim.sizes["time"] - 2
    kept = np.setdiff1d(np.arange(sim.sizes["time"]), gt.attrs["dropped_frames"])
    np.testing.assert_array_equal(rec.values, sim.power_doppler.values[kept])
    np.testing.assert_array_equal(gt.source_timecourses.values,
                                  sim.source_timecourses.values[kept])
    assert np.diff(rec.time.values).max() > 0.55  # the gap of a dropped frame
    with pytest.raises(ValueError, match="dropped_frames needs timing='converter'"):
        write_simulated_dataset(tmp_path / "r", sim, timing="regular", dropped_frames=1)
    regular = load_recording(write_simulated_dataset(tmp_path / "r", sim, timing="regular"))
    np.testing.assert_allclose(regular.time.values, sim.time.values, atol=1e-6)


def test_load_ground_truth_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="ground truth"):
        load_ground_truth(tmp_path)


def test_cache_hit_and_corrupted_file_regenerates(tmp_path, capsys):
    root = simulated_dataset("small", seed=0, data_dir=tmp_path, progress=True)
    assert root == tmp_path / "simulated" / "small-seed0"
    nii = recording_path(root)
    manifest = json.loads((root / S.MANIFEST_NAME).read_text())
    assert nii.relative_to(root).as_posix() in manifest["files"]
    first = nii.stat().st_mtime_ns
    capsys.readouterr()

    assert simulated_dataset("small", seed=0, data_dir=tmp_path, progress=True) == root
    assert nii.stat().st_mtime_ns == first  # cache hit: nothing rewritten
    assert capsys.readouterr().err == ""

    good = nii.read_bytes()
    nii.write_bytes(good[: len(good) // 2])  # a truncated download / disk error
    simulated_dataset("small", seed=0, data_dir=tmp_path, progress=True)
    assert "checksum mismatch" in capsys.readouterr().err
    assert nii.read_bytes() == good  # regenerated, bit-identical

    S.ground_truth_path(root).unlink()  # partial dataset
    simulated_dataset("small", seed=0, data_dir=tmp_path, progress=True)
    assert "missing file" in capsys.readouterr().err
    assert load_ground_truth(root).sizes["time"] == 300


def test_cli_simulate_writes_dataset(tmp_path, capsys):
    from fusi_nmf.cli import main

    out = tmp_path / "sim"
    assert main(["simulate", "--preset", "small", "--seed", "3", "--n-frames", "50",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(recording_path(out))
    assert load_ground_truth(out).sizes["time"] == 50


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"preset": "huge"}, ValueError, "Unknown simulator preset 'huge'"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"n_frames": 5}, ValueError, "n_frames must be >= 40"),
        ({"shape": (1, 48)}, ValueError, r"shape must be \(z, y, x\)"),
        ({"n_sources": 0}, ValueError, "n_sources must be >= 1"),
        ({"max_rotation_deg": -1}, ValueError, "max_rotation_deg"),
        ({"source_amplitude": (0.3, 0.1)}, ValueError, "source_amplitude"),
        ({"noise_sd": 1.5}, ValueError, "noise_sd"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"preset": "small", **kwargs}
    with pytest.raises(error, match=match):
        simulate_recording(**args)


# --------------------------------------------------------------- real-data traits
SHORT = {"preset": "small", "seed": 4, "n_frames": 120}
TRAITS = ("free_surges", "vasomotion", "nonrigid", "through_slice")


@pytest.fixture(scope="module")
def short() -> xr.Dataset:
    return simulate_recording(**SHORT)


def _ratio(sim: xr.Dataset) -> np.ndarray:
    """Recording over its clean signal, noise off: the nuisance gain per frame and voxel."""
    return sim.power_doppler.values / sim.clean.values


@pytest.mark.parametrize("trait", TRAITS)
def test_each_nuisance_trait_switches_off_alone_and_changes_the_recording(short, trait):
    base = dict(SHORT, motion=False, drift=False, global_signal=False, surges=False, noise=False)
    quiet = {t: False for t in TRAITS}
    off = simulate_recording(**base, **quiet)
    on = simulate_recording(**base, **{**quiet, trait: True})
    np.testing.assert_allclose(_ratio(off), 1.0, rtol=1e-5)  # nothing else left
    assert np.abs(_ratio(on) - 1).max() > 0.01, trait
    for name in ("source_maps", "source_timecourses", "clean", "baseline"):
        np.testing.assert_array_equal(on[name].values, off[name].values, err_msg=name)
    assert int(on.attrs[trait]) == 1 and int(off.attrs[trait]) == 0


def test_free_surges_are_not_at_motion_events(short):
    free = short.free_surge.values > 0
    assert free.sum() >= 1
    moved = np.flatnonzero(short.motion_events.values)
    near = np.zeros_like(free)
    for j in moved:
        near[j : j + 3] = True
    assert (free & ~near).any()  # some surges come with no motion jump
    # and they raise power over most of the brain on those frames
    frame = int(np.argmax(short.free_surge.values))
    quiet = simulate_recording(**SHORT, free_surges=False)
    gain = short.power_doppler[frame].values / quiet.power_doppler[frame].values
    assert np.median(gain) > 1.1


def test_vessel_response_changes_parenchyma_more_than_vessels():
    on = simulate_recording(**SHORT, nuisance=False, noise=False)
    off = simulate_recording(**SHORT, nuisance=False, noise=False, vessel_response=False)
    ratio = on.source_maps.values / np.where(off.source_maps.values > 0, off.source_maps.values,
                                             np.nan)
    base = on.baseline.values
    inside = np.isfinite(ratio[0]) & (off.source_maps.values[0] > 0.3)
    bright = base >= np.percentile(base[inside], 90)
    dim = base <= np.percentile(base[inside], 30)
    # relative change per unit footprint is smaller in bright (vessel) voxels
    assert np.nanmean(ratio[0][inside & bright]) < 0.9 * np.nanmean(ratio[0][inside & dim])


def test_vasomotion_is_in_vessels_at_about_a_tenth_of_a_hertz():
    base = dict(SHORT, n_frames=400, nuisance=False, noise=False)
    sim = simulate_recording(**{**base, "nuisance": True, "motion": False, "drift": False,
                                "global_signal": False, "surges": False, "free_surges": False,
                                "nonrigid": False, "through_slice": False})
    gain = _ratio(sim) - 1  # (time, z, y, x)
    vessel = sim.baseline.values >= np.percentile(sim.baseline.values, 95)
    paren = sim.baseline.values <= np.percentile(sim.baseline.values, 50)
    assert gain[:, vessel].std() > 2 * gain[:, paren].std()
    spectrum = np.abs(np.fft.rfft(gain[:, vessel] - gain[:, vessel].mean(0), axis=0)) ** 2
    freqs = np.fft.rfftfreq(gain.shape[0], S.REPETITION_TIME_S)
    peak = freqs[spectrum.mean(axis=1)[1:].argmax() + 1]
    assert 0.03 < peak < 0.3, peak


def test_correlated_noise_is_correlated_in_space_and_time_with_the_stated_sd():
    kw = dict(SHORT, nuisance=False)
    white = simulate_recording(**kw, correlated_noise=False)
    corr = simulate_recording(**kw)
    for sim, spatial_min, temporal_min in ((white, -0.05, -0.05), (corr, 0.15, 0.2)):
        n = (sim.power_doppler.values / sim.clean.values)[:, 0] - 1  # (time, y, x)
        # the additive floor (100 power units) is negligible in bright voxels only
        bright = sim.clean.values[:, 0] > 8000
        assert abs(n[bright].std() - S.SPECKLE_SD) < 0.15 * S.SPECKLE_SD
        r_x = np.corrcoef(n[:, :, :-1].ravel(), n[:, :, 1:].ravel())[0, 1]
        r_t = np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1]
        assert r_x > spatial_min and r_t > temporal_min, (r_x, r_t)
        if sim is white:
            assert abs(r_x) < 0.05 and abs(r_t) < 0.05


def test_nonrigid_deformation_cannot_be_undone_by_a_rigid_shift():
    kw = dict(SHORT, nuisance=False, noise=False)
    flat = simulate_recording(**kw)
    warped = simulate_recording(**{**kw, "nuisance": True, "motion": False, "drift": False,
                                   "global_signal": False, "surges": False,
                                   "free_surges": False, "vasomotion": False,
                                   "through_slice": False})
    t = int(np.abs(warped.nonrigid.values).argmax())
    assert abs(float(warped.nonrigid[t])) > 0.01
    a, b = flat.power_doppler[t, 0].values, warped.power_doppler[t, 0].values
    # best integer shift of up to 2 voxels leaves a residual a rigid move cannot remove
    best = min(
        np.abs(np.roll(np.roll(a, dy, 0), dx, 1)[4:-4, 4:-4] - b[4:-4, 4:-4]).mean()
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    )
    assert best > 0.005 * a.mean()


def test_nuisance_off_keeps_sources_and_noise(short):
    ceiling = simulate_recording(**SHORT, nuisance=False)
    for name in ("source_maps", "source_timecourses", "clean", "baseline"):
        np.testing.assert_array_equal(ceiling[name].values, short[name].values, err_msg=name)
    assert (ceiling.motion.values == 0).all()
    for name in ("surge", "free_surge", "through_slice", "nonrigid"):
        assert (ceiling[name].values == 0).all(), name
    noise_only = ceiling.power_doppler.values / ceiling.clean.values - 1
    bright = ceiling.clean.values > 8000
    assert abs(noise_only[bright].std() - S.SPECKLE_SD) < 0.15 * S.SPECKLE_SD


def test_source_amplitude_and_noise_sd_set_the_levels():
    kw = dict(SHORT, nuisance=False, noise=False)
    lo = simulate_recording(**kw, source_amplitude=(0.05, 0.05))
    hi = simulate_recording(**kw, source_amplitude=(0.3, 0.3))
    np.testing.assert_allclose(np.abs(lo.source_timecourses.values).max(axis=0), 0.05, rtol=1e-6)
    np.testing.assert_allclose(hi.source_timecourses.values, 6 * lo.source_timecourses.values,
                               rtol=1e-6)
    quiet = simulate_recording(**SHORT, nuisance=False, noise_sd=0.02, correlated_noise=False)
    n = quiet.power_doppler.values / quiet.clean.values - 1
    assert abs(n[quiet.clean.values > 8000].std() - 0.02) < 0.003
