"""Run every benchmark in turn (NMF, registration, pipeline, scaling); one command.

    .venv/bin/python benchmarks/run_all.py            # add --book to time the book build

Each script prints its table and writes ``benchmarks/results/<name>.txt``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    book = ["--book"] if "--book" in argv else []
    failed = []
    for script, extra in (
        ("bench_nmf.py", []),
        ("bench_registration.py", []),
        ("bench_pipeline.py", book),
        ("bench_scaling.py", []),
    ):
        path = HERE / script
        if not path.exists():
            print(f"skip {script}: not there")
            continue
        print(f"=== {script}", flush=True)
        if subprocess.run([sys.executable, str(path), *extra]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
