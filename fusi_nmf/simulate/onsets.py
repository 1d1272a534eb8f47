"""Converter-like frame onsets for a simulation: jitter, one long interval, dropped frames."""

from __future__ import annotations

import numpy as np
import xarray as xr

from fusi_nmf.simulate._base import FIRST_ONSET_S, REPETITION_TIME_S, _check_int

# Frame timing written by default, after the real recording's converter output: onsets
# (VolumeTiming) with jitter and one long interval, pixdim[4] = 0, no RepetitionTime.
ONSET_JITTER_S = 0.002  # s.d. of the onset jitter (assumed; the real onsets are rounded to ms)
LONG_INTERVAL_S = 0.087  # extra time in one interval: the real onsets span 225.087 s, not 225.0
TIMINGS = ("converter", "regular")


def converter_timing(sim: xr.Dataset, *, dropped_frames: int = 0, seed: int | None = None
                     ) -> xr.Dataset:
    """Put a simulation on irregular frame onsets like the real converter's, dropping frames.

    Frame ``i`` of the simulation gets the onset ``10.608 + 0.3 i`` plus Gaussian jitter
    (:data:`ONSET_JITTER_S`), and every frame from a random one in the middle half on
    comes :data:`LONG_INTERVAL_S` later (one long interval, as in the real recording).
    ``dropped_frames`` frames (never the first or last) are then removed from the
    recording and from every ground-truth variable alike. The truth therefore lives at
    the frame onsets, exactly like the recording: the simulated signal of frame ``i``
    *is* the signal at its onset. (The model generates its dynamics per frame, so the
    ms jitter and the one 87 ms shift are a slight time warp of the modelled process,
    negligible at haemodynamic time scales; truth and recording share it exactly.) The
    onsets use their own random stream (from ``seed``), so the rest of the simulation
    is unchanged.

    Parameters
    ----------
    sim : xarray.Dataset
        Output of :func:`simulate_recording` (regular time).
    dropped_frames : int, default 0
    seed : int, optional
        Default: ``sim.attrs["seed"]``.

    Returns
    -------
    xarray.Dataset
        The same variables on the new onsets; ``attrs["timing"]`` describes them.
    """
    dropped_frames = _check_int(dropped_frames, "dropped_frames", 0)
    n = sim.sizes["time"]
    if dropped_frames > n // 10:
        raise ValueError(f"dropped_frames={dropped_frames} is more than a tenth of the {n} frames.")
    seed = int(sim.attrs.get("seed", 0) if seed is None else seed)
    rng = np.random.default_rng([seed, 0x7157])  # own stream: the model is untouched
    onsets = FIRST_ONSET_S + REPETITION_TIME_S * np.arange(n) + rng.normal(0, ONSET_JITTER_S, n)
    onsets[0] = FIRST_ONSET_S
    long_at = int(rng.integers(n // 4, 3 * n // 4))
    onsets[long_at:] += LONG_INTERVAL_S
    onsets = np.round(onsets, 6)
    drop = np.sort(rng.choice(np.arange(1, n - 1), dropped_frames, replace=False))
    out = sim.assign_coords(time=xr.Variable("time", onsets, {"units": "s"}))
    if drop.size:
        out = out.drop_isel(time=drop)
    pd_attrs = {k: v for k, v in sim["power_doppler"].attrs.items()
                if k not in ("repetition_time", "delay_after_trigger")}
    pd_attrs |= {"frame_acquisition_duration": REPETITION_TIME_S,
                 "power_doppler_integration_duration": REPETITION_TIME_S,
                 "power_doppler_integration_stride": REPETITION_TIME_S}
    out["power_doppler"].attrs = pd_attrs
    out.attrs = dict(sim.attrs) | {
        "timing": (f"converter-like onsets: {REPETITION_TIME_S} s step, {ONSET_JITTER_S * 1e3:g} "
                   f"ms jitter, {LONG_INTERVAL_S * 1e3:g} ms extra before frame {long_at}, "
                   f"dropped frames {[int(i) for i in drop]}; truth at the onsets"),
        "dropped_frames": [int(i) for i in drop],
    }
    return out
