"""Benchmark: time vs recording length and vs number of components.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scaling.py
    .venv/bin/python benchmarks/bench_scaling.py --frames 751 1500 --components 5 10

Recording length: the simulated default recording with 751, 1500 and 3000
frames (``simulate_recording("default", n_frames=N)``): registration
(``register_volumewise``, rigid) and NMF in both modes (k=10). Components:
NMF in both modes on the 751-frame recording with k = 5, 10, 20, 40. Prints a
table and the log-log slope of time against size (1 = linear growth), and
writes ``benchmarks/results/bench_scaling.txt``. NMF times include the
iteration count, which depends on the data, so they grow less smoothly than
the cost per iteration (also shown).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nmf import machine_note, write_result


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def verdict(s: float) -> str:
    return "linear" if 0.8 <= s <= 1.2 else ("sub-linear" if s < 0.8 else "super-linear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[751, 1500, 3000])
    parser.add_argument("--components", type=int, nargs="+", default=[5, 10, 20, 40])
    args = parser.parse_args(argv)

    from fusi_nmf.decomposition import NMF
    from fusi_nmf.registration import register_volumewise
    from fusi_nmf.signal import split_sign, standardize
    from fusi_nmf.simulate import simulate_recording

    def nmf(X, k, mode):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = NMF(k, mode=mode, random_state=0)
            t0 = time.perf_counter()
            model.fit(X)
        return time.perf_counter() - t0, model.n_iter_

    lines = ["bench_scaling", machine_note()]
    head = f"{'frames':>6s} {'registration s':>14s} {'temporal s':>10s} {'iter':>5s} {'ms/it':>6s} {'spatial s':>9s} {'iter':>5s} {'ms/it':>6s}"  # noqa: E501
    lines += ["time vs recording length (k=10)", head, "-" * len(head)]
    by_len: dict[str, list[float]] = {
        key: [] for key in ("reg", "temporal", "spatial", "t_it", "s_it")
    }
    base = None
    for n in args.frames:
        pd_ = simulate_recording("default", seed=0, n_frames=n).power_doppler
        t0 = time.perf_counter()
        _registered, _ = register_volumewise(pd_, progress=False)
        t_reg = time.perf_counter() - t0
        X = split_sign(standardize(pd_))
        if base is None:
            base = X
        tt, it_t = nmf(X, 10, "temporal")
        ts, it_s = nmf(X, 10, "spatial")
        for key, v in (("reg", t_reg), ("temporal", tt), ("spatial", ts),
                       ("t_it", tt / it_t), ("s_it", ts / it_s)):  # fmt: skip
            by_len[key].append(v)
        lines.append(
            f"{n:6d} {t_reg:14.2f} {tt:10.2f} {it_t:5d} {1e3 * tt / it_t:6.1f} "
            f"{ts:9.2f} {it_s:5d} {1e3 * ts / it_s:6.1f}"
        )
    if len(args.frames) > 1:
        for key, label in (("reg", "registration"), ("temporal", "nmf temporal"),
                           ("spatial", "nmf spatial"), ("t_it", "temporal per iter"),
                           ("s_it", "spatial per iter")):  # fmt: skip
            s = slope(args.frames, by_len[key])
            lines.append(f"  log-log slope {label:18s} {s:5.2f} ({verdict(s)})")

    head = f"{'k':>4s} {'temporal s':>10s} {'iter':>5s} {'ms/it':>6s} {'spatial s':>9s} {'iter':>5s} {'ms/it':>6s}"  # noqa: E501
    lines += [f"time vs n_components ({args.frames[0]} frames)", head, "-" * len(head)]
    by_k: dict[str, list[float]] = {"temporal": [], "spatial": [], "t_it": [], "s_it": []}
    for k in args.components:
        tt, it_t = nmf(base, k, "temporal")
        ts, it_s = nmf(base, k, "spatial")
        for key, v in (("temporal", tt), ("spatial", ts), ("t_it", tt / it_t),
                       ("s_it", ts / it_s)):  # fmt: skip
            by_k[key].append(v)
        lines.append(
            f"{k:4d} {tt:10.2f} {it_t:5d} {1e3 * tt / it_t:6.1f} {ts:9.2f} {it_s:5d} "
            f"{1e3 * ts / it_s:6.1f}"
        )
    if len(args.components) > 1:
        labels = (("temporal", "nmf temporal"), ("spatial", "nmf spatial"),
                  ("t_it", "temporal per iter"), ("s_it", "spatial per iter"))  # fmt: skip
        for key, label in labels:
            s = slope(args.components, by_k[key])
            lines.append(f"  log-log slope {label:18s} {s:5.2f} ({verdict(s)})")
    text = "\n".join(lines)
    print(text)
    write_result("bench_scaling", text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
