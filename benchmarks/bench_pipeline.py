"""Benchmark: the whole pipeline end to end, and optionally the book build.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pipeline.py          # pipeline only
    .venv/bin/python benchmarks/bench_pipeline.py --book   # + python -m fusi_nmf book

Runs ``python -m fusi_nmf run --simulate --mode both`` on the full-size default
recording in a fresh temporary work/data/output folder (no cache), under
``/usr/bin/time -v`` for the peak resident memory (Debian package ``time``;
without it the peak is not reported). Prints each stage's time from
``summary.json``'s ``timings_s`` and its share, the total wall time and the
peak memory against the targets (pipeline <= 30 s, peak <= 1.5 GB). With
``--book`` it also times ``python -m fusi_nmf book`` (wall time and the
per-notebook times it prints). Writes ``benchmarks/results/bench_pipeline.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nmf import machine_note, write_result

ROOT = Path(__file__).resolve().parents[1]
TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float | None, str]:
    """Run ``cmd``; return (wall s, peak RSS in MB or None, stdout+stderr)."""
    full = [TIME, "-v", *cmd] if TIME else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)
    return wall, (int(m.group(1)) / 1024 if m else None), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", action="store_true", help="also time the book build")
    parser.add_argument("--preset", default="default", choices=["default", "small"])
    args = parser.parse_args(argv)

    lines = [f"bench_pipeline: preset={args.preset}", machine_note()]
    if TIME is None:
        lines.append("(no /usr/bin/time: apt-get install time for the peak memory)")
    with tempfile.TemporaryDirectory(prefix="fusi-bench-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, FUSI_NMF_DATA=str(tmp / "data"), FUSI_NMF_PROGRESS="0")
        cmd = [
            sys.executable, "-m", "fusi_nmf", "run", "--simulate", "--mode", "both",
            "--preset", args.preset, "--work-dir", str(tmp / "work"), "--out", str(tmp / "out"),
            "--quiet",
        ]  # fmt: skip
        wall, peak, _ = timed(cmd, env, ROOT)
        summary = json.loads((tmp / "out" / "summary.json").read_text())
        stages = summary["timings_s"]
        staged = sum(stages.values())
        head = f"{'stage':22s} {'s':>7s} {'share':>6s}"
        lines += [head, "-" * len(head)]
        for name, sec in stages.items():
            lines.append(f"{name:22s} {sec:7.2f} {sec / wall:6.1%}")
        lines.append(f"{'(sum of stages)':22s} {staged:7.2f} {staged / wall:6.1%}")
        lines.append(
            f"{'total wall':22s} {wall:7.2f} {'':6s}  target <= 30 s: "
            f"{'met' if wall <= 30 else 'MISSED'} (incl. interpreter start and imports)"
        )
        if peak is not None:
            lines.append(
                f"{'peak RSS MB':22s} {peak:7.0f} {'':6s}  target <= 1536 MB: "
                f"{'met' if peak <= 1536 else 'MISSED'}"
            )
        for mode, res in summary["results"].items():
            lines.append(
                f"  nmf {mode}: {res.get('n_iter')} iterations, error "
                f"{res.get('reconstruction_err'):.5g}, converged {res.get('converged')}"
            )
        if args.book:
            book_cmd = [sys.executable, "-m", "fusi_nmf", "book"]
            bwall, bpeak, out = timed(book_cmd, env, ROOT)
            lines.append(f"book build wall {bwall:.1f} s, peak RSS {bpeak or float('nan'):.0f} MB")
            lines += ["  " + ln for ln in out.splitlines() if re.search(r"\d+(\.\d+)? ?s\b", ln)][
                :40
            ]
    text = "\n".join(lines)
    print(text)
    write_result("bench_pipeline", text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
