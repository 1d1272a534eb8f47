"""Benchmark: fusi_nmf NMF (one solve) vs scikit-learn fit-then-transform (two solves).

Run on demand (not part of the tests)::

    OMP_NUM_THREADS=1 python benchmarks/bench_nmf.py            # full-size default
    python benchmarks/bench_nmf.py --preset small --repeats 1

Data: the simulated default recording (751 x 1 x 114 x 80), z-scored and split
into pos/neg channels -> a (751, 18240) float32 matrix. For each mode
(n_components=10, max_iter=500, random_state=0) it prints:

* ours: ``fusi_nmf.decomposition.NMF.fit_transform`` (time, iterations, final
  Frobenius error of ``X - timecourses @ maps``);
* baseline: ``sklearn.decomposition.NMF.fit`` then ``.transform`` on the same
  matrix, as a reference wrapper does it (two solves), error of
  ``X - transform(X) @ components_``;
* speed-up (baseline / ours) and the per-iteration cost of our solve relative
  to the two GEMMs ``X @ H.T`` and ``W.T @ X`` of the same shapes, timed in the
  same run (median of 10).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def _prepare(preset: str):
    from fusi_nmf.signal import split_sign, standardize
    from fusi_nmf.simulate import simulate_recording

    sim = simulate_recording(preset, seed=0)
    return split_sign(standardize(sim.power_doppler))


def _gemm_pair(A: np.ndarray, k: int, reps: int = 10) -> float:
    rng = np.random.default_rng(0)
    n, m = A.shape
    W = rng.random((n, k), dtype=np.float32)
    H = rng.random((k, m), dtype=np.float32)
    Ht = H.T  # as used by the solver: X @ H.T and W.T @ X
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        A @ Ht
        W.T @ A
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings")
    args = parser.parse_args(argv)

    from sklearn.decomposition import NMF as SkNMF

    from fusi_nmf.decomposition import NMF

    X = _prepare(args.preset)
    A = X.transpose("time", ...).values.reshape(X.sizes["time"], -1)
    print(f"data {X.dims} {dict(X.sizes)} -> matrix {A.shape} {A.dtype}")
    k = args.n_components
    rows = []
    for mode in ("temporal", "spatial"):
        M = A if mode == "temporal" else A.T
        best_ours = best_base = np.inf
        for _ in range(args.repeats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = NMF(k, mode=mode, max_iter=args.max_iter, random_state=0)
                t0 = time.perf_counter()
                tc = model.fit_transform(X)
                best_ours = min(best_ours, time.perf_counter() - t0)
                sk = SkNMF(k, init="nndsvda", max_iter=args.max_iter, random_state=0)
                t0 = time.perf_counter()
                sk.fit(M)
                Wb = sk.transform(M)
                best_base = min(best_base, time.perf_counter() - t0)
        maps = model.maps_.values.reshape(k, -1)
        err_ours = float(np.linalg.norm(A - tc.values @ maps))
        err_base = float(np.linalg.norm(M - Wb @ sk.components_))
        gemm = _gemm_pair(M, k)
        per_iter = best_ours / model.n_iter_
        rows.append(
            (
                mode,
                best_ours,
                model.n_iter_,
                err_ours,
                best_base,
                sk.n_iter_,
                err_base,
                gemm,
                per_iter,
            )
        )

    head = (
        f"{'mode':9s} {'ours s':>8s} {'iter':>5s} {'ours err':>11s} {'base s':>8s} "
        f"{'iter':>5s} {'base err':>11s} {'speedup':>8s} {'2 GEMM ms':>9s} "
        f"{'iter ms':>8s} {'iter/GEMM':>9s}"
    )
    print(head)
    print("-" * len(head))
    for mode, to, io, eo, tb, ib, eb, g, pi in rows:
        print(
            f"{mode:9s} {to:8.2f} {io:5d} {eo:11.3f} {tb:8.2f} {ib:5d} {eb:11.3f} "
            f"{tb / to:8.2f} {g * 1e3:9.2f} {pi * 1e3:8.2f} {pi / g:9.2f}"
        )
    print(
        "speedup = baseline time / ours; iter/GEMM = our wall time per iteration (whole "
        "fit_transform incl. validation, init, error) / time of X @ H.T + W.T @ X."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
