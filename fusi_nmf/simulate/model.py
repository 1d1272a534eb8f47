"""The signal model, :func:`simulate_recording`: what is simulated and why is in the package."""

from __future__ import annotations

import numpy as np
import xarray as xr

from fusi_nmf import __version__
from fusi_nmf.simulate._base import (
    _ADDITIVE_NOISE,
    _DRIFT_GLOBAL,
    _DRIFT_LOCAL,
    _FREE_SURGE_RANGE,
    _FREE_SURGE_RATE,
    _GLOBAL_STD,
    _NONRIGID_MM,
    _SURGE_RANGE,
    _THROUGH_SLICE,
    _VASOMOTION_HZ,
    _VASOMOTION_STD,
    _VESSEL_RESPONSE,
    FIRST_ONSET_S,
    REPETITION_TIME_S,
    SIMULATOR_VERSION,
    SOURCE_AMPLITUDE,
    SPECKLE_SD,
    TASK,
    _check_int,
    _check_preset,
    _Grid,
    _lowpass_series,
    _smooth_noise,
)
from fusi_nmf.simulate.anatomy import _baseline, _source_maps, _source_timecourses
from fusi_nmf.simulate.nuisance import _apply_motion, _correlated_speckle, _motion

# --------------------------------------------------------------------------- main entry


