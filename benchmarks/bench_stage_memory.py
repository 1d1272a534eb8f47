"""Benchmark: peak memory and time of the timing, registration and cleaning stages.

Run from the repository root::

    .venv/bin/python benchmarks/bench_stage_memory.py                        # this tree
    .venv/bin/python benchmarks/bench_stage_memory.py --baseline main --repeats 3

Each measurement is a fresh ``python -P`` process (``PYTHONPATH`` = the tree measured, a
fresh empty working directory and work folder, so every stage is computed) that loads
the simulated recording (``Workspace.raw``, from the data cache) and then runs
``Workspace.timed``, ``Workspace.registered`` and ``Workspace.cleaned`` in the
pipeline's order, each stage after the one before it. Per stage it reports:

* ``trace_MB``: the :mod:`tracemalloc` peak above the memory traced when the stage
  started (numpy reports its buffers to tracemalloc), in a process of its own, since
  tracing slows Python down;
* ``hwm_MB``: how much the stage raised the process's high-water mark (``VmHWM`` of
  ``/proc/self/status``): the fresh memory it touched. On this VM every fresh MB costs
  ~10 ms of system time, so this is what the peak costs in time. A stage whose peak
  stays below an earlier stage's raises it by 0: ``hwm_total_MB`` is the process's
  high-water mark after the stage (what the process as a whole touched so far);
* ``wall_s``, ``sys_s``, ``user_s``: wall time and the process's system and user CPU
  time spent in the stage (in the untraced process).

With ``--baseline COMMIT``, that commit is extracted with ``git archive`` (the
``extract`` helper of ``bench_targets.py``) and measured in the same run, interleaved
with this tree (baseline, current, current, baseline, ...), with its own data cache
(the simulated recording is made once per tree by a warm-up process). It prints the
medians per tree, the ratio current / baseline, and whether each stage's output values
(sha256) are equal in the two trees. The table goes to
``benchmarks/results/bench_stage_memory.txt``. Threads default to 1 (``--threads``):
the registration estimates ``n_threads`` chunks of frames side by side, so its peak
grows with the threads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nmf import machine_note, write_result
from bench_targets import extract, working_tree

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("timed", "registered", "cleaned")
METRICS = ("trace_MB", "hwm_MB", "hwm_total_MB", "wall_s", "sys_s", "user_s")

# Runs in the measured tree's own interpreter process; prints one JSON line.
CHILD = r"""
import hashlib, json, resource, sys, tempfile, time, tracemalloc
import numpy as np
import fusi_nmf
from fusi_nmf.pipeline import Workspace

preset, seed, trace, stages = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]


def hwm_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_stime, r.ru_utime


out = {"fusi_nmf": fusi_nmf.__file__, "stages": {}}
with tempfile.TemporaryDirectory() as work:
    ws = Workspace(work, preset=preset, seed=seed, progress=False)
    ws.raw()
    if trace:
        tracemalloc.start()
    for stage in stages:
        row = {}
        if trace:
            current = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        hwm0, (sys0, user0), t0 = hwm_mb(), cpu(), time.perf_counter()
        result = getattr(ws, stage)()
        wall = time.perf_counter() - t0
        sys1, user1 = cpu()
        if trace:
            row["trace_MB"] = (tracemalloc.get_traced_memory()[1] - current) / 2**20
        else:
            hwm1 = hwm_mb()
            row |= {"hwm_MB": hwm1 - hwm0, "hwm_total_MB": hwm1, "wall_s": wall,
                    "sys_s": sys1 - sys0, "user_s": user1 - user0}
        values = np.ascontiguousarray(result.values)
        row["sha256"] = hashlib.sha256(values.tobytes()).hexdigest()
        out["stages"][stage] = row
