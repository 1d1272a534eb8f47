"""The pipeline as cached stages: load -> register -> clean -> standardize -> split -> NMF.

:class:`Workspace` is what notebooks, the ``run`` command and sweeps call. Each stage
is computed once and cached in ``work_dir`` under a key made of everything it depends
on: the sha256 of the recording's bytes **and** of its JSON sidecar (so an edited sidecar
or a replaced image with the same size and modification time is recomputed), every
parameter the stage uses, and :data:`CACHE_VERSION`. A chapter notebook runs alone and a
chain of notebooks does not redo work. Hashing the full-size simulated recording (25 MB)
costs about 0.02 s, a tenth of loading it (``benchmarks/bench_input_digest.py``), and is
done once: the simulated cache's verification hash of the same bytes is reused. Cache
files are NetCDF (readable with ``xarray.open_dataset``) written atomically, each with a
sha256 checksum that is verified before use; a missing or corrupt entry is simply
recomputed, and the temporary files of a killed run are removed by the next one.
Runs may share a work folder (the book's chapters run side by side, a sweep with
``--jobs``): a stage being computed is locked (``flock`` on ``.locks/<stage>-<key>.lock``
until it is saved), so another run asking for it waits and reads it instead of computing
it again.

Every stage computes with :data:`BLAS_THREADS` BLAS/OpenMP thread(s) (threadpoolctl):
results depend on the thread count in the last digits (up to 1e-4 between 1 and 2
threads), so fixing it keeps cached and fresh results identical on any machine.

Degenerate input (a constant or all-zero recording, fewer frames than the enabled steps
need, more components than the data allows) is rejected with a clear error before any
stage runs. :meth:`Workspace.run` writes one run per output folder: ``manifest.json``
lists the files of the run with their sha256; output files an earlier run left there are
removed, and output files no manifest lists are refused before any work.

Examples
--------
>>> from fusi_nmf.pipeline import Workspace
>>> ws = Workspace("work", dataset="simulated", preset="small")   # doctest: +SKIP
>>> result = ws.nmf(mode="temporal")                                # doctest: +SKIP
>>> result.maps.dims                                                # doctest: +SKIP
('component', 'sign', 'z', 'y', 'x')
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import inspect
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from fusi_nmf import _atomic
from fusi_nmf._progress import status
from fusi_nmf._util import file_digest, recorded_digests
from fusi_nmf._values import parse_value
from fusi_nmf.io import sidecar_path
from fusi_nmf.signal import CLEAN_DEFAULTS, STANDARDIZE_METHODS, filter_temporal
from fusi_nmf.simulate import PRESETS
from fusi_nmf.timing import DEFAULT_MAX_GAP, FrameTiming, inspect_timing, resample_uniform

__all__ = ["NMFResult", "PipelineConfig", "Workspace", "run_pipeline"]

# Bump when a stage's computation changes so old caches are not reused.
CACHE_VERSION = 3  # 3: registration package (float32 Gauss-Newton, in-plane model)
#: BLAS/OpenMP threads every stage computes with (part of what CACHE_VERSION stands for).
BLAS_THREADS = 1
MODES = ("temporal", "spatial")
TRANSFORMS = ("rigid", "translation")
NMF_INITS = ("nndsvda", "nndsvd", "nndsvdar", "random")
NMF_SOLVERS = ("hals", "cd", "mu")
ANALYSES = ("default", "reference")
CENSOR_METHODS = ("interpolate", "drop")
#: Allowed values of the string fields of :class:`PipelineConfig` (validation and CLI).
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "preset": tuple(PRESETS),
    "transform": TRANSFORMS,
    "standardize": STANDARDIZE_METHODS,
    "init": NMF_INITS,
    "solver": NMF_SOLVERS,
    "censor_method": CENSOR_METHODS,
    "analysis": ANALYSES,
}
MANIFEST = "manifest.json"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class PipelineConfig:
    """Every parameter of the pipeline, validated on creation.

    Parameters
    ----------
    dataset : str
        ``"simulated"`` (the embedded default, with ground truth),
        ``"nunez-elizalde-2022"`` (downloaded from OSF) or a path to a ``*_pwd.nii.gz``.
    preset : str
        Simulated preset: ``"default"`` (the real recording's size) or ``"small"``.
    seed : int
        Simulator seed.
    data_dir : str or None
        Data/cache folder (None: ``$FUSI_NMF_DATA`` or ``~/.cache/fusi-nmf``).
    resample_time : bool
        Frame-timing stage right after loading (:mod:`fusi_nmf.timing`): when the
        frame onsets are irregular beyond :data:`fusi_nmf.timing.REGULAR_RTOL` (jitter,
        long intervals, dropped frames, as in the real recording), resample the
        recording linearly onto a uniform grid. A regular recording passes through
        untouched. Switched off, stages that need a regular grid (temporal filtering)
        fail with an error naming this switch.
    max_time_gap : float
        Longest interval between onsets (in nominal frame steps) the timing stage
        interpolates; a longer gap is an error that says what to do.
    registration : bool
        Rigid volume-wise motion correction.
    reference : str or int
        Registration template: ``"median"`` (robust low-motion median) or a frame index.
    transform : str
        Registration transform: ``"rigid"`` or ``"translation"``.
    cleaning : bool
        Apply the cleaning chain (:func:`fusi_nmf.signal.clean`) before z-scoring; the
        steps below are its settings (0 or None switches a step off). Defaults are
        :data:`fusi_nmf.signal.CLEAN_DEFAULTS`, chosen from the recovery measurement in
        ``benchmarks/measure_cleaning.py``.
    detrend_order : int
        Polynomial detrending order.
    high_pass : float
        High-pass cut-off in Hz (zero-phase Butterworth).
    censor_fd : float
        Censor (interpolate) frames whose framewise displacement exceeds this, in mm.
    censor_dvars : float
        Censor frames whose DVARS exceeds this robust z-score.
    smooth_fwhm_mm : float
        Gaussian spatial smoothing FWHM in mm.
    global_regression : bool
        Regress out the global signal (off by default: it can create anticorrelations).
    brain_mask : bool
        Fit NMF only inside an intensity/variance brain mask (:func:`fusi_nmf.qc.brain_mask`).
    standardize : str
        Per-voxel scaling: ``"zscore"`` or ``"psc"`` (percent signal change).
    n_components : int
        Number of NMF components.
    max_iter : int
        Maximum number of NMF iterations.
    random_state : int
        Seed of the NMF initialisation (used by ``init="random"``).
    init : str
        NMF initialisation: ``"nndsvda"`` (deterministic SVD-based, the default) or
        ``"random"`` (seed-dependent: use it to measure stability across seeds).
    solver : str
        NMF solver (:class:`fusi_nmf.decomposition.NMF`): ``"hals"`` (the default,
        scikit-learn's coordinate descent with one read of the data per iteration),
        ``"cd"`` (scikit-learn's coordinate descent as it runs it) or ``"mu"``.
    censor_method : str
        ``"interpolate"`` censored frames (the default: every frame kept, the
        invented ones marked in the outputs) or ``"drop"`` them.
    smooth_after_zscore : bool
        Smooth per-voxel z-scores instead of raw power (see :func:`fusi_nmf.signal.clean`).
    analysis : str
        ``"default"``: this package's chain. ``"reference"``: the original analysis
        of the ConfUSIus example "NMF on a single fUSI recording" one switch away:
        it sets ``cleaning=False`` and ``solver="cd"`` (whatever they were set to) and
        returns spatial-mode time courses as the centred projection of the data onto
        the maps (signed), as that example does. See the README for what the default
        changes and the measured effect.
    """

    dataset: str = "simulated"
    preset: str = "default"
    seed: int = 0
    data_dir: str | None = None
    resample_time: bool = True
    max_time_gap: float = DEFAULT_MAX_GAP
    registration: bool = True
    reference: str | int = "median"
    transform: str = "rigid"
    cleaning: bool = True
    detrend_order: int | None = CLEAN_DEFAULTS["detrend_order"]
    high_pass: float | None = CLEAN_DEFAULTS["high_pass"]
    censor_fd: float | None = CLEAN_DEFAULTS["censor_fd"]
    censor_dvars: float | None = CLEAN_DEFAULTS["censor_dvars"]
    smooth_fwhm_mm: float | None = CLEAN_DEFAULTS["smooth_fwhm_mm"]
    global_regression: bool = bool(CLEAN_DEFAULTS["global_regression"])
    brain_mask: bool = False
    standardize: str = "zscore"
    n_components: int = 10
    max_iter: int = 500
    random_state: int = 0
    init: str = "nndsvda"
    solver: str = "hals"
    censor_method: str = str(CLEAN_DEFAULTS["censor_method"])
    smooth_after_zscore: bool = bool(CLEAN_DEFAULTS["smooth_after_zscore"])
    analysis: str = "default"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"PipelineConfig: {name}={getattr(self, name)!r} {why}")

        if self.analysis == "reference":
            if self.solver == "mu":
                bad("solver", "contradicts analysis='reference' (which uses solver='cd')")
            # the reference example: no cleaning, scikit-learn's coordinate descent
            object.__setattr__(self, "cleaning", False)
            object.__setattr__(self, "solver", "cd")

        if not isinstance(self.dataset, str | os.PathLike) or not str(self.dataset):
            bad("dataset", "must be 'simulated', 'nunez-elizalde-2022' or a path to a *_pwd.nii.gz")
        for name, choices in FIELD_CHOICES.items():
            if getattr(self, name) not in choices:
                bad(name, f"must be one of {choices}")
        for name in ("seed", "n_components", "max_iter", "random_state"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                bad(name, "must be an integer")
        if self.n_components < 1:
            bad("n_components", "must be >= 1")
        if self.max_iter < 1:
            bad("max_iter", "must be >= 1")
        if (
            isinstance(self.max_time_gap, bool)
            or not isinstance(self.max_time_gap, int | float)
            or not (self.max_time_gap > 1)
        ):
            bad("max_time_gap", "must be a number of nominal frame steps > 1")
        if not (self.reference == "median" or isinstance(self.reference, int | np.integer)):
            bad("reference", "must be 'median' or a frame index")
        for name in ("high_pass", "censor_fd", "censor_dvars", "smooth_fwhm_mm"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                bad(name, "must be a non-negative number (0 or None switches the step off)")
        if self.detrend_order is not None and (
            isinstance(self.detrend_order, bool)
            or not isinstance(self.detrend_order, int | np.integer)
            or self.detrend_order < 0
        ):
            bad("detrend_order", "must be a non-negative integer (0 or None: no detrending)")

    def cleaning_settings(self) -> dict[str, Any]:
        """Keyword arguments for :func:`fusi_nmf.signal.clean` (0 -> step off)."""
        return {
            "detrend_order": self.detrend_order or None,
            "high_pass": self.high_pass or None,
            "censor_fd": self.censor_fd or None,
            "censor_dvars": self.censor_dvars or None,
            "smooth_fwhm_mm": self.smooth_fwhm_mm or None,
            "smooth_after_zscore": bool(self.smooth_after_zscore),
            "censor_method": self.censor_method,
            "global_regression": bool(self.global_regression),
        }

    def nmf_settings(self, mode: str = "temporal") -> dict[str, str]:
        """What the ``analysis`` decides about the NMF estimator, for ``mode``.

        Keyword arguments for :class:`fusi_nmf.decomposition.NMF`: ``solver`` (the
        configured one; ``"cd"`` under ``analysis="reference"``) and ``timecourses``
        (``"projection"``, the reference example's centred projection of the data onto
        the maps, for spatial mode under ``analysis="reference"``; else ``"factor"``).
        :meth:`Workspace.nmf` and the book's chapters both fit with these, so a chapter
        run with ``analysis="reference"`` fits what the pipeline fits.

        Parameters
        ----------
        mode : {"temporal", "spatial"}
            NMF mode.

        Returns
        -------
        dict
            ``{"solver": ..., "timecourses": ...}``.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        projection = self.analysis == "reference" and mode == "spatial"
        return {"solver": self.solver, "timecourses": "projection" if projection else "factor"}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PipelineConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"Unknown pipeline parameter(s) {unknown}; valid: {sorted(names)}")
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class NMFResult:
    """One NMF fit: maps ``(component, sign, z, y, x)`` and time courses ``(time, component)``."""

    mode: str
    maps: xr.DataArray
    timecourses: xr.DataArray
    reconstruction_err: float
    n_iter: int
    converged: bool
    explained_variance: float
    fit_seconds: float
    model: Any = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n_components": int(self.maps.sizes["component"]),
            "reconstruction_err": float(self.reconstruction_err),
            "explained_variance": float(self.explained_variance),
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "fit_seconds": float(self.fit_seconds),
        }


# ----------------------------------------------------------------------------- cache
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


_ATTRS_KEY = "fusi_nmf_attrs_json"


def _pack_attrs(attrs: dict[str, Any]) -> dict[str, str]:
    # netCDF3 (scipy) attrs hold only strings and numbers, and scipy stores them as
    # Python attributes of its file objects (an attr named "mode" breaks it): keep all
    # attrs as one JSON string instead.
    return {_ATTRS_KEY: json.dumps(attrs, default=_atomic._json_default)} if attrs else {}


def _unpack_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(attrs[_ATTRS_KEY]) if _ATTRS_KEY in attrs else dict(attrs)


def _to_dataset(obj: xr.DataArray | xr.Dataset) -> xr.Dataset:
    if isinstance(obj, xr.DataArray):
        ds = obj.to_dataset(name="__dataarray__")
        ds.attrs = {"__dataarray_name__": obj.name or "", **obj.attrs}
        ds["__dataarray__"].attrs = {}
    else:
        ds = obj.copy()
    ds.attrs = _pack_attrs(ds.attrs)
    for name in list(ds.variables):
        attrs = dict(ds[name].attrs)
        if ds[name].dtype == bool:  # netCDF3 has no bool: store int8, restore on load
            ds[name] = ds[name].astype("int8")
            attrs["__bool__"] = 1
        ds[name].attrs = _pack_attrs(attrs)
    return ds


def _from_dataset(ds: xr.Dataset) -> xr.DataArray | xr.Dataset:
    for name in list(ds.variables):
        attrs = _unpack_attrs(ds[name].attrs)
        if attrs.pop("__bool__", 0):
            ds[name] = ds[name].astype(bool)
        ds[name].attrs = attrs
    attrs = _unpack_attrs(ds.attrs)
    if "__dataarray__" in ds:
        da = ds["__dataarray__"]
        name = attrs.pop("__dataarray_name__", "") or None
        da.attrs = attrs
        return da.rename(name)
    ds.attrs = attrs
    return ds


class _Cache:
    """NetCDF files in a folder, each with a ``.sha256`` checksum beside it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, stage: str, key: str) -> Path:
        return self.folder / f"{stage}-{key}.nc"

    def lock(self, stage: str, key: str) -> _atomic.FileLock:
        """The lock held while one run computes and saves this entry."""
        return _atomic.FileLock(self.folder / ".locks" / f"{stage}-{key}.lock")

    def load(self, stage: str, key: str) -> xr.DataArray | xr.Dataset | None:
        path = self.path(stage, key)
        checksum = path.with_suffix(".sha256")
        if not (path.exists() and checksum.exists()):
            return None
        if file_digest(path) != checksum.read_text().strip():
            status(f"  cache entry {path.name} failed its checksum; recomputing")
            return None
        with xr.open_dataset(path, engine="scipy") as ds:
            return _from_dataset(ds.load())

    def save(self, stage: str, key: str, obj: xr.DataArray | xr.Dataset) -> Path:
        path = self.path(stage, key)
        with _atomic.atomic_path(path) as tmp:
            _to_dataset(obj).to_netcdf(tmp, engine="scipy")
        _atomic.write_text(path.with_suffix(".sha256"), file_digest(path) + "\n")
        return path


# ------------------------------------------------------------------------- workspace
class Workspace:
    """Cached pipeline stages for one recording and one set of parameters.

    Parameters
    ----------
    work_dir : str or Path
        Folder for cached stages (created if needed).
    config : PipelineConfig, optional
        All parameters; keyword ``overrides`` replace fields of it (or of the defaults).
    progress : bool, optional
        Progress lines/bars (default: on unless ``FUSI_NMF_PROGRESS=0``).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike = "work",
        config: PipelineConfig | None = None,
        *,
        progress: bool | None = None,
        **overrides: Any,
    ) -> None:
        base = (config or PipelineConfig()).to_dict()
        base.update(overrides)
        self.config = PipelineConfig.from_dict(base)
        self.work_dir = _prepare_folder(work_dir, "work_dir (--work-dir)")
        _atomic.clean_partial(self.work_dir)
        self.progress = progress
        #: wall time (s) of every stage this workspace computed or read from the cache
        self.timings: dict[str, float] = {}
        #: stages read from the cache instead of computed
        self.cache_hits: list[str] = []
        self._cache = _Cache(self.work_dir)
        self._memo: dict[str, Any] = {}
        # held while a stage's upstream stages are computed: run() fits the NMF modes on
        # two threads, and the stages they share must be computed once
        self._lock = threading.RLock()
        # run() hands computed stages to this writer thread, so that saving one overlaps
        # computing the next (~0.5 s of NetCDF + sha256 per run); None (outside run()):
        # a stage is saved before its method returns
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future] = []
        self._recording_path: Path | None = None
        # sha256 of files read in full while finding the recording (the simulated cache's
        # verification), reused by _input_id instead of hashing the same bytes again
        self._fetch_digests: dict[str, str] = {}
        self._input_digest: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Workspace({str(self.work_dir)!r}, {self.config})"

    # -- plumbing ---------------------------------------------------------------
    def _stage(
        self,
        stage: str,
        params: dict[str, Any],
        upstream: Callable[[], Any],
        compute: Callable[[Any], xr.DataArray | xr.Dataset],
    ) -> Any:
        """Cached ``compute(upstream())``; upstream stages run before this one's timer."""
        with self._lock:  # the input digest is computed once
            key = _digest({"v": CACHE_VERSION, "stage": stage, "input": self._input_id(), **params})
        memo_key = f"{stage}-{key}"
        if memo_key in self._memo:
            return self._memo[memo_key]
        start = time.perf_counter()
        cached = self._cache.load(stage, key)
        if cached is None:
            with self._lock:
                inputs = upstream()
            # Another run sharing this folder (a parallel chapter, a sweep run) may be
            # computing this very stage: wait for it and read its result instead.
            lock = self._cache.lock(stage, key).acquire()
            try:
                start = time.perf_counter()
                cached = self._cache.load(stage, key)
                if cached is None:
                    status(f"[fusi-nmf] {stage} ...", self.progress)
                    with threadpool_limits(limits=BLAS_THREADS):
                        cached = compute(inputs)
                    self.timings[stage] = time.perf_counter() - start
                    status(f"[fusi-nmf] {stage} done in {self.timings[stage]:.1f} s",
                           self.progress)
                    lock, release = None, lock.release
                    self._save(stage, key, cached, release)  # releases once saved
                else:
                    self.timings[stage] = time.perf_counter() - start
                    self.cache_hits.append(stage)
            finally:
                if lock is not None:
                    lock.release()
        else:
            self.timings[stage] = time.perf_counter() - start
            self.cache_hits.append(stage)
        self._memo[memo_key] = cached
        return cached

    def _save(
        self,
        stage: str,
        key: str,
        obj: xr.DataArray | xr.Dataset,
        release: Callable[[], None] = lambda: None,
    ) -> None:
        """Save a computed stage, then call ``release`` (the stage's lock), even on failure."""
        if self._writer is None:
            try:
                self._cache.save(stage, key, obj)
            finally:
                release()
            return
        # a copy taken now: the file holds what was computed, whatever the caller does
        # to the returned object meanwhile
        snapshot = obj.copy(deep=True)

        def save() -> Path:
            try:
                return self._cache.save(stage, key, snapshot)
            finally:
                release()

        self._writes.append(self._writer.submit(save))

    def _finish_writes(self, raise_errors: bool = True) -> None:
        """Wait for the writer thread's saves; re-raise the first that failed."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        writes, self._writes = self._writes, []
        for future in writes:
            if raise_errors:
                future.result()

    def _input_id(self) -> dict[str, Any]:
        """The recording's identity for cache keys: sha256 of the image and of its sidecar."""
        if self._input_digest is None:
            path = self.recording_path
            start = time.perf_counter()
            side = sidecar_path(path)

            def sha256(file: Path) -> str:
                return self._fetch_digests.get(os.path.abspath(file)) or file_digest(file)

            self._input_digest = {
                "image_sha256": sha256(path),
                "sidecar_sha256": sha256(side) if side.is_file() else None,
            }
            self.timings["input_digest"] = time.perf_counter() - start
        return self._input_digest

    # -- stages -----------------------------------------------------------------
    @property
    def recording_path(self) -> Path:
        """The ``*_pwd.nii.gz`` this workspace analyses (fetched/simulated on first use)."""
        if self._recording_path is None:
            from fusi_nmf.datasets import recording_path

            cfg = self.config
            start = time.perf_counter()
            with recorded_digests() as self._fetch_digests:
                self._recording_path = Path(
                    recording_path(
                        cfg.dataset,
                        preset=cfg.preset,
                        seed=cfg.seed,
                        data_dir=cfg.data_dir,
                        progress=self.progress,
                    )
                )
            self.timings.setdefault("fetch", time.perf_counter() - start)
        return self._recording_path

    def raw(self) -> xr.DataArray:
        """The recording as loaded: ``(time, z, y, x)`` float32 with physical coords."""
        if "raw" not in self._memo:
            from fusi_nmf.io import load_recording

            start = time.perf_counter()
            raw = load_recording(self.recording_path)
            self.timings.setdefault("load", time.perf_counter() - start)
            check_recording(raw, self.config)
            self._memo["raw"] = raw
        return self._memo["raw"]

    def frame_timing(self) -> FrameTiming:
        """The loaded recording's frame onsets (:func:`fusi_nmf.timing.inspect_timing`)."""
        return inspect_timing(self.raw())

    def timed(self) -> xr.DataArray:
        """The recording on a uniform time grid: the timing stage, right after loading.

        Irregular onsets are resampled (linear interpolation, original onsets in
        ``attrs["frame_onsets"]``) unless ``resample_time=False``; a regular recording
        is :meth:`raw` itself. Prints one report line.
        """
        if "timed" not in self._memo:
            raw, cfg = self.raw(), self.config
            info = self.frame_timing()
            if info.regular:
                out, line = raw, f"frame timing: {info.summary()}; no resampling needed"
            elif not cfg.resample_time:
                out = raw
                line = (
                    f"frame timing: {info.summary()}; NOT resampled (resample_time=False): "
                    "stages that need a regular grid will fail"
                )
            else:
                out = resample_uniform(raw, max_gap=cfg.max_time_gap, step=info.step)
                line = (
                    f"frame timing: {info.summary()}; resampled (linear) to "
                    f"{out.sizes['time']} frames every {info.step:.6g} s"
                )
            status(f"[fusi-nmf] {line}", self.progress)
            self._memo["timed"] = out
        return self._memo["timed"]

    def ground_truth(self) -> xr.Dataset | None:
        """Ground truth of a simulated recording, else None.

        The simulator's truth time courses (sources, motion, drift, ...) live at the
        frame onsets of the file. They are returned on the pipeline's time grid: passed
        through the same timing function with the same step and settings as the
        recording (:meth:`timed`), so they line up frame by frame with every stage's
        output, whether or not the onsets were resampled.
        """
        if self.config.dataset != "simulated":
            return None
        from fusi_nmf.simulate import load_ground_truth

        truth = load_ground_truth(self.recording_path)
        raw, timed = self.raw(), self.timed()
        if not np.array_equal(truth["time"].values, raw["time"].values):
            raise ValueError(
                f"the ground truth of {self.recording_path} is not on the recording's frame "
                "onsets (the files do not belong together); regenerate the simulated dataset."
            )
        if timed is raw:
            return truth
        return resample_uniform(
            truth, max_gap=self.config.max_time_gap, step=self.frame_timing().step
        )

    def _registration(self) -> xr.Dataset:
        from fusi_nmf.registration import register_volumewise

        cfg = self.config

        def compute(raw: xr.DataArray) -> xr.Dataset:
            registered, motion = register_volumewise(
                raw,
                reference=cfg.reference,
                transform=cfg.transform,
                progress=self.progress,
            )
            ds = motion.copy()
            ds["registered"] = registered
            ds.attrs = {
                "motion_attrs": dict(motion.attrs),
                "registered_attrs": dict(registered.attrs),
            }
            return ds

        return self._stage(
            "registration",
            {"reference": cfg.reference, "transform": cfg.transform} | self._timing_params(),
            self.timed,
            compute,
        )

    def registered(self) -> xr.DataArray:
        """Motion-corrected recording (:meth:`timed` itself when ``registration=False``)."""
        if not self.config.registration:
            return self.timed()
        ds = self._registration()
        out = ds["registered"].rename("power_doppler")
        out.attrs = dict(ds.attrs.get("registered_attrs", {}))
        return out

    def motion(self) -> xr.Dataset | None:
        """Motion parameters, framewise displacement and per-frame status (None if off)."""
        if not self.config.registration:
            return None
        ds = self._registration()
        ds = ds[[name for name in ds.data_vars if name != "registered"]]
        ds.attrs = dict(ds.attrs.get("motion_attrs", {}))
        return ds

    def registration_qc(self) -> dict[str, Any]:
        """Before/after mean and std images and mean correlation to the reference."""
        from fusi_nmf.registration import registration_qc

        return registration_qc(self.timed(), self.registered())

    def _timing_params(self) -> dict[str, Any]:
        return {
            "resample_time": self.config.resample_time,
            "max_time_gap": self.config.max_time_gap,
        }

    def _stage_params(self, upto: str) -> dict[str, Any]:
        cfg = self.config
        params: dict[str, Any] = {"registration": cfg.registration} | self._timing_params()
        if cfg.registration:
            params |= {"reference": cfg.reference, "transform": cfg.transform}
        if upto in ("cleaned", "standardized", "nmf"):
            params["cleaning"] = cfg.cleaning
            if cfg.cleaning:
                params["cleaning_settings"] = cfg.cleaning_settings()
        if upto in ("standardized", "nmf"):
            params["standardize"] = cfg.standardize
        if upto in ("cleaned", "standardized", "nmf"):
            params["brain_mask"] = cfg.brain_mask
        return params

    def cleaned(self) -> xr.DataArray:
        """Registered recording after the default cleaning chain (unchanged if off)."""
        cfg = self.config
        if not cfg.cleaning:
            return self.registered()
        from fusi_nmf.signal import clean

        def upstream() -> tuple[xr.DataArray, xr.DataArray | None]:
            motion = self.motion()
            return self.registered(), None if motion is None else motion["parameters"]

        return self._stage(
            "cleaned",
            self._stage_params("cleaned"),
            upstream,
            lambda inputs: clean(
                inputs[0],
                motion=inputs[1],
                mask=self.mask(),
                progress=self.progress,
                **cfg.cleaning_settings(),
            ),
        )

    def mask(self) -> xr.DataArray | None:
        """Boolean brain mask ``(z, y, x)`` of the registered recording (None if off)."""
        if not self.config.brain_mask:
            return None
        with self._lock:
            if "mask" not in self._memo:
                from fusi_nmf.qc import brain_mask

                self._memo["mask"] = brain_mask(self.registered())
        return self._memo["mask"]

    def standardized(self) -> xr.DataArray:
        """Each voxel standardized over time (z-score by default)."""
        from fusi_nmf.signal import standardize

        return self._stage(
            "standardized",
            self._stage_params("standardized"),
            self.cleaned,
            lambda cleaned: standardize(cleaned, method=self.config.standardize),
        )

    def split(self) -> xr.DataArray:
        """Standardized data split into non-negative ``sign=pos/neg`` channels."""
        from fusi_nmf.signal import split_sign

        if "split" not in self._memo:
            self._memo["split"] = split_sign(self.standardized())
        return self._memo["split"]

    def nmf(self, mode: str = "temporal", **nmf_params: Any) -> NMFResult:
        """Fit NMF in ``mode`` ("temporal" or "spatial") on the pos/neg split data.

        ``nmf_params`` override ``n_components``, ``max_iter``, ``random_state`` and
        ``init`` for this call (e.g. in a sweep over k inside one notebook), and may set
        the solver's stopping tolerance ``tol`` (default that of
        :class:`~fusi_nmf.decomposition.NMF`).
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        cfg = self.config
        unknown = set(nmf_params) - {"n_components", "max_iter", "random_state", "init", "tol"}
        if unknown:
            raise ValueError(f"Unknown NMF parameter(s) {sorted(unknown)}")
        settings = {
            "n_components": cfg.n_components,
            "max_iter": cfg.max_iter,
            "random_state": cfg.random_state,
            "init": cfg.init,
        } | nmf_params
        # before any stage runs: a k the data cannot hold fails now, not after cleaning
        with self._lock:  # loads the recording once
            check_n_components(settings["n_components"], self.timed())
        settings |= cfg.nmf_settings(mode)
        models: dict[str, Any] = {}

        def compute(split: xr.DataArray) -> xr.Dataset:
            from fusi_nmf.decomposition import NMF

            model = NMF(mode=mode, mask=self.mask(), **settings)
            start = time.perf_counter()
            timecourses = model.fit_transform(split)
            seconds = time.perf_counter() - start
            models["model"] = model
            return xr.Dataset(
                {"maps": model.maps_, "timecourses": timecourses},
                attrs={
                    "mode": mode,
                    "reconstruction_err": float(model.reconstruction_err_),
                    "n_iter": int(model.n_iter_),
                    "converged": int(bool(model.converged_)),
                    "explained_variance": float(model.explained_variance_),
                    "fit_seconds": seconds,
                },
            )

        stage = f"nmf_{mode}"
        ds = self._stage(stage, self._stage_params("nmf") | settings, self.split, compute)
        return NMFResult(
            mode=mode,
            maps=ds["maps"],
            timecourses=ds["timecourses"],
            reconstruction_err=float(ds.attrs["reconstruction_err"]),
            n_iter=int(ds.attrs["n_iter"]),
            converged=bool(ds.attrs["converged"]),
            explained_variance=float(ds.attrs["explained_variance"]),
            fit_seconds=float(ds.attrs["fit_seconds"]),
            model=models.get("model"),
        )

    # -- everything ---------------------------------------------------------------
    def run(
        self, modes: Sequence[str] = MODES, out_dir: str | os.PathLike | None = None
    ) -> dict[str, Any]:
        """Run every stage for ``modes``; write outputs to ``out_dir`` if given.

        Outputs: ``maps_<mode>.nii.gz`` (NIfTI, components/sign on the 4th/5th axis),
        ``timecourses_<mode>.tsv`` (time column in s), ``motion.tsv``, ``summary.json``
        (parameters, per-mode fit results, per-stage wall time, which stages came from
        the cache) and ``manifest.json`` (every file of this run with its sha256).

        ``out_dir`` holds one run: the files an earlier run listed in its manifest are
        replaced or removed; output files no manifest lists are refused before any
        computing (so is a path that is a file); other files are left alone.
        """
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"mode={mode!r} is not one of {MODES}")
        out = None if out_dir is None else _check_out_dir(out_dir)
        start = time.perf_counter()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fusi-nmf-cache")
        try:
            results = self._fit_modes(modes)
        except BaseException:
            self._finish_writes(raise_errors=False)
            raise
        self._finish_writes()  # every computed stage is in the cache when run() returns
        motion = self.motion()
        summary: dict[str, Any] = {
            "parameters": self.config.to_dict(),
            "recording": str(self.recording_path),
            "recording_sha256": self._input_id(),
            "shape": dict(self.timed().sizes),
            "frame_timing": self._timing_report(),
            "results": {mode: r.summary() for mode, r in results.items()},
        }
        censored = self._censored_frames()
        if censored is not None:
            summary["censored_frames"] = censored
        if motion is not None:
            summary["motion"] = {
                "mean_framewise_displacement_mm": float(motion["framewise_displacement"].mean()),
                "frames_not_converged": int((~motion["converged"].astype(bool)).sum()),
            }
        # taken last: stages recomputed on the way (e.g. after a failed checksum) count
        summary["timings_s"] = dict(self.timings)
        summary["cache_hits"] = list(self.cache_hits)
        summary["blas_threads"] = BLAS_THREADS
        summary["total_s"] = time.perf_counter() - start
        if out is not None:
            summary["outputs"] = self._write_outputs(out, results, motion, summary)
        return summary

    def _fit_modes(self, modes: Sequence[str]) -> dict[str, NMFResult]:
        """:meth:`nmf` for every mode (side by side on threads for the hals solver)."""
        if len(modes) > 1 and self.config.solver == "hals":
            # The modes' fits are independent and each is sequential with BLAS_THREADS
            # thread(s); numpy's BLAS and the CD kernel release the GIL, so on two
            # threads they give the same numbers (byte-identical outputs) as one after the
            # other, in about the longer fit's time when two cores are free (less gain when
            # other processes hold them: benchmarks/bench_targets.py). The
            # outer limit keeps BLAS at BLAS_THREADS while the threads' own stage limits
            # (threadpoolctl's settings are process-wide) enter and exit in any order.
            # solver="cd"/"mu" stay sequential: they record warnings with
            # warnings.catch_warnings, which is not thread-safe.
            with threadpool_limits(limits=BLAS_THREADS), ThreadPoolExecutor(len(modes)) as pool:
                futures = {mode: pool.submit(self.nmf, mode) for mode in modes}
                results = {mode: future.result() for mode, future in futures.items()}
        else:
            results = {mode: self.nmf(mode) for mode in modes}
        return results

    def _censored_frames(self) -> dict[str, Any] | None:
        """Which frames cleaning censored (None without cleaning or censoring)."""
        if not self.config.cleaning or not (self.config.censor_fd or self.config.censor_dvars):
            return None
        attrs = self.cleaned().attrs
        text = str(attrs.get("censored_indices", ""))
        indices = [int(i) for i in text.split(",") if i.strip()]
        return {
            "method": str(attrs.get("censor_method", self.config.censor_method)),
            "count": len(indices),
            "share": float(attrs.get("censored_share", 0.0)),
            "indices": indices,
        }

    def _write_outputs(
        self,
        out: Path,
        results: dict[str, NMFResult],
        motion: xr.Dataset | None,
        summary: dict[str, Any],
    ) -> dict[str, str]:
        from fusi_nmf.io import save_nifti

        names = [f"{kind}_{mode}" for mode in results for kind in ("maps", "timecourses")]
        files = {
            name: out / (name + (".nii.gz" if name.startswith("maps") else ".tsv"))
            for name in names
        }
        if motion is not None:
            files["motion"] = out / "motion.tsv"
        new = [*sorted(p.name for p in files.values()), SUMMARY]
        old = _manifest_files(out)
        # while files change the manifest says so, and names every file that may be there
        _atomic.write_json(
            out / MANIFEST,
            {"tool": "fusi-nmf run", "complete": False, "files": sorted(set(old) | set(new))},
        )
        for mode, result in results.items():
            save_nifti(result.maps, files[f"maps_{mode}"])
            table = result.timecourses.to_pandas()
            table.columns = [f"component_{c}" for c in table.columns]
            if "censored" in result.timecourses.coords:  # frames invented by interpolation
                table["censored"] = result.timecourses["censored"].values.astype(int)
            _atomic.write_text(files[f"timecourses_{mode}"], _to_tsv(table, ""))
        if motion is not None:
            table = motion["parameters"].to_pandas()
            table["framewise_displacement"] = motion["framewise_displacement"].to_pandas()
            _atomic.write_text(files["motion"], _to_tsv(table, ""))
        written = {name: str(path) for name, path in files.items()}
        _atomic.write_json(out / SUMMARY, summary | {"outputs": written})
        for stale in sorted(set(old) - set(new)):
            (out / stale).unlink(missing_ok=True)
        _atomic.write_json(
            out / MANIFEST,
            {
                "tool": "fusi-nmf run",
                "complete": True,
                "files": {name: {"sha256": file_digest(out / name)} for name in new},
            },
        )
        return written

    def _timing_report(self) -> dict[str, Any]:
        timed = self.timed()
        return self.frame_timing().to_dict() | {
            "resampled": timed is not self.raw(),
            "n_frames_out": int(timed.sizes["time"]),
            "onsets_s": [float(t) for t in self.raw()["time"].values],
        }


# ------------------------------------------------------------------- checks and outputs
def _prepare_folder(path: str | os.PathLike, what: str) -> Path:
    """Create folder ``path`` (and parents) or fail with a message naming ``what``."""
    folder = Path(path).expanduser().resolve()
    for part in [folder, *folder.parents]:
        if part.exists() and not part.is_dir():
            raise ValueError(
                f"{what}: {path} cannot be a folder because {part} is an existing file; "
                "choose another folder."
            )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _manifest_files(out: Path) -> list[str]:
    """Names of the files a previous run wrote in ``out`` (from its manifest)."""
    path = out / MANIFEST
    if path.is_file():
        try:
            files = json.loads(path.read_text()).get("files", [])
        except (json.JSONDecodeError, AttributeError):
            files = []
        return [str(name) for name in files if "/" not in str(name)] + [MANIFEST]
    # output folders written before manifests existed: summary.json listed the outputs
    summary = out / SUMMARY
    if summary.is_file():
        try:
            outputs = json.loads(summary.read_text()).get("outputs", {})
        except (json.JSONDecodeError, AttributeError):
            outputs = {}
        return [Path(p).name for p in outputs.values()] + [SUMMARY]
    return []


# names a run writes: an unlisted file with one of them would mix with this run's outputs
_OUTPUT_NAME = re.compile(
    r"(maps_\w+\.nii\.gz|timecourses_\w+\.tsv|motion\.tsv|summary\.json|manifest\.json)"
)


def _check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Validate (and create) an output folder before any computing.

    Files an earlier run listed in its manifest will be replaced or removed; an output
    file no manifest lists (a copy, a run from another tool version) is refused; other
    files (a sweep's notebook and record, your notes) are left alone.
    """
    out = _prepare_folder(out_dir, "out_dir (--out)")
    _atomic.clean_partial(out)
    known = set(_manifest_files(out))
    foreign = sorted(
        p.name for p in out.iterdir() if _OUTPUT_NAME.fullmatch(p.name) and p.name not in known
    )
    if foreign:
        raise ValueError(
            f"out_dir (--out): {out} holds output file(s) {', '.join(foreign)} that no run's "
            f"{MANIFEST} lists, so they cannot be told apart from this run's. Choose a new "
            "or empty folder, or move those files away."
        )
    return out


