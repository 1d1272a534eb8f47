"""What each cleaning step buys in planted-source recovery, with chance and ceiling.

On simulated recordings (``fusi_nmf.simulate.simulate_recording``, with every real-data
trait on), each condition runs z-score -> pos/neg split -> NMF (k components, temporal
and spatial mode) and is scored by :func:`fusi_nmf.metrics.recovery_with_chance`: mean
one-to-one (Hungarian) matched |r| of time courses and of signed maps over the planted
sources, beside its chance level (the same outputs against circularly time-shifted
truth and against the other seeds' sources) and the chance-corrected score
``(r - chance) / (1 - chance)``. The ceiling is the same condition on the same
recording simulated without motion or nuisances (same sources, same noise).

Two row sets:

* ``--rows tune``: candidate chains, to choose :data:`fusi_nmf.signal.CLEAN_DEFAULTS`
  (run on the tuning seeds only, e.g. ``--seeds 0 1``);
* ``--rows table`` (default): the original analysis (``reference``), registration with
  this package's NMF and no cleaning, each cleaning step alone and the default chain,
  to report on seeds the defaults were not chosen on (e.g. ``--seeds 10 11 12``).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_cleaning.py \\
        --preset default --seeds 10 11 12 --out benchmarks/results/cleaning_default.tsv

writes the per-seed rows (``*_per_seed.tsv``), the table as TSV and, beside it, as
Markdown (``.md``), and prints it. Timings on the shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FUSI_NMF_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from _recovery import MODES, score_modes

from fusi_nmf import signal
from fusi_nmf._atomic import write_text
from fusi_nmf.registration import register_volumewise
from fusi_nmf.simulate import SIMULATOR_VERSION, simulate_recording

_NO_CLEAN = {
    "detrend_order": None,
    "high_pass": None,
    "low_pass": None,
    "censor_fd": None,
    "censor_dvars": None,
    "smooth_fwhm_mm": None,
    "global_regression": False,
}


def one(**kw) -> dict:
    """One cleaning step alone (everything else off)."""
    return {**_NO_CLEAN, **kw}


def chain(**kw) -> dict:
    """The current defaults with some settings changed."""
    return {**signal.CLEAN_DEFAULTS, **kw}


def conditions(rows: str) -> dict[str, tuple[str, dict | None]]:
    """name -> (analysis, clean() kwargs or None for no cleaning)."""
    if rows == "tune":
        base = {
            "detrend_order": 1, "high_pass": 0.01, "low_pass": None, "censor_fd": 0.05,
            "censor_dvars": 4.0, "censor_method": "interpolate", "global_regression": False,
        }
        return {
            "A: hp 0.01, censor, smooth 0.2 power": (
                "default", {**base, "smooth_fwhm_mm": 0.2, "smooth_after_zscore": False}),
            "B: hp 0.01, censor, smooth 0.2 z": (
                "default", {**base, "smooth_fwhm_mm": 0.2, "smooth_after_zscore": True}),
            "C: hp 0.01, censor, smooth 0.3 z": (
                "default", {**base, "smooth_fwhm_mm": 0.3, "smooth_after_zscore": True}),
            "D: hp 0.01, censor, smooth 0.1 z": (
                "default", {**base, "smooth_fwhm_mm": 0.1, "smooth_after_zscore": True}),
            "E: hp 0.02, censor, smooth 0.2 z": (
                "default", {**base, "high_pass": 0.02, "smooth_fwhm_mm": 0.2,
                            "smooth_after_zscore": True}),
            "F: hp 0.01, no censor, smooth 0.2 z": (
                "default", {**base, "censor_fd": None, "censor_dvars": None,
                            "smooth_fwhm_mm": 0.2, "smooth_after_zscore": True}),
            "G: hp 0.01, censor, smooth 0.2 z, GSR": (
                "default", {**base, "smooth_fwhm_mm": 0.2, "smooth_after_zscore": True,
                            "global_regression": True}),
        }
    return {
        "reference (ConfUSIus example)": ("reference", None),
        "raw": ("raw", None),
        "registered": ("default", None),
        "+ high-pass 0.01 Hz": ("default", one(high_pass=0.01)),
        "+ censor FD > 0.05 mm, DVARS > 4 z": ("default", one(censor_fd=0.05, censor_dvars=4.0)),
        "+ smooth 0.2 mm (z-scores)": (
            "default", one(smooth_fwhm_mm=0.2, smooth_after_zscore=True)),
        "+ smooth 0.2 mm (raw power)": (
            "default", one(smooth_fwhm_mm=0.2, smooth_after_zscore=False)),
        "+ global regression": ("default", one(global_regression=True)),
        "default chain, smoothing raw power": ("default", chain(smooth_after_zscore=False)),
        "default chain": ("default", chain()),
    }


def run_condition(registered, motion, truth, others, analysis, kwargs, k) -> dict:
    data, censored = registered, 0
    if analysis == "raw":  # no motion correction, this package's NMF
        data, analysis = truth["power_doppler"], "default"
    if kwargs is not None:
        with warnings.catch_warnings():  # the censored count is in the table
            warnings.simplefilter("ignore", UserWarning)
            data = signal.clean(registered, motion=motion, progress=False, **kwargs)
        censored = int(data.attrs.get("censored_frames", 0))
    return score_modes(data, truth, others, analysis, k, censored)


def measure_seed(preset, seed, k, rows, others, ceiling_rows) -> list[dict]:
    """All rows for one seed (and the ceiling of ``ceiling_rows``)."""
    out = []
    for ceiling in (False, True) if ceiling_rows else (False,):
        t0 = time.perf_counter()
        sim = simulate_recording(preset=preset, seed=seed, nuisance=not ceiling)
        registered, motion = register_volumewise(sim["power_doppler"], progress=False)
        log(f"[seed {seed}{' ceiling' if ceiling else ''}] simulated + registered in "
            f"{time.perf_counter() - t0:.0f} s")
        for name, (analysis, kwargs) in conditions(rows).items():
            if ceiling and name not in ceiling_rows:
                continue
            t0 = time.perf_counter()
            row = run_condition(registered, motion["parameters"], sim, others, analysis,
                                kwargs, k)
            row.update(seed=seed, condition=name, ceiling=ceiling,
                       seconds=time.perf_counter() - t0)
            out.append(row)
            tag = " ceiling" if ceiling else ""
            log(f"[seed {seed}{tag}] {name:38s} tc {row['temporal_timecourse_r']:.3f} "
                f"(chance {row['temporal_timecourse_chance']:.3f}) / "
                f"{row['spatial_timecourse_r']:.3f} | map {row['temporal_map_r']:.3f} "
                f"(chance {row['temporal_map_chance']:.3f}) ({row['seconds']:.0f} s)")
    return out


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds; the ceiling's corrected scores as ``*_ceiling`` columns."""
    metrics = [c for c in per_seed.columns if c.startswith(("temporal_", "spatial_"))]
    order = list(dict.fromkeys(per_seed["condition"]))
    main = per_seed[~per_seed["ceiling"]].groupby("condition", sort=False)
    table = main[[*metrics, "censored_frames"]].mean().loc[order]
    for mode in MODES:
        table[f"{mode}_timecourse_corrected_sd"] = main[f"{mode}_timecourse_corrected"].std(ddof=1)
    ceil = per_seed[per_seed["ceiling"]].groupby("condition", sort=False)
    for mode in MODES:
        for what in ("timecourse", "map"):
            col = f"{mode}_{what}_r"
            table[f"{col}_ceiling"] = ceil[col].mean().reindex(table.index)
            table[f"{mode}_{what}_corrected_ceiling"] = (
                ceil[f"{mode}_{what}_corrected"].mean().reindex(table.index)
            )
    table.index.name = "condition"
    return table


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["default", "small"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--rows", default="table", choices=["table", "tune"])
    parser.add_argument("--out", type=Path, default=None, help="TSV path (.md written beside)")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds: each seed's map chance level uses the others")

    truths = {s: simulate_recording(args.preset, s).drop_vars(["power_doppler", "clean"])
              for s in args.seeds}
    # tuning compares candidates with each other: no ceiling needed there
    ceiling_rows = (
        set() if args.rows == "tune"
        else {"reference (ConfUSIus example)", "registered", "default chain"}
    )
    rows = []
    for seed in args.seeds:
        others = [t for s, t in truths.items() if s != seed]
        rows += measure_seed(args.preset, seed, args.n_components, args.rows, others,
                             ceiling_rows)
    per_seed = pd.DataFrame(rows)
    table = summarise(per_seed)
    header = (
        f"preset={args.preset} seeds={args.seeds} k={args.n_components} rows={args.rows}; "
        "mean over seeds of the mean one-to-one matched |r| over planted sources; chance = "
        "same outputs vs circularly shifted truth and other seeds' sources; corrected = "
        "(r - chance)/(1 - chance); ceiling = same condition without motion or nuisances; "
        f"simulator v{SIMULATOR_VERSION} defaults; CLEAN_DEFAULTS {signal.CLEAN_DEFAULTS}"
    )
    print(header)
    show = [c for c in table.columns if "timecourse" in c and "temporal" in c]
    print(table[show].round(3).to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, f"# {header}\n" + table.round(4).to_csv(sep="\t"))
        write_text(args.out.with_name(args.out.stem + "_per_seed.tsv"),
                   per_seed.round(4).to_csv(sep="\t", index=False))
        write_text(args.out.with_suffix(".md"), f"{table.round(3).to_markdown()}\n\n{header}\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

