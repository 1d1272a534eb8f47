"""Measure what each cleaning step buys in planted-source recovery (issue 8).

On the simulated recording (``fusi_nmf.simulate.simulate_recording``, with its
ground truth), run z-score -> pos/neg split -> NMF (k components, temporal and
spatial mode) after:

* ``raw``: no motion correction, no cleaning;
* ``registered``: :func:`fusi_nmf.registration.register_volumewise` only;
* ``registered + <step>``: registration plus one cleaning step alone;
* ``default chain``: registration plus :func:`fusi_nmf.signal.clean` with its
  defaults (:data:`fusi_nmf.signal.CLEAN_DEFAULTS`) and the brain mask.

and score each with :func:`fusi_nmf.metrics.source_recovery` (mean over the
planted sources of the matched |r| of time courses and of signed maps).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_cleaning.py \\
        --preset default --out benchmarks/results/cleaning_default.tsv

writes the table as TSV and, beside it, as Markdown (``.md``) for the book, and
prints it. Timings on the shared machine are noisy.
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

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.exceptions import ConvergenceWarning

from fusi_nmf import qc, signal
from fusi_nmf._atomic import write_text

# name -> (registered?, clean kwargs or None, use brain mask?)
# Every "registered + step" row runs that step alone (detrending off unless named).
_NO_CLEAN = {
    "detrend_order": None,
    "high_pass": None,
    "low_pass": None,
    "censor_fd": None,
    "censor_dvars": None,
    "smooth_fwhm_mm": None,
    "global_regression": False,
}


def conditions() -> dict[str, tuple[bool, dict | None, bool]]:
    """The rows of the table: (registered, clean() kwargs, brain mask)."""
    one = lambda **kw: {**_NO_CLEAN, **kw}  # noqa: E731
    return {
        "raw": (False, None, False),
        "registered": (True, None, False),
        "+ detrend order 1": (True, one(detrend_order=1), False),
        "+ high-pass 0.01 Hz": (True, one(high_pass=0.01), False),
        "+ high-pass 0.03 Hz": (True, one(high_pass=0.03), False),
        "+ low-pass 0.2 Hz": (True, one(low_pass=0.2), False),
        "+ censor FD > 0.05 mm": (True, one(censor_fd=0.05), False),
        "+ censor DVARS > 4 z": (True, one(censor_dvars=4.0), False),
        "+ global regression": (True, one(global_regression=True), False),
        "+ smooth 0.1 mm": (True, one(smooth_fwhm_mm=0.1), False),
        "+ smooth 0.2 mm": (True, one(smooth_fwhm_mm=0.2), False),
        "+ smooth 0.3 mm": (True, one(smooth_fwhm_mm=0.3), False),
        "+ brain mask": (True, one(), True),
        # candidate chains the default was chosen from (same order as clean())
        "chain A: detrend 1, censor FD+DVARS": (
            True,
            one(detrend_order=1, censor_fd=0.05, censor_dvars=4.0),
            True,
        ),
        "chain B: A + high-pass 0.01 Hz": (
            True,
            one(detrend_order=1, high_pass=0.01, censor_fd=0.05, censor_dvars=4.0),
            True,
        ),
        "chain C: A + smooth 0.2 mm": (
            True,
            one(detrend_order=1, censor_fd=0.05, censor_dvars=4.0, smooth_fwhm_mm=0.2),
            True,
        ),
        "default chain": (True, {}, True),
    }


def recovery(data: xr.DataArray, truth: xr.Dataset, k: int, mode: str, mask) -> tuple:
    """Mean matched |r| (time course, map) of NMF on the z-scored pos/neg split."""
    from fusi_nmf.decomposition import NMF
    from fusi_nmf.metrics import source_recovery

    x = signal.split_sign(signal.standardize(data))
    model = NMF(n_components=k, mode=mode, random_state=0, mask=mask)
    with warnings.catch_warnings():  # recorded in converged_ and reported in the table
        warnings.simplefilter("ignore", ConvergenceWarning)
        tc = model.fit_transform(x)
    table = source_recovery(tc, model.maps_, truth)
    return float(table["timecourse_r"].mean()), float(table["map_r"].mean()), model.converged_


def measure_seed(preset: str, seed: int, k: int, only) -> list[dict]:
    """All rows of the table for one simulated recording."""
    from fusi_nmf.registration import register_volumewise
    from fusi_nmf.simulate import simulate_recording

    t0 = time.perf_counter()
    sim = simulate_recording(preset=preset, seed=seed)
    raw = sim["power_doppler"]
    log(f"[seed {seed}] simulated {dict(raw.sizes)} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    registered, motion = register_volumewise(raw, progress=False)
    log(f"[seed {seed}] registered in {time.perf_counter() - t0:.1f} s")
    fd = motion["framewise_displacement"]
    pct = np.percentile(fd.values, [50, 95, 100])
    log(f"[seed {seed}] FD (mm) median {pct[0]:.4f}, 95th pct {pct[1]:.4f}, max {pct[2]:.4f}")
    mask = qc.brain_mask(registered)
    log(f"[seed {seed}] brain mask: {int(mask.sum())} of {mask.size} voxels")

    rows = []
    for name, (use_reg, kwargs, use_mask) in conditions().items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        data = registered if use_reg else raw
        censored = 0
        if kwargs is not None:
            data = signal.clean(data, motion=motion, mask=mask, progress=False, **kwargs)
            censored = int(data.attrs.get("censored_frames", 0))
        row = {"seed": seed, "condition": name, "censored_frames": censored}
        for mode in ("temporal", "spatial"):
            r_tc, r_map, converged = recovery(data, sim, k, mode, mask if use_mask else None)
            row[f"{mode}_timecourse_r"] = r_tc
            row[f"{mode}_map_r"] = r_map
            row[f"{mode}_converged"] = converged
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        log(
            f"[seed {seed}] {name:36s} temporal tc {row['temporal_timecourse_r']:.3f} map "
            f"{row['temporal_map_r']:.3f} | spatial tc {row['spatial_timecourse_r']:.3f} "
            f"map {row['spatial_map_r']:.3f} ({row['seconds']:.0f} s)"
        )
    return rows


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["default", "small"])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="simulation seeds (rows are averaged)"
    )
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="TSV path (.md written beside)")
    parser.add_argument("--only", nargs="*", default=None, help="subset of row names")
    args = parser.parse_args(argv)

    per_seed = pd.DataFrame(
        [
            row
            for seed in args.seeds
            for row in measure_seed(args.preset, seed, args.n_components, args.only)
        ]
    )
    order = list(dict.fromkeys(per_seed["condition"]))
    metrics = [
        "temporal_timecourse_r",
        "temporal_map_r",
        "spatial_timecourse_r",
        "spatial_map_r",
    ]
    grouped = per_seed.groupby("condition", sort=False)
    table = grouped[[*metrics, "censored_frames", "seconds"]].mean().loc[order]
    table["n_not_converged"] = (
        (~grouped["temporal_converged"].all()).astype(int)
        + (~grouped["spatial_converged"].all()).astype(int)
    ).loc[order]
    if len(args.seeds) > 1:
        for m in ("temporal_timecourse_r", "spatial_timecourse_r"):
            table[f"{m}_sd"] = grouped[m].std(ddof=1).loc[order]
    if "registered" in table.index:
        ref = table.loc["registered"]
        table["temporal_tc_gain"] = table["temporal_timecourse_r"] - ref["temporal_timecourse_r"]
        table["spatial_tc_gain"] = table["spatial_timecourse_r"] - ref["spatial_timecourse_r"]
        table["temporal_map_gain"] = table["temporal_map_r"] - ref["temporal_map_r"]
        table["spatial_map_gain"] = table["spatial_map_r"] - ref["spatial_map_r"]
    header = (
        f"preset={args.preset} seeds={args.seeds} k={args.n_components}; mean over seeds of "
        f"the mean matched |r| over planted sources; clean() defaults {signal.CLEAN_DEFAULTS}"
    )
    print(header)
    print(table.round(3).to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, f"# {header}\n" + table.round(4).to_csv(sep="\t"))
        md = table.drop(columns=["seconds"]).round(3).to_markdown()
        write_text(args.out.with_suffix(".md"), f"{md}\n\n{header}\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