print(json.dumps(out))
"""


class Tree:
    """One source tree: its folder, data cache and environment."""

    def __init__(self, label: str, src: Path, scratch: Path, data_root: Path,
                 threads: int) -> None:
        self.label, self.src, self.scratch = label, src, scratch
        n = str(threads)
        self.env = {**os.environ, "PYTHONPATH": str(src),
                    "FUSI_NMF_DATA": str(data_root / f"bench-{label}"),
                    "FUSI_NMF_PROGRESS": "0", "OMP_NUM_THREADS": n,
                    "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n, "NUMEXPR_NUM_THREADS": n}
        self.count = 0

    def measure(self, preset: str, seed: int, trace: bool, stages: list[str]) -> dict:
        """One fresh process: per-stage numbers (and output sha256)."""
        self.count += 1
        cwd = self.scratch / f"{self.label}-{self.count}"
        cwd.mkdir()
        cmd = [sys.executable, "-P", "-c", CHILD, preset, str(seed), "1" if trace else "0",
               *stages]
        proc = subprocess.run(cmd, env=self.env, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"[{self.label}] measurement failed ({proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if not Path(out["fusi_nmf"]).resolve().is_relative_to(self.src.resolve()):
            raise SystemExit(f"[{self.label}] imported fusi_nmf from {out['fusi_nmf']}, "
                             f"not from {self.src}")
        return out["stages"]


def table(rows: dict[str, list[dict]], stages: list[str]) -> list[str]:
    """Median per tree and metric, and the ratio current / baseline when both exist."""
    labels = list(rows)
    head = f"{'stage':11s} {'metric':9s}" + "".join(f" {lab:>9s}" for lab in labels)
    lines = [head + (" ratio" if len(labels) == 2 else "")]
    for stage in stages:
        for metric in METRICS:
            med = [statistics.median(r[stage][metric] for r in rows[lab]) for lab in labels]
            line = f"{stage:11s} {metric:9s}" + "".join(f" {m:9.2f}" for m in med)
            if len(labels) == 2:
                line += f" {med[1] / med[0]:5.2f}" if med[0] > 0 else "   nan"
            lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="commit to compare against")
    parser.add_argument("--repeats", type=int, default=3, help="measured processes per tree "
                        "and kind (traced / untraced)")
    parser.add_argument("--preset", default="default", help="simulated preset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                        help="stages, run in this order in each process")
    parser.add_argument("--threads", type=int, default=1, help="OMP/BLAS threads (and the "
                        "registration's chunks side by side)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data cache root (default $FUSI_NMF_DATA or a temporary folder); "
                        "each tree gets its own bench-<label> subfolder")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    stages = [s for s in STAGES if s in args.stages]

    scratch = Path(tempfile.mkdtemp(prefix="fusi-nmf-bench-memory-"))
    try:
        data_root = args.data_dir or Path(os.environ.get("FUSI_NMF_DATA") or scratch / "data")
        data_root.mkdir(parents=True, exist_ok=True)
        trees = []
        title = f"bench_stage_memory: working tree {working_tree()}"
        if args.baseline:
            full = extract(args.baseline, scratch / "baseline-src")
            trees.append(Tree("baseline", scratch / "baseline-src", scratch, data_root,
                              args.threads))
            title += f" vs baseline {full[:10]}"
        trees.append(Tree("current", ROOT, scratch, data_root, args.threads))
        lines = [title + f"; preset {args.preset}, seed {args.seed}, {args.threads} thread(s), "
                 f"{args.repeats} repeat(s), medians", machine_note()]
        print("\n".join(lines), flush=True)
        for tree in trees:  # warm-up: simulates the recording into the tree's data cache
            tree.measure(args.preset, args.seed, False, stages[:1])
        rows: dict[str, list[dict]] = {t.label: [] for t in trees}
        digests: dict[str, dict[str, str]] = {}
        for rep in range(args.repeats):
            for tree in trees if rep % 2 == 0 else trees[::-1]:
                timed = tree.measure(args.preset, args.seed, False, stages)
                traced = tree.measure(args.preset, args.seed, True, stages)
                for stage in stages:
                    timed[stage]["trace_MB"] = traced[stage]["trace_MB"]
                    if timed[stage]["sha256"] != traced[stage]["sha256"]:
                        raise SystemExit(f"[{tree.label}] {stage} gave different values in "
                                         "two processes: not deterministic")
                rows[tree.label].append(timed)
                digests[tree.label] = {s: timed[s]["sha256"] for s in stages}
                print(f"  {tree.label:8s} run {rep + 1}: " + "; ".join(
                    f"{s} " + " ".join(f"{m} {timed[s][m]:.2f}" for m in METRICS)
                    for s in stages), flush=True)
        lines.append(machine_note() + " (after)")
        lines += table(rows, stages)
        if args.baseline:
            lines.append("output values equal to the baseline's (sha256): " + ", ".join(
                f"{s} {'yes' if digests['baseline'][s] == digests['current'][s] else 'NO'}"
                for s in stages))
        text = "\n".join(lines) + "\n"
        print(text)
        print(f"written to {write_result('bench_stage_memory', text)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
