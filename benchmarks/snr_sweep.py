"""Recovery across signal-to-noise: the original analysis against the default chain.

A grid of source peak amplitude (fraction of baseline power) x noise level (s.d. of
the multiplicative per-frame noise) of the simulator (every real-data trait on). In
each cell, for each seed, both analyses of ``_recovery.py`` run on the recording
(``reference``: the ConfUSIus example; ``default``: this package's chain) and on the
same recording without motion or nuisances (the ceiling), in temporal and spatial
mode, and are scored with :func:`fusi_nmf.metrics.recovery_with_chance` (chance: the
same outputs against circularly shifted truth and the other seeds' sources).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/snr_sweep.py --preset small \\
        --seeds 10 11 --out benchmarks/results/snr_sweep.tsv

writes one row per (amplitude, noise, analysis, mode) averaged over seeds (and the
per-seed rows beside it) and prints the chance-corrected time-course recovery of both
analyses and their difference per cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FUSI_NMF_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from _recovery import MODES, fit, preprocess

from fusi_nmf._atomic import write_text
from fusi_nmf.metrics import recovery_with_chance
from fusi_nmf.signal import CLEAN_DEFAULTS
from fusi_nmf.simulate import SOURCE_AMPLITUDE, SPECKLE_SD, simulate_recording

#: Source peak-amplitude ranges (low, high) swept; the last is the simulator default.
AMPLITUDES = ((0.05, 0.10), (0.10, 0.20), SOURCE_AMPLITUDE)
#: Noise s.d. swept; the middle one is the simulator default.
NOISE_SDS = (0.03, SPECKLE_SD, 0.12)
ANALYSES = ("reference", "default")


def run_cell(preset, seeds, k, amplitude, noise_sd) -> list[dict]:
    """Per-seed rows of one grid cell."""
    kw = {"source_amplitude": amplitude, "noise_sd": noise_sd}
    truths = {s: simulate_recording(preset, s, **kw) for s in seeds}
    rows = []
    for seed in seeds:
        others = [t for s, t in truths.items() if s != seed]
        for ceiling in (False, True):
            sim = simulate_recording(preset, seed, nuisance=False, **kw) if ceiling else truths[
                seed]
            for analysis in ANALYSES:
                t0 = time.perf_counter()
                data, censored = preprocess(sim["power_doppler"], analysis)
                for mode in MODES:
                    tc, maps = fit(data, analysis, mode, k)
                    score = recovery_with_chance(tc, maps, sim, other_truths=others)
                    rows.append({
                        "amplitude": f"{amplitude[0]:.2f}-{amplitude[1]:.2f}",
                        "noise_sd": round(float(noise_sd), 3), "seed": seed,
                        "ceiling": ceiling, "analysis": analysis, "mode": mode,
                        "censored_frames": censored, **score,
                    })
                t_mode, s_mode = (r["timecourse_corrected"] for r in rows[-2:])
                log(f"amp {amplitude} noise {noise_sd:.3f} seed {seed} "
                    f"{'ceiling ' if ceiling else ''}{analysis}: tc corrected "
                    f"{t_mode:.3f} / {s_mode:.3f} ({time.perf_counter() - t0:.0f} s)")
    return rows


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds; ceiling scores as ``*_ceiling`` columns beside each row."""
    keys = ["amplitude", "noise_sd", "analysis", "mode"]
    scores = ["timecourse_r", "timecourse_chance", "timecourse_corrected", "map_r",
              "map_chance", "map_corrected"]
    main = per_seed[~per_seed["ceiling"]].groupby(keys, sort=False)
    table = main[[*scores, "censored_frames"]].mean()
    table["timecourse_corrected_sd"] = main["timecourse_corrected"].std(ddof=1)
    ceil = per_seed[per_seed["ceiling"]].groupby(keys, sort=False)[scores].mean()
    for col in ("timecourse_r", "timecourse_corrected", "map_r", "map_corrected"):
        table[f"{col}_ceiling"] = ceil[col]
    return table.reset_index()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["default", "small"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11])
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds: each seed's map chance level uses the others")
    rows = []
    for amplitude in AMPLITUDES:
        for noise_sd in NOISE_SDS:
            rows += run_cell(args.preset, args.seeds, args.n_components, amplitude, noise_sd)
    per_seed = pd.DataFrame(rows)
    table = summarise(per_seed)
    header = (
        f"preset={args.preset} seeds={args.seeds} k={args.n_components}; amplitude = range "
        "of source peak fractional change, noise_sd = s.d. of the multiplicative noise; "
        "scores = mean one-to-one matched |r| over planted sources, chance = same outputs vs "
        "circularly shifted truth and other seeds' sources, corrected = (r - chance)/"
        "(1 - chance), *_ceiling = same analysis without motion or nuisances; reference = "
        "ConfUSIus example (no cleaning, sklearn cd, spatial projection), default = "
        f"CLEAN_DEFAULTS {CLEAN_DEFAULTS}"
    )
    wide = table.pivot_table(index=["amplitude", "noise_sd", "mode"], columns="analysis",
                             values="timecourse_corrected")
    wide["default - reference"] = wide["default"] - wide["reference"]
    print(header)
    print(wide.round(3).to_string())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, f"# {header}\n" + table.round(4).to_csv(sep="\t", index=False))
        write_text(args.out.with_name(args.out.stem + "_per_seed.tsv"),
                   per_seed.round(4).to_csv(sep="\t", index=False))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
