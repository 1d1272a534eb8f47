"""Benchmark: what the content-digest cache key costs (issue 15).

Run on demand, from the repository root::

    .venv/bin/python benchmarks/bench_input_digest.py             # full-size default
    .venv/bin/python benchmarks/bench_input_digest.py --preset small

The stage cache keys the recording by the sha256 of its image and sidecar bytes
(:meth:`fusi_nmf.pipeline.Workspace._input_id`). This times, best of ``--repeats``
and in the same run, that digest and the baseline every run pays anyway: loading the
recording with :func:`fusi_nmf.io.load_recording`. Target: digest well under 1 s and a
small fraction of the load.

It also times what a fresh ``Workspace`` pays to find the simulated recording and key it
(``fetch + key``: the simulated cache verifies its manifest's sha256, then the key is
built) and counts how often that opens the image: once, since the key reuses the
verification's hash of the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from fusi_nmf.datasets import recording_path
from fusi_nmf.io import load_recording
from fusi_nmf.pipeline import Workspace


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = recording_path("simulated", preset=args.preset)
    size_mb = path.stat().st_size / 1e6

    def digest() -> None:
        ws = Workspace.__new__(Workspace)  # only the digest: no work folder needed
        ws._recording_path, ws._input_digest, ws.timings = path, None, {}
        ws._fetch_digests = {}  # nothing hashed while fetching: the key hashes both files
        ws._input_id()

    opens: list[str] = []
    image = os.path.abspath(path)
    sys.addaudithook(lambda event, a: event == "open" and a[0] == image and opens.append(a[0]))

    def fetch_and_key() -> None:
        Workspace(work_dir, preset=args.preset, progress=False)._input_id()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_load = _best(lambda: load_recording(path), args.repeats)
    t_digest = _best(digest, args.repeats)
    work_dir = Path(tempfile.mkdtemp())
    try:
        opens.clear()
        t_fetch = _best(fetch_and_key, args.repeats)
        n_opens = len(opens) / args.repeats
    finally:
        shutil.rmtree(work_dir)
    print(f"recording: {path.name} ({size_mb:.1f} MB on disk, preset {args.preset})")
    print(f"sha256 of image + sidecar: {t_digest:.3f} s (best of {args.repeats})")
    print(f"load_recording (baseline): {t_load:.3f} s")
    print(f"ratio digest / load: {t_digest / t_load:.2f}")
    print(f"fresh Workspace fetch + key: {t_fetch:.3f} s, image opened {n_opens:g} time(s)")


if __name__ == "__main__":
    main()
