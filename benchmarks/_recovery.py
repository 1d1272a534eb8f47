"""Shared by measure_cleaning.py and snr_sweep.py: run an analysis, score it (chance, ceiling).

An *analysis* is what happens between the raw recording and the NMF time courses:

* ``reference``: the ConfUSIus example "NMF on a single fUSI recording": rigid
  registration -> z-score -> pos/neg split -> scikit-learn NMF (coordinate descent);
  spatial-mode time courses are the centred projection of the data onto the maps.
* ``default``: this package's default chain: registration -> :func:`fusi_nmf.signal.clean`
  with :data:`~fusi_nmf.signal.CLEAN_DEFAULTS` (or the given settings) -> z-score ->
  split -> NMF (``solver="hals"``), as ``PipelineConfig()`` runs it.

Scores (:func:`fusi_nmf.metrics.recovery_with_chance`): mean one-to-one matched |r| of
time courses and of signed maps, their chance levels (circularly shifted truth time
courses; other seeds' sources for maps and time courses) and chance-corrected values.
The ceiling is the same analysis on the same recording simulated without motion or
any nuisance (``simulate_recording(..., nuisance=False)``: same sources, same noise).
"""

from __future__ import annotations

import warnings

import xarray as xr
from sklearn.exceptions import ConvergenceWarning

from fusi_nmf import signal
from fusi_nmf.decomposition import NMF
from fusi_nmf.metrics import recovery_with_chance
from fusi_nmf.registration import register_volumewise

MODES = ("temporal", "spatial")


def preprocess(raw: xr.DataArray, analysis: str, clean_kwargs: dict | None = None):
    """Registered (and, for ``default``, cleaned) recording; returns (data, censored frames)."""
    registered, motion = register_volumewise(raw, progress=False)
    if analysis == "reference":
        return registered, 0
    kwargs = dict(signal.CLEAN_DEFAULTS if clean_kwargs is None else clean_kwargs)
    with warnings.catch_warnings():  # the censored share is returned and reported
        warnings.simplefilter("ignore", UserWarning)
        data = signal.clean(registered, motion=motion["parameters"], progress=False, **kwargs)
    return data, int(data.attrs.get("censored_frames", 0))


def fit(data: xr.DataArray, analysis: str, mode: str, k: int):
    """NMF time courses and maps of the z-scored pos/neg split, as the analysis fits them."""
    x = signal.split_sign(signal.standardize(data))
    if analysis == "reference":
        model = NMF(n_components=k, mode=mode, solver="cd", random_state=0, max_iter=500,
                    timecourses="projection")
    else:
        model = NMF(n_components=k, mode=mode, random_state=0, max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tc = model.fit_transform(x)
    return tc, model.maps_


def score(raw: xr.DataArray, truth: xr.Dataset, others, analysis: str, k: int,
          clean_kwargs: dict | None = None) -> dict:
    """Scores (with chance levels) of both modes for one recording."""
    data, censored = preprocess(raw, analysis, clean_kwargs)
    return score_modes(data, truth, others, analysis, k, censored)


def score_modes(data: xr.DataArray, truth: xr.Dataset, others, analysis: str, k: int,
                censored: int) -> dict:
    """Scores (with chance levels) of both NMF modes on already preprocessed data."""
    row: dict = {"censored_frames": censored}
    for mode in MODES:
        tc, maps = fit(data, analysis, mode, k)
        for key, value in recovery_with_chance(tc, maps, truth, other_truths=others).items():
            row[f"{mode}_{key}"] = value
    return row