def simulate_recording(
    preset: str = "default",
    seed: int = 0,
    *,
    n_frames: int | None = None,
    shape: tuple[int, int, int] | None = None,
    motion: bool = True,
    drift: bool = True,
    global_signal: bool = True,
    surges: bool = True,
    noise: bool = True,
    n_sources: int | None = None,
    max_shift_voxels: float = 2.0,
    max_rotation_deg: float = 1.0,
    free_surges: bool = True,
    vasomotion: bool = True,
    vessel_response: bool = True,
    correlated_noise: bool = True,
    nonrigid: bool = True,
    through_slice: bool = True,
    nuisance: bool = True,
    source_amplitude: tuple[float, float] = SOURCE_AMPLITUDE,
    noise_sd: float = SPECKLE_SD,
) -> xr.Dataset:
    """Simulate a fUSI Power Doppler recording with its ground truth.

    See :mod:`fusi_nmf.simulate` for what is simulated and why. Every effect draws
    from its own random stream derived from ``seed``, so switching an effect off
    (``motion=False`` etc.) leaves all other numbers identical.

    Parameters
    ----------
    preset : {"default", "small"}
        ``"default"``: the real recording's size, 751 frames of (z, y, x) =
        (1, 114, 80). ``"small"``: 300 frames of (1, 48, 40), for tests.
    seed : int
        Seed of :func:`numpy.random.default_rng`; same arguments and seed give
        identical arrays.
    n_frames, shape : optional
        Override the preset's frame count and ``(z, y, x)`` shape (``z > 1``
        gives a 3-D recording; its motion stays in-plane).
    motion, drift, global_signal, surges, noise : bool
        Switch each effect on or off (the ground truth always describes the
        effects switched on: ``motion`` is all zeros when ``motion=False``).
    n_sources : int, optional
        Number of planted sources (default 6); at least one is a decrease.
    max_shift_voxels, max_rotation_deg : float
        Bounds of the rigid motion, per translation axis in voxels and in degrees.
    free_surges, vasomotion, vessel_response, correlated_noise, nonrigid, through_slice : bool
        Switch each real-data trait of :mod:`fusi_nmf.simulate` on or off (all on by
        default): power surges with no motion jump, the vessels' own slow
        fluctuation, sources changing parenchyma more than large vessels,
        spatially and temporally correlated noise, slow non-rigid deformation,
        and the through-slice intensity change at motion events.
    nuisance : bool, default=True
        ``False`` is the "no motion, no nuisance" recording: it switches off
        ``motion``, ``drift``, ``global_signal``, ``surges``, ``free_surges``,
        ``vasomotion``, ``nonrigid`` and ``through_slice`` whatever they are set
        to, and keeps the sources (with ``vessel_response``) and the noise
        exactly as they are (same streams), so it is the same recording with
        only its nuisances removed: the ceiling of any pipeline run on it.
    source_amplitude : (float, float), default=(0.2, 0.35)
        Range of the sources' peak fractional power change (drawn uniformly;
        the same seed gives the same position in the range for any range).
    noise_sd : float, default=SPECKLE_SD (0.063)
        s.d. of the multiplicative per-frame noise (fraction of power); 0
        leaves only the additive floor.

    Returns
    -------
    xarray.Dataset
        ``power_doppler`` (time, z, y, x) float32, the recording, with the
        coords and attrs of a loaded recording; ``clean`` (time, z, y, x) =
        ``baseline * (1 + sum_k source_maps * source_timecourses)`` (no noise,
        motion, drift, global fluctuation or surges); ``baseline`` (z, y, x);
        ``source_maps`` (source, z, y, x), non-negative, peak 1;
        ``source_timecourses`` (time, source), the signed fractional power
        change; ``source_sign`` (source), +1 or -1; ``motion`` (time, parameter)
        with parameters ``tx, ty`` (mm) and ``rz`` (degrees); ``motion_events``
        (time) bool, frames where an abrupt move starts; and the effect terms
        ``drift``, ``global_fluctuation`` (time) and ``surge`` (time).

    Examples
    --------
    >>> sim = simulate_recording("small", seed=0)
    >>> sim.power_doppler.dims
    ('time', 'z', 'y', 'x')
    """
    seed, n_frames, shape, n_sources, (lo_amp, hi_amp) = _check_sources_args(
        preset, seed, n_frames, shape, n_sources, source_amplitude
    )
    if not 0 <= float(noise_sd) < 1:
        raise ValueError(f"noise_sd must lie in [0, 1) (a fraction of power), got {noise_sd!r}.")
    if not nuisance:
        motion = drift = global_signal = surges = free_surges = False
        vasomotion = nonrigid = through_slice = False
    if not (0 <= max_shift_voxels <= 10) or not (0 <= max_rotation_deg <= 10):
        raise ValueError(
            "max_shift_voxels and max_rotation_deg must lie in [0, 10], got "
            f"{max_shift_voxels!r} and {max_rotation_deg!r}."
        )

    tr = REPETITION_TIME_S
    grid = _Grid(shape)
    streams = _streams(seed)
    rng_motion, rng_surge, rng_drift, rng_noise = streams[3:7]
    rng_free, rng_vaso, rng_cnoise, rng_warp, rng_slice = streams[8:]
    baseline, vessels, maps, tc, sign = _planted_sources(
        streams, grid, n_frames, n_sources, vessel_response, lo_amp, hi_amp
    )
    vessel_frac_img = np.clip(vessels / baseline, 0.0, 1.0)

    n_vox = int(np.prod(shape))
    clean = baseline.reshape(1, n_vox) * (1.0 + tc @ maps.reshape(n_sources, n_vox))

    motion_params, events = _motion(
        rng_motion, n_frames, tr, grid, max_shift_voxels, max_rotation_deg
    )

    # brain-attached multiplicative effects, each (time, voxels) or (time, 1)
    gain = np.ones((n_frames, n_vox))
    t_norm = np.linspace(-1.0, 1.0, n_frames)
    vessel_frac = (vessels / baseline).reshape(1, n_vox)
    # drift: global trend + spatially varying trend + slow wander
    g_trend = rng_drift.uniform(0.5, 1.0) * rng_drift.choice([-1, 1]) * _DRIFT_GLOBAL
    trend = g_trend * (0.5 * t_norm + 0.5 * (1 - np.exp(-(t_norm + 1) * 1.5)) - 0.25)
    local = _DRIFT_LOCAL * _smooth_noise(rng_drift, shape, grid.sigma_vox(1.5, 1.0, 1.0))
    local_course = 0.6 * t_norm + 0.4 * _lowpass_series(rng_drift, n_frames, 40.0 / tr)
    drift_global = trend + 0.03 * _lowpass_series(rng_drift, n_frames, 60.0 / tr)
    global_course = _GLOBAL_STD * _lowpass_series(rng_drift, n_frames, 1.2 / tr)
    if drift:
        gain *= (1.0 + drift_global[:, None]) * (
            1.0 + local_course[:, None] * local.reshape(1, n_vox)
        )
    if global_signal:
        gain *= 1.0 + global_course[:, None] * (0.6 + 0.8 * vessel_frac)
    # surges: 1-3 frames of extra power at each motion event, stronger in parenchyma
    surge_course = np.zeros(n_frames)
    for j in events:
        length = int(rng_surge.integers(1, 4))
        peak = rng_surge.uniform(*_SURGE_RANGE)
        profile = peak * np.array([1.0, 0.6, 0.3])[:length]
        surge_course[j : j + length] += profile[: max(0, min(length, n_frames - j))]
    surge_map = np.clip(
        1.0 + 0.3 * _smooth_noise(rng_surge, shape, grid.sigma_vox(1.0, 0.8, 1.0)), 0.3, None
    )
    surge_map = surge_map.reshape(1, n_vox) * (1.2 - 0.8 * vessel_frac)
    if surges:
        gain *= 1.0 + surge_course[:, None] * surge_map
    # free surges: the same kind of power burst with no image displacement
    free_course = np.zeros(n_frames)
    n_free = int(rng_free.poisson(_FREE_SURGE_RATE * n_frames * tr))
    for j in rng_free.integers(0, n_frames, n_free):
        length = int(rng_free.integers(1, 4))
        profile = rng_free.uniform(*_FREE_SURGE_RANGE) * np.array([1.0, 0.6, 0.3])[:length]
        free_course[j : j + length] += profile[: max(0, min(length, n_frames - j))]
    if free_surges:
        gain *= 1.0 + free_course[:, None] * surge_map
    # vasomotion: each vessel territory has its own ~0.1 Hz fluctuation
    n_terr = 4
    terr = np.stack(
        [_smooth_noise(rng_vaso, shape, grid.sigma_vox(0.6, 0.4, 1.0)) for _ in range(n_terr)]
    )
    terr = np.exp(3.0 * terr) / np.exp(3.0 * terr).sum(axis=0)  # soft partition
    wide = 1.0 / (2 * np.pi * _VASOMOTION_HZ * tr)  # frames
    vaso_courses = np.stack(
        [
            _lowpass_series(rng_vaso, n_frames, 0.5 * wide) - _lowpass_series(rng_vaso, n_frames,
                                                                              3.0 * wide)
            for _ in range(n_terr)
        ],
        axis=1,
    )
    vaso_courses /= vaso_courses.std(axis=0) + 1e-12
    vaso = (vaso_courses @ terr.reshape(n_terr, n_vox)) * vessel_frac_img.reshape(1, n_vox)
    if vasomotion:
        gain *= 1.0 + _VASOMOTION_STD * vaso
    # through-slice change: an elevation move brings other vessels into the slice
    slice_pattern = _smooth_noise(rng_slice, shape, grid.sigma_vox(0.06, 0.05, 0.3))
    slice_pattern = (slice_pattern * (0.3 + vessel_frac_img)).reshape(1, n_vox)
    slice_level = np.zeros(n_frames)
    for j in events:
        slice_level[j:] = rng_slice.uniform(-1.0, 1.0)
    if through_slice:
        gain *= np.clip(1.0 + _THROUGH_SLICE * slice_level[:, None] * slice_pattern, 0.2, None)

    signal = (clean * gain).reshape(n_frames, *shape)
    # slow non-rigid deformation (swelling, pressure): a smooth displacement field
    warp_field = np.stack(
        [_smooth_noise(rng_warp, shape, grid.sigma_vox(0.8, 0.6, 1.0)) for _ in range(2)]
    )
    warp_field *= _NONRIGID_MM / (np.abs(warp_field).max() + 1e-12)
    warp_course = _lowpass_series(rng_warp, n_frames, 30.0 / tr)
    warp_course /= np.abs(warp_course).max() + 1e-12
    if not motion:
        motion_params = np.zeros_like(motion_params)
    if motion or nonrigid:
        warp = (warp_field, warp_course) if nonrigid else None
        signal = _apply_motion(signal, motion_params, grid, warp=warp)

    # measurement noise: drawn even when switched off so the streams stay aligned
    sd = float(noise_sd)
    if sd > 0:
        speckle = rng_noise.gamma(1.0 / sd**2, sd**2, signal.shape)
    else:
        speckle = np.ones(signal.shape)
    additive = rng_noise.normal(0.0, _ADDITIVE_NOISE, signal.shape)
    if correlated_noise and sd > 0:
        speckle = _correlated_speckle(rng_cnoise, signal.shape, grid, sd)
    if noise:
        signal = signal * speckle + additive
    recording = np.maximum(signal, 1.0).astype(np.float32)

    time = np.round(FIRST_ONSET_S + tr * np.arange(n_frames), 6)
    coords = _coords(grid, time)
    rec_attrs = {
        "repetition_time": tr,
        "delay_after_trigger": FIRST_ONSET_S,
        "task_name": TASK,
        "source_file": f"simulate_recording(preset={preset!r}, seed={seed})",
        "simulation_note": "Simulated by fusi_nmf.simulate; not a measurement.",
    }
    space = ("z", "y", "x")
    sim = xr.Dataset(
        {
            "power_doppler": (("time", *space), recording, rec_attrs),
            "clean": (
                ("time", *space),
                clean.reshape(n_frames, *shape).astype(np.float32),
                {"description": "baseline * (1 + sum_k source_maps * source_timecourses)"},
            ),
            "baseline": (
                space,
                baseline.astype(np.float32),
                {"description": "vessel-dominated baseline power"},
            ),
            "source_maps": (
                ("source", *space),
                maps.astype(np.float32),
                {"description": "non-negative spatial footprints, peak 1"},
            ),
            "source_timecourses": (
                ("time", "source"),
                tc,
                {"description": "signed fractional power change of each source"},
            ),
            "source_sign": (
                ("source",),
                sign.astype(np.int8),
                {"description": "+1 increase, -1 decrease"},
            ),
            "motion": (
                ("time", "parameter"),
                motion_params,
                {
                    "description": "content at p moves to R(p - c) + c + t, c = FOV centre",
                    "units": "mm, mm, deg",
                },
            ),
            "motion_events": (("time",), np.isin(np.arange(n_frames), events) & bool(motion)),
            "drift": (
                ("time",),
                (1.0 + drift_global) if drift else np.ones(n_frames),
                {"description": "global drift factor (the spatial drift field is not stored)"},
            ),
            "global_fluctuation": (
                ("time",),
                global_course if global_signal else np.zeros(n_frames),
                {"description": "shared fractional fluctuation (vessel-weighted)"},
            ),
            "surge": (
                ("time",),
                surge_course if surges else np.zeros(n_frames),
                {"description": "peak fractional power surge at motion events"},
            ),
            "free_surge": (
                ("time",),
                free_course if free_surges else np.zeros(n_frames),
                {"description": "peak fractional power surge with no motion jump"},
            ),
            "through_slice": (
                ("time",),
                slice_level if through_slice else np.zeros(n_frames),
                {"description": "through-slice level (-1..1) scaling the intensity pattern"},
            ),
            "nonrigid": (
                ("time",),
                _NONRIGID_MM * warp_course if nonrigid else np.zeros(n_frames),
                {"description": "signed peak non-rigid displacement (mm)", "units": "mm"},
            ),
        },
        coords={**coords, "source": np.arange(n_sources), "parameter": ["tx", "ty", "rz"]},
        attrs={
            "title": "fusi-nmf simulated fUSI Power Doppler recording",
            "preset": preset,
            "seed": seed,
            "simulator_version": SIMULATOR_VERSION,
            "fusi_nmf_version": __version__,
            "motion": int(motion),
            "drift": int(drift),
            "global_signal": int(global_signal),
            "surges": int(surges),
            "noise": int(noise),
            "free_surges": int(free_surges),
            "vasomotion": int(vasomotion),
            "vessel_response": int(vessel_response),
            "correlated_noise": int(correlated_noise),
            "nonrigid": int(nonrigid),
            "through_slice": int(through_slice),
            "source_amplitude": np.array([lo_amp, hi_amp]),
            "noise_sd": sd,
            "n_sources": n_sources,
            "max_shift_voxels": float(max_shift_voxels),
            "max_rotation_deg": float(max_rotation_deg),
        },
    )
    sim["power_doppler"].name = "power_doppler"
    return sim


