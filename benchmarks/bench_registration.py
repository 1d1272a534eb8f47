"""Benchmark: registration speed and accuracy against a baseline implementation, same run.

Run on demand from the repository root (not part of the tests)::

    .venv/bin/python benchmarks/bench_registration.py                 # speed + multi-slice
    .venv/bin/python benchmarks/bench_registration.py --repeats 3 --no-multislice
    .venv/bin/python benchmarks/bench_registration.py --sitk --frames 100   # + SimpleITK
    .venv/bin/python benchmarks/bench_registration.py --recovery            # + NMF recovery

* **Baseline**: ``fusi_nmf/registration.py`` as it was at ``--baseline`` (default: the
  last main commit before the registration package, ``e96babd``), read with
  ``git show`` into a temporary folder and imported from there, so both versions run
  in the same process on the same data, interleaved (``--repeats``, best of).
* **Speed + accuracy**: :func:`register_volumewise` (defaults) on the full-size
  simulated recording (``fusi_nmf.datasets.recording_path("simulated")``, 751 x 1 x
  114 x 80; set ``FUSI_NMF_DATA``), wall and CPU time of the whole call, the ratio
  new / baseline, and accuracy against the simulator's ground-truth motion: both
  estimates are re-expressed relative to the unmoved brain with
  :func:`fusi_nmf.metrics.align_to_truth` and compared per frame (RMSE of
  tx, ty in voxels and rz in degrees). Chance level: the same RMSE for an estimate
  of no motion at all (the truth's own spread).
* **Multi-slice** (``--multislice``, default on): 4 thick slices (0.4 mm apart),
  (a) the simulator with ``shape=(4, 114, 80)``, whose motion is in-plane only, and
  (b) a blob texture seen through a thick-slice point-spread function with
  through-plane motion as well (tz, rx, ry). Baseline (free 6-parameter fit), the
  default (``model="auto"`` = in-plane here) and ``model="3d"``: spurious or true
  rx/ry ranges, median framewise displacement against the truth's, in-plane RMSE.
* **SimpleITK** (``--sitk``; ``pip install -r benchmarks/requirements.txt``): the
  reference implementation's per-frame registration (``Euler2DTransform``,
  correlation metric, plain gradient descent with a fixed learning rate, 100
  iterations), on ``--frames`` evenly spaced frames.
* **Source recovery** (``--recovery``): z-score -> pos/neg split -> temporal NMF
  (k=10) -> mean matched |r| of the planted time courses, raw vs registered vs the
  recording simulated without motion.

The table goes to stdout and to ``benchmarks/results/bench_registration.txt``.
Timings on a shared machine are noisy: compare the ratio from one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import xarray as xr

from fusi_nmf import registration
from fusi_nmf.datasets import recording_path
from fusi_nmf.decomposition import NMF
from fusi_nmf.io import load_recording
from fusi_nmf.metrics import align_to_truth, source_recovery
from fusi_nmf.registration.geometry import rot_xyz
from fusi_nmf.signal import split_sign, standardize
from fusi_nmf.simulate import load_ground_truth, simulate_recording

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: last main commit whose registration was the single module this work replaced
BASELINE_REV = "e96babd8d91abd5f0438f3c587a3b33709d2fdb3"
LINES: list[str] = []


def say(text: str = "") -> None:
    """Print and keep for the results file."""
    print(text, flush=True)
    LINES.append(text)


def load_baseline(rev: str) -> ModuleType:
    """Import ``fusi_nmf/registration.py`` at git revision ``rev`` from a temporary copy."""
    out = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:fusi_nmf/registration.py"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"cannot read fusi_nmf/registration.py at {rev!r}: "
                         f"{out.stderr.strip()}; pass --baseline with a commit where "
                         "registration was a single module.")
    folder = Path(tempfile.mkdtemp(prefix="bench_registration_"))
    path = folder / "registration_baseline.py"
    path.write_text(out.stdout)
    spec = importlib.util.spec_from_file_location("registration_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def inplane_rmse(est: xr.DataArray, truth: xr.DataArray, dx: float, dy: float
                 ) -> tuple[float, float, float]:
    """RMSE of tx, ty (voxels) and rz (degrees) after :func:`align_to_truth`."""
    aligned = align_to_truth(est, truth)
    names = ["tx", "ty", "rz"]
    err = (aligned.sel(parameter=names) - truth.sel(parameter=names)).values
    rmse = np.sqrt((err**2).mean(axis=0))
    return rmse[0] / dx, rmse[1] / dy, rmse[2]


def timed(func, *args, **kwargs):
    """(result, wall s, CPU s) of one call, warnings silenced (reported separately)."""
    w0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = func(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


# --------------------------------------------------------------------------- speed
def speed(base: ModuleType, preset: str, repeats: int) -> None:
    path = recording_path("simulated", preset=preset)
    data = load_recording(path).load()
    truth = load_ground_truth(path)["motion"].transpose("time", "parameter")
    dx = float(data.x[1] - data.x[0])
    dy = float(data.y[1] - data.y[0])
    say(f"recording: {path.name} ({preset} preset), {dict(data.sizes)}")
    zero = truth.copy(data=np.zeros(truth.shape))
    chance = inplane_rmse(zero, truth, dx, dy)
    impls = {"baseline": base.register_volumewise, "new": registration.register_volumewise}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in impls}
    motions = {}
    for _ in range(repeats):
        for name, func in impls.items():  # interleaved: load changes hit both
            (_, motion), wall, cpu = timed(func, data, progress=False)
            times[name].append((wall, cpu))
            motions[name] = motion
    say(f"{'implementation':10s} {'wall s':>7s} {'CPU s':>7s} {'tx vox':>8s} {'ty vox':>8s} "
        f"{'rz deg':>8s} {'GN it':>6s} {'conv':>5s}  (best of {repeats})")
    best = {}
    for name in impls:
        wall = min(t[0] for t in times[name])
        cpu = min(t[1] for t in times[name])
        best[name] = (wall, cpu)
        m = motions[name]
        ex, ey, er = inplane_rmse(m["parameters"], truth, dx, dy)
        say(f"{name:10s} {wall:7.2f} {cpu:7.2f} {ex:8.4f} {ey:8.4f} {er:8.4f} "
            f"{float(m['n_iter'].mean()):6.2f} {int(m['converged'].sum()):5d}")
    say(f"{'no motion':10s} {'':7s} {'':7s} {chance[0]:8.4f} {chance[1]:8.4f} {chance[2]:8.4f}"
        "  (chance: RMSE of estimating no motion)")
    say(f"ratio new / baseline: wall {best['new'][0] / best['baseline'][0]:.2f}, CPU "
        f"{best['new'][1] / best['baseline'][1]:.2f} (target: 751 frames <= 2 s where the "
        "baseline takes ~3 s, i.e. <= 0.67)")


# --------------------------------------------------------------------------- multi-slice
def thick_slice_recording(n_frames: int, seed: int, through_plane: bool) -> tuple[
        xr.DataArray, xr.DataArray]:
    """4 thick slices (0.4 mm apart, elevation PSF sigma 0.15 mm) of a blob texture.

    Motion: slow wander plus a few jumps in tx, ty (<= 0.1 mm) and rz (<= 1 degree);
    with ``through_plane`` also tz (<= 0.08 mm), rx and ry (<= 0.5 degree). Rendered
    exactly at the moved positions (no interpolation), speckle-like gamma noise 6 %.
    """
    rng = np.random.default_rng(seed)
    shape, spacing = (4, 60, 44), (0.4, 0.04832, 0.1)
    z, y, x = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    centre = np.array([x.mean(), y.mean(), z.mean()])
    n_blobs = 400
    lo = np.array([x[0], y[0], z[0]]) - 0.4
    hi = np.array([x[-1], y[-1], z[-1]]) + 0.4
    blobs = rng.uniform(lo, hi, (n_blobs, 3))
    width = rng.uniform(0.06, 0.2, n_blobs)
    wz = np.sqrt(width**2 + 0.15**2)  # thick slice: elevation point-spread function
    amp = rng.lognormal(0.0, 1.0, n_blobs)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    q = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=-1)
    t = np.arange(n_frames)
    lim = np.array([0.1, 0.1, 0.08, 0.5, 0.5, 1.0])
    if not through_plane:
        lim[2:5] = 0.0
    wander = np.cumsum(rng.normal(0, 1, (n_frames, 6)), axis=0)
    wander -= wander.mean(axis=0)
    wander /= np.maximum(np.abs(wander).max(axis=0), 1e-12)
    jumps = (t[:, None] >= rng.integers(n_frames // 4, 3 * n_frames // 4, 6)[None, :])
    motions = (0.5 * wander + 0.5 * jumps * rng.uniform(-1, 1, 6)) * lim
    frames = np.empty((n_frames, *shape), dtype=np.float32)
    for i, (tx, ty, tz, rx, ry, rz) in enumerate(motions):
        p = (q - centre - np.array([tx, ty, tz])) @ rot_xyz(np.radians([rx, ry, rz])) + centre
        d2 = ((p[:, None, :2] - blobs[None, :, :2]) ** 2).sum(-1) / width**2 + (
            (p[:, None, 2] - blobs[None, :, 2]) ** 2) / wz**2
        frames[i] = ((amp * np.exp(-d2 / 2)).sum(-1) + 0.05).reshape(shape)
    frames *= rng.gamma(250.0, 1 / 250.0, frames.shape).astype(np.float32)
    coords = {
        "time": ("time", t * 0.3, {"units": "s"}),
        "z": ("z", z, {"units": "mm", "voxdim": spacing[0]}),
        "y": ("y", y, {"units": "mm", "voxdim": spacing[1]}),
        "x": ("x", x, {"units": "mm", "voxdim": spacing[2]}),
    }
    data = xr.DataArray(frames, dims=("time", "z", "y", "x"), coords=coords,
                        name="power_doppler")
    truth = xr.DataArray(motions, dims=("time", "parameter"),
                         coords={"time": data["time"],
                                 "parameter": ["tx", "ty", "tz", "rx", "ry", "rz"]})
    return data, truth


def _multislice_rows(label: str, data: xr.DataArray, truth: xr.DataArray,
                     base: ModuleType) -> None:
    dx = float(data.x[1] - data.x[0])
    dy = float(data.y[1] - data.y[0])
    fd_true = float(registration.framewise_displacement(truth).median())
    true_rng = {n: float(np.ptp(truth.sel(parameter=n).values)) if n in truth.parameter else 0.0
                for n in ("rx", "ry")}
    say(f"{label}: {dict(data.sizes)}; true rx range {true_rng['rx']:.2f} deg, ry "
        f"{true_rng['ry']:.2f} deg, median FD {fd_true:.4f} mm")
    runs = (("baseline (6-param)", base.register_volumewise, {}),
            ("new default (auto)", registration.register_volumewise, {}),
            ("new model='3d'", registration.register_volumewise, {"model": "3d"}))
    for name, func, kw in runs:
        (_, m), _, cpu = timed(func, data, progress=False, **kw)
        p = m["parameters"]
        names = [str(n) for n in p.parameter.values]
        rx, ry = (float(np.ptp(p.sel(parameter=n).values)) if n in names else 0.0
                  for n in ("rx", "ry"))
        fd = float(m["framewise_displacement"].median())
        ex, ey, er = inplane_rmse(p, truth, dx, dy)
        say(f"  {name:20s} params {len(names)}  rx range {rx:5.2f}  ry range {ry:5.2f}  "
            f"median FD {fd:.4f} ({fd / fd_true:4.1f}x truth)  in-plane RMSE tx {ex:.3f} "
            f"ty {ey:.3f} vox rz {er:.3f} deg  CPU {cpu:.1f} s")


def multislice(base: ModuleType, seeds: list[int], n_frames: int) -> None:
    for seed in seeds:
        # rigid motion only: without the non-rigid deformation and through-slice change
        sim = simulate_recording("default", seed=seed, n_frames=n_frames, shape=(4, 114, 80),
                                 nonrigid=False, through_slice=False)
        _multislice_rows(f"simulator seed {seed}, in-plane motion only", sim["power_doppler"],
                         sim["motion"].transpose("time", "parameter"), base)
        for through in (False, True):
            data, truth = thick_slice_recording(n_frames, seed, through)
            kind = "with through-plane motion" if through else "in-plane motion only"
            _multislice_rows(f"thick-slice texture seed {seed}, {kind}", data, truth, base)


# --------------------------------------------------------------------------- SimpleITK
def sitk_compare(preset: str, n_frames: int | None, lr: float, threads: int) -> None:
    import SimpleITK as sitk  # optional, benchmark-only dependency: only for --sitk

    path = recording_path("simulated", preset=preset)
    data = load_recording(path).load()
    truth = load_ground_truth(path)["motion"].transpose("time", "parameter")
    n_t = data.sizes["time"]
    frames = np.unique(np.linspace(0, n_t - 1, n_frames or n_t).round().astype(int))
    (_, motion), t_ours, _ = timed(registration.register_volumewise, data, progress=False)
    start, stop = (int(v) for v in
                   motion.attrs["reference"].split("frames ")[1].split(" ")[0].split(".."))
    template = np.median(data.values[start:stop + 1, 0], axis=0)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)
    x, y = data["x"].values, data["y"].values

    def image(a: np.ndarray):
        img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
        img.SetSpacing((float(x[1] - x[0]), float(y[1] - y[0])))
        img.SetOrigin((float(x[0]), float(y[0])))
        return img

    fixed = image(template)
    params = np.zeros((len(frames), 3))
    t0 = time.perf_counter()
    for i, t in enumerate(frames):
        tr = sitk.Euler2DTransform()
        tr.SetCenter(((x[0] + x[-1]) / 2.0, (y[0] + y[-1]) / 2.0))
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsCorrelation()
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsGradientDescent(
            learningRate=lr, numberOfIterations=100,
            estimateLearningRate=sitk.ImageRegistrationMethod.Never)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(tr, inPlace=True)
        reg.Execute(fixed, image(data.values[t, 0]))
        angle, tx, ty = tr.GetParameters()  # fixed -> moving: our direction
        params[i] = (tx, ty, np.degrees(angle))
    t_sitk = (time.perf_counter() - t0) * n_t / len(frames)
    est = xr.DataArray(params, dims=("time", "parameter"),
                       coords={"time": data["time"][frames], "parameter": ["tx", "ty", "rz"]})
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    acc_sitk = inplane_rmse(est, truth.isel(time=frames), dx, dy)
    acc_ours = inplane_rmse(motion["parameters"].isel(time=frames), truth.isel(time=frames),
                            dx, dy)
    say(f"SimpleITK per-frame Euler2D/GD on {len(frames)} frames: {t_sitk:.1f} s for {n_t} "
        f"(extrapolated), RMSE tx {acc_sitk[0]:.4f} ty {acc_sitk[1]:.4f} vox rz "
        f"{acc_sitk[2]:.4f} deg; ours {t_ours:.2f} s, same frames {acc_ours[0]:.4f} "
        f"{acc_ours[1]:.4f} {acc_ours[2]:.4f}")


def recovery(preset: str) -> None:
    sim = simulate_recording(preset, seed=0)

    def score(rec: xr.DataArray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = NMF(10, mode="temporal", random_state=0)
            tc = model.fit_transform(split_sign(standardize(rec)))
        return float(source_recovery(tc, model.maps_, sim)["timecourse_r"].mean())

    registered, _ = registration.register_volumewise(sim["power_doppler"], progress=False)
    still = simulate_recording(preset, seed=0, motion=False)["power_doppler"]
    say(f"source recovery (mean matched |r|): raw {score(sim['power_doppler']):.3f}, "
        f"registered {score(registered):.3f}, simulated without motion {score(still):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default", choices=["default", "small"])
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision of the baseline")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs each (best of)")
    parser.add_argument("--no-multislice", dest="multislice", action="store_false")
    parser.add_argument("--ms-frames", type=int, default=200, help="frames per multi-slice run")
    parser.add_argument("--ms-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sitk", action="store_true", help="also run per-frame SimpleITK")
    parser.add_argument("--frames", type=int, default=None, help="SimpleITK frames (all)")
    parser.add_argument("--sitk-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2, help="SimpleITK threads")
    parser.add_argument("--recovery", action="store_true", help="also NMF source recovery")
    args = parser.parse_args(argv)

    load = os.getloadavg()
    say(f"bench_registration: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
        f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
        f"; baseline = fusi_nmf/registration.py at {args.baseline[:10]}")
    base = load_baseline(args.baseline)
    speed(base, args.preset, args.repeats)
    if args.multislice:
        say()
        multislice(base, args.ms_seeds, args.ms_frames)
    if args.sitk:
        say()
        sitk_compare(args.preset, args.frames, args.sitk_lr, args.threads)
    if args.recovery:
        say()
        recovery(args.preset)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_registration.txt"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(LINES) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
