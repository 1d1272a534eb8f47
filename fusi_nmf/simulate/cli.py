"""``python -m fusi_nmf simulate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fusi_nmf.simulate._base import PRESETS
from fusi_nmf.simulate.bids import recording_path, write_simulated_dataset
from fusi_nmf.simulate.cache import simulated_dataset
from fusi_nmf.simulate.model import simulate_recording

# --------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``python -m fusi_nmf simulate``."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated recording (BIDS layout) with ground truth",
        description=(
            "Simulate a fUSI Power Doppler recording with ground truth and write it in the "
            "real dataset's BIDS layout. Without --out it goes to the cache "
            "($FUSI_NMF_DATA or ~/.cache/fusi-nmf)/simulated/<preset>-seed<seed>."
        ),
    )
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="BIDS root to write (default: the cache)")
    p.add_argument("--data-dir", type=Path, default=None, help="cache folder (without --out)")
    p.add_argument("--n-frames", type=int, default=None)
    p.add_argument("--dropped-frames", type=int, default=0,
                   help="drop this many frames (recording and truth), needs --out")
    p.add_argument("--regular-timing", action="store_true",
                   help="write RepetitionTime on a regular grid instead of the converter's "
                   "irregular VolumeTiming (needs --out)")
    for flag in ("motion", "drift", "global-signal", "surges", "noise"):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"switch {flag} off")
    p.set_defaults(func=_cli)
    return p


def _cli(args: argparse.Namespace) -> int:
    flags = {
        "motion": not args.no_motion,
        "drift": not args.no_drift,
        "global_signal": not args.no_global_signal,
        "surges": not args.no_surges,
        "noise": not args.no_noise,
    }
    if args.out is None:
        if (args.n_frames is not None or not all(flags.values()) or args.dropped_frames
                or args.regular_timing):
            raise ValueError(
                "--n-frames, --dropped-frames, --regular-timing and --no-* options need "
                "--out DIR (the cache holds presets only)."
            )
        root = simulated_dataset(args.preset, args.seed, args.data_dir)
        print(recording_path(root))
        return 0
    sim = simulate_recording(args.preset, args.seed, n_frames=args.n_frames, **flags)
    print(write_simulated_dataset(args.out, sim, dropped_frames=args.dropped_frames,
                                  timing="regular" if args.regular_timing else "converter"))
    return 0