def simulate_sources(
    preset: str = "default",
    seed: int = 0,
    *,
    n_frames: int | None = None,
    shape: tuple[int, int, int] | None = None,
    n_sources: int | None = None,
    vessel_response: bool = True,
    source_amplitude: tuple[float, float] = SOURCE_AMPLITUDE,
) -> xr.Dataset:
    """The planted sources of :func:`simulate_recording` alone, in milliseconds.

    The same arguments give exactly its ``source_maps``, ``source_timecourses`` and
    ``source_sign`` (the sources draw from their own random streams, see
    :func:`simulate_recording`), without simulating the recording itself (motion,
    nuisances and noise: seconds for the default preset). Used for chance levels,
    which need other recordings' sources but never their data.

    Returns
    -------
    xarray.Dataset
        ``source_maps`` (source, z, y, x), ``source_timecourses`` (time, source) and
        ``source_sign`` (source), on the coordinates of :func:`simulate_recording`
        (its regular time grid: the written dataset puts the same frames on
        converter-like onsets, see :func:`~fusi_nmf.simulate.converter_timing`).
    """
    seed, n_frames, shape, n_sources, (lo_amp, hi_amp) = _check_sources_args(
        preset, seed, n_frames, shape, n_sources, source_amplitude
    )
    grid = _Grid(shape)
    _, _, maps, tc, sign = _planted_sources(
        _streams(seed), grid, n_frames, n_sources, vessel_response, lo_amp, hi_amp
    )
    time = np.round(FIRST_ONSET_S + REPETITION_TIME_S * np.arange(n_frames), 6)
    return xr.Dataset(
        {
            "source_maps": (("source", "z", "y", "x"), maps.astype(np.float32)),
            "source_timecourses": (("time", "source"), tc),
            "source_sign": (("source",), sign.astype(np.int8)),
        },
        coords={**_coords(grid, time), "source": np.arange(n_sources)},
        attrs={"preset": preset, "seed": seed, "simulator_version": SIMULATOR_VERSION},
    )