def min_frames(config: PipelineConfig) -> dict[str, int]:
    """Frames each enabled step of ``config`` needs at least: ``{step: n}``."""
    need = {"standardize (z-score needs a variance over time)": 3}
    if config.cleaning and config.detrend_order:
        # a polynomial of order d through d + 1 frames leaves nothing to standardize
        need[f"detrend_order={config.detrend_order} (--detrend-order 0 switches it off)"] = (
            config.detrend_order + 2
        )
    if config.cleaning and config.high_pass:
        order = inspect.signature(filter_temporal).parameters["order"].default
        # filter_temporal's padding rule; a Butterworth high-pass of order n has
        # ceil(n / 2) second-order sections (counted here: scipy.signal is slow to import)
        sections = -(-order // 2)
        need[f"high_pass={config.high_pass:g} Hz (--high-pass 0 switches it off)"] = (
            3 * (2 * sections + 1) + 1
        )
    return need


def check_recording(raw: xr.DataArray, config: PipelineConfig) -> None:
    """Reject data the pipeline cannot analyse, before any stage runs.

    Raises
    ------
    ValueError
        Fewer frames than the enabled steps need (the message names the step and how to
        switch it off), or a recording constant over time in every voxel (all zero
        included): it has no signal, and NMF would return all-zero components.
    """
    source = raw.attrs.get("source_file", "the recording")
    n_time = raw.sizes["time"]
    need = min_frames(config)
    # the z-score's need first: no switch helps a recording shorter than that
    step, n_min = next(iter(need.items()))
    if n_time >= n_min:
        step, n_min = max(need.items(), key=lambda item: item[1])
    if n_time < n_min:
        raise ValueError(
            f"{source} has {n_time} frame(s); {step} needs at least {n_min}. Use a longer "
            "recording or switch the step off."
        )
    values = np.asarray(raw.values)
    lo, hi = values.min(axis=0), values.max(axis=0)
    if np.array_equal(lo, hi):
        what = "is all zero" if not np.any(hi) else "does not change over time in any voxel"
        raise ValueError(
            f"{source} {what}: there is no signal to decompose (NMF would return all-zero "
            "components). Check that the file holds the Power Doppler recording you meant."
        )


def check_n_components(n_components: int, raw: xr.DataArray) -> None:
    """Reject ``n_components`` above what NMF can fit on ``raw``: ``min(frames, features)``."""
    n_time = raw.sizes["time"]
    n_feat = 2 * int(np.prod([n for d, n in raw.sizes.items() if d != "time"]))  # pos + neg
    limit = min(n_time, n_feat)
    if n_components > limit:
        raise ValueError(
            f"n_components={n_components} is more than {raw.attrs.get('source_file', 'the data')} "
            f"allows: NMF needs n_components <= min(frames, features) = min({n_time}, {n_feat}) "
            f"= {limit}; choose n_components (--n-components) <= {limit}."
        )


def _to_tsv(frame, prefix: str) -> str:
    frame = frame.copy()
    frame.columns = [f"{prefix}{c}" for c in frame.columns]
    frame.index.name = "time"
    return frame.to_csv(sep="\t", float_format="%.6g")


def run_pipeline(
    work_dir: str | os.PathLike = "work",
    out_dir: str | os.PathLike | None = None,
    modes: Sequence[str] = MODES,
    progress: bool | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run the whole pipeline with ``params`` (see :class:`PipelineConfig`); return the summary."""
    return Workspace(work_dir, progress=progress, **params).run(modes=modes, out_dir=out_dir)


# ----------------------------------------------------------------------------- CLI
# Options of the ``run`` command that are not PipelineConfig fields.
_RUN_OPTIONS = ("mode", "work_dir", "out", "quiet", "data", "simulate")


def _field_docs(cls: type) -> dict[str, str]:
    """``{name: description}`` from the numpydoc ``Parameters`` section of ``cls``."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    section = re.search(r"Parameters\n-+\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)", doc, re.S)
    docs: dict[str, str] = {}
    names: list[str] = []
    for line in (section.group(1) if section else "").splitlines():
        if line and not line.startswith(" ") and ":" in line:
            names = [n.strip() for n in line.split(":")[0].split(",")]
            for name in names:
                docs[name] = ""
        elif line.strip():
            for name in names:
                docs[name] = f"{docs[name]} {line.strip()}".strip()
    return docs


def _str_or_int(text: str) -> str | int:
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else text


def _option_type(annotation: str) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """argparse ``type`` and ``choices`` for a (string) field annotation."""
    literal = re.fullmatch(r"Literal\[(.*)\]", annotation.strip())
    if literal:
        choices = ast.literal_eval(f"({literal.group(1)},)")
        return type(choices[0]), choices
    kinds = {part.strip() for part in annotation.split("|")} - {"None"}
    if kinds == {"int"}:
        return int, None
    if kinds <= {"int", "float"}:
        return float, None
    if kinds == {"str", "int"}:
        return _str_or_int, None
    return str, None


def parse_config_value(name: str, value: Any) -> Any:
    """One :class:`PipelineConfig` setting from the command line, typed and validated.

    A string is parsed as ``sweep -p`` and ``book -p`` parse every value
    (:func:`fusi_nmf._values.parse_value`: YAML 1.2 core schema, so only ``true``/``false``
    are booleans, ``1e-3`` is 0.001 and ``010`` is 10) against the field's annotation; any
    value is then checked by :class:`PipelineConfig` itself, so a bad one fails here with
    its message.

    Parameters
    ----------
    name : str
        A field of :class:`PipelineConfig` (anything else: ``ValueError`` listing them).
    value : Any
        The value; strings are parsed, other values are only checked.

    Returns
    -------
    Any
        The typed value.
    """
    fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    if name not in fields:
        raise ValueError(f"{name!r} is not a pipeline setting; valid: {sorted(fields)}")
    if isinstance(value, str):
        value = parse_value(value, str(fields[name].type), name, "PipelineConfig")
    PipelineConfig.from_dict({name: value})
    return value


def add_config_arguments(
    parser: argparse.ArgumentParser, groups: dict[str, Any] | None = None
) -> None:
    """Add one option per :class:`PipelineConfig` field to ``parser``.

    Defaults, types and help come from the dataclass (its annotations, defaults and
    numpydoc), choices from :data:`FIELD_CHOICES`: a new field appears here with
    nothing else to edit. Booleans that default to True become ``--no-<name>``, those
    that default to False ``--<name>``. ``groups`` maps a field name to the argparse
    group (or parser) that should hold its option.
    """
    docs = _field_docs(PipelineConfig)
    # parser-level defaults: several options may share a field (--data, --simulate, --dataset)
    parser.set_defaults(**{f.name: f.default for f in dataclasses.fields(PipelineConfig)})
    for f in dataclasses.fields(PipelineConfig):
        if f.name in _RUN_OPTIONS:
            raise RuntimeError(f"PipelineConfig field {f.name!r} clashes with a run option")
        target = (groups or {}).get(f.name, parser)
        flag = f.name.replace("_", "-")
        # plain text for a terminal: drop RST roles and literal quotes, escape % for argparse
        help_text = re.sub(r":\w+:`~?([^`]+)`", r"\1", docs.get(f.name, "")).replace("``", "")
        help_text = (help_text or f"see PipelineConfig.{f.name}").replace("%", "%%")
        if f.type == "bool":
            if f.default:
                target.add_argument(
                    f"--no-{flag}",
                    dest=f.name,
                    action="store_false",
                    default=True,
                    help=f"{help_text} (on by default; this switches it off)",
                )
            else:
                target.add_argument(
                    f"--{flag}", dest=f.name, action="store_true", default=False, help=help_text
                )
            continue
        kind, choices = _option_type(str(f.type))
        target.add_argument(
            f"--{flag}",
            dest=f.name,
            type=kind,
            default=f.default,
            choices=FIELD_CHOICES.get(f.name, choices),
            metavar=None if (f.name in FIELD_CHOICES or choices) else f.name.upper(),
            help=f"{help_text} (default: %(default)s)",
        )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the pipeline on one recording and write maps, time courses and a summary",
        description="Load -> register -> clean -> z-score -> pos/neg split -> NMF; "
        "writes maps (NIfTI), time courses (TSV), summary.json and manifest.json to --out "
        "(one run per folder: files of an earlier run there are replaced or removed). "
        "Every pipeline option below is a field of fusi_nmf.pipeline.PipelineConfig, "
        "with its default.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        dest="dataset",
        metavar="PATH",
        help="a *_pwd.nii.gz recording (sidecar beside it); same as --dataset PATH",
    )
    src.add_argument(
        "--simulate",
        dest="dataset",
        action="store_const",
        const="simulated",
        help="the embedded simulated recording (same as --dataset simulated)",
    )
    clean_group = p.add_argument_group(
        "cleaning steps (0 switches a step off; defaults from benchmarks/measure_cleaning.py)"
    )
    groups: dict[str, Any] = {"dataset": src}
    groups |= {name: clean_group for name in CLEAN_DEFAULTS}
    add_config_arguments(p, groups)
    p.add_argument("--mode", default="temporal", choices=[*MODES, "both"])
    p.add_argument("--work-dir", default="work", help="cache folder for stages (default ./work)")
    p.add_argument(
        "--out",
        default="results",
        help="output folder, one run per folder (default ./results)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    modes = MODES if args.mode == "both" else (args.mode,)
    params = {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)}
    summary = run_pipeline(
        work_dir=args.work_dir,
        out_dir=args.out,
        modes=modes,
        progress=False if args.quiet else None,
        **params,
    )
    for mode, res in summary["results"].items():
        print(
            f"{mode:>8}: error {res['reconstruction_err']:.4g}, explained variance "
            f"{res['explained_variance']:.3f}, {res['n_iter']} iterations"
            f"{'' if res['converged'] else ' (NOT converged: raise --max-iter)'}"
        )
    ft = summary["frame_timing"]
    print(
        f"frame timing: {ft['n_frames']} onsets {ft['first_onset']:.6g}-{ft['last_onset']:.6g} s, "
        f"longest interval {ft['longest_interval']:.4g} s, ~{ft['dropped_frames']} dropped; "
        + (
            f"resampled to {ft['n_frames_out']} frames every {ft['step']:.6g} s"
            if ft["resampled"]
            else "not resampled"
        )
    )
    stages = ", ".join(
        f"{k} {v:.1f} s{' (cached)' if k in summary['cache_hits'] else ''}"
        for k, v in summary["timings_s"].items()
    )
    print(f"stages: {stages}")
    print(f"outputs in {Path(args.out).resolve()} (summary.json, manifest.json)")
    return 0