def _check_sources_args(
    preset: str,
    seed: int,
    n_frames: int | None,
    shape: tuple[int, int, int] | None,
    n_sources: int | None,
    source_amplitude: tuple[float, float],
) -> tuple[int, int, tuple[int, int, int], int, tuple[float, float]]:
    """Validated (seed, n_frames, shape, n_sources, (low, high) amplitude)."""
    preset_frames, preset_shape = _check_preset(preset)
    seed = _check_int(seed, "seed", 0)
    n_frames = preset_frames if n_frames is None else _check_int(n_frames, "n_frames", 40)
    if shape is None:
        shape = preset_shape
    else:
        if len(tuple(shape)) != 3:
            raise ValueError(f"shape must be (z, y, x), got {shape!r}.")
        shape = tuple(
            _check_int(s, f"shape[{i}]", 1 if i == 0 else 16) for i, s in enumerate(shape)
        )
    n_sources = 6 if n_sources is None else _check_int(n_sources, "n_sources", 1)
    lo_amp, hi_amp = (float(a) for a in source_amplitude)
    if not 0 <= lo_amp <= hi_amp <= 5:
        raise ValueError(
            f"source_amplitude must be (low, high) with 0 <= low <= high <= 5 (fractions of "
            f"baseline power), got {source_amplitude!r}."
        )
    return seed, n_frames, shape, n_sources, (lo_amp, hi_amp)


def _streams(seed: int) -> list[np.random.Generator]:
    """The simulator's 13 independent random streams of ``seed``."""
    # spawn(n) children do not depend on n: the first 8 streams are those of version 1
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(13)]


def _planted_sources(
    streams: list[np.random.Generator],
    grid: _Grid,
    n_frames: int,
    n_sources: int,
    vessel_response: bool,
    lo_amp: float,
    hi_amp: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Baseline, vessels, source maps, signed time courses (time, source) and signs.

    Draws only from the baseline, maps, time-course and sign streams (0, 1, 2, 7).
    """
    rng_base, rng_maps, rng_tc, rng_sign = streams[0], streams[1], streams[2], streams[7]
    baseline, brain, vessels = _baseline(rng_base, grid)
    maps, _, _ = _source_maps(rng_maps, grid, brain, n_sources)
    if vessel_response:
        # blood volume changes less, in relative terms, where it is already large
        vessel_frac_img = np.clip(vessels / baseline, 0.0, 1.0)
        maps = maps * (1.0 - _VESSEL_RESPONSE * vessel_frac_img)[None]
        maps /= maps.reshape(n_sources, -1).max(axis=1)[:, None, None, None]
    u = _source_timecourses(rng_tc, n_frames, n_sources, REPETITION_TIME_S)
    n_neg = max(1, round(n_sources / 3))
    sign = np.ones(n_sources)
    sign[rng_sign.choice(n_sources, size=n_neg, replace=False)] = -1.0
    amp = lo_amp + (hi_amp - lo_amp) * rng_sign.uniform(0.0, 1.0, n_sources)
    return baseline, vessels, maps, u * (sign * amp)[None, :], sign


def _coords(grid: _Grid, time: np.ndarray) -> dict[str, xr.Variable]:
    return {
        "time": xr.Variable(("time",), time, {"units": "s"}),
        "z": xr.Variable(("z",), grid.z, {"units": "mm", "voxdim": grid.dz}),
        "y": xr.Variable(("y",), grid.y, {"units": "mm", "voxdim": grid.dy}),
        "x": xr.Variable(("x",), grid.x, {"units": "mm", "voxdim": grid.dx}),
    }
