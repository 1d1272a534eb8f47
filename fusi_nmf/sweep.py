"""Parameter sweeps: one papermill-executed notebook per parameter combination.

``python -m fusi_nmf sweep NOTEBOOK -p n_components 4 6 8 -p random_state 0 1 --jobs 2``

Every combination becomes a *run* with its own folder ``OUT/runs/<run id>/`` holding the
executed notebook and ``record.json`` (parameters, status, metrics, wall time, output
paths), written atomically. The run id is a readable slug of the swept values plus a
short digest of the full parameter set, so two different runs never share a folder (a
sweep that would, e.g. a value given twice, is refused). ``OUT/runs.tsv`` indexes all
runs. A failed run is recorded with its error and the failing cell, its executed
notebook (outputs up to the error) is kept beside the record, and it never stops or
corrupts the others; re-running the same sweep skips completed runs (``--force`` redoes
them).

Values given on the command line are read as a Python user expects (YAML 1.2 core
schema, then the type the notebook declares for the parameter): ``1e-3`` is a float,
``010`` is 10, only ``true``/``false`` are booleans (``no`` is the string ``"no"``, or
refused for a ``bool`` parameter). The notebook's kernel runs in the caller's working
directory, so relative paths in parameters, and a notebook's default ``work_dir``,
resolve from where the sweep was started, not from the notebook's folder.

Ctrl-C ends a sweep with one line and exit status 130; the interrupted runs leave no
record and no partial notebook (leftovers of a killed process are removed by the next
sweep), so the next invocation redoes them and skips the completed ones.

A pipeline setting (a :class:`~fusi_nmf.pipeline.PipelineConfig` field) that the
notebook does not declare by itself, e.g. ``-p high_pass 0.01 0.02`` for a book chapter,
goes into the notebook's ``pipeline`` dict parameter; the record keeps it by name, so the
run id (slug and digest) sees it like any other value.

The notebook receives each combination's parameters plus ``output_dir`` (the run
folder) when it declares it; a notebook that saves its results there with
:meth:`fusi_nmf.pipeline.Workspace.run` (it writes ``summary.json``) gets its metrics
(reconstruction error, explained variance, iterations, convergence) into the record.

Parallel runs on one machine (``--jobs N``) each get one BLAS thread and their own
Jupyter runtime folder (no shared connection files or ipc sockets); ``--executor dask``
sends the same jobs to a Dask distributed scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusi_nmf import _atomic
from fusi_nmf._progress import status
from fusi_nmf._util import temporary_environ
from fusi_nmf._values import coerce_value, declared_type, load_yaml, parse_value
from fusi_nmf.book import (
    PIPELINE_SETTINGS,
    SHARED_PARAMETER,
    THREAD_ENV,
    accepted_parameters,
    route_parameters,
)
from fusi_nmf.pipeline import parse_config_value

__all__ = ["RunSpec", "expand_grid", "load_records", "run_sweep"]

RECORD = "record.json"
INDEX = "runs.tsv"


@dataclass(frozen=True)
class RunSpec:
    """One combination: which notebook, which parameters, where its outputs go."""

    notebook: str
    parameters: dict[str, Any]
    run_dir: str
    kernel_name: str = "python3"
    timeout: float | None = None
    #: the kernel's working directory: the caller's, so relative paths mean what they typed
    cwd: str | None = None

    @property
    def run_id(self) -> str:
        return Path(self.run_dir).name


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "_"


def parameters_digest(parameters: dict[str, Any]) -> str:
    """Short sha256 of a full parameter set (types count: ``1``, ``1.0``, ``"1"`` differ)."""
    text = json.dumps(parameters, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_id_for(
    notebook: str | os.PathLike,
    parameters: dict[str, Any],
    swept: Iterable[str] | None = None,
) -> str:
    """A readable folder name for one run that no other parameter set shares.

    ``<notebook>__<name>-<value>...__<digest>``: the slug names the ``swept`` parameters
    (all when None), shortened to stay a valid file name; the digest covers every
    parameter, so values the slug maps alike (``sub ä`` and ``sub ö``) stay apart.
    """
    names = sorted(parameters if swept is None else swept)
    slug = "__".join([Path(notebook).stem] + [f"{k}-{_slug(parameters[k])}" for k in names])
    return f"{slug[:120]}__{parameters_digest(parameters)}"


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of a ``{name: [values...]}`` grid, in a deterministic order."""
    for name, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise TypeError(f"grid values for {name!r} must be a list, got {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"grid parameter {name!r} has no values")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def declared_types(notebook: str | os.PathLike) -> dict[str, str]:
    """``{parameter: type name}`` from a notebook's parameters cell.

    The annotation (``n: int = 3``) wins; an unannotated parameter takes the type of its
    default value (``n = 3`` -> ``"int"``); ``"None"`` when neither says.
    """
    import papermill as pm

    found = pm.inspect_notebook(str(notebook))
    return {name: declared_type(info) for name, info in found.items()}


def load_grid_file(path: str | os.PathLike) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Read a grid YAML: ``{parameters: {name: [values]}, fixed: {name: value}}``.

    A flat mapping ``{name: [values]}`` is accepted too (lists sweep, scalars are fixed).
    Values follow the YAML 1.2 core schema (see :func:`fusi_nmf._values.parse_value`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Grid file {path} does not exist")
    data = load_yaml(path.read_text(), f"Grid file {path}") or {}
    if not isinstance(data, dict):
        raise ValueError(f"Grid file {path} must hold a mapping, got {type(data).__name__}")
    if "parameters" in data or "fixed" in data:
        grid, fixed = dict(data.get("parameters") or {}), dict(data.get("fixed") or {})
    else:
        grid = {k: v for k, v in data.items() if isinstance(v, list)}
        fixed = {k: v for k, v in data.items() if not isinstance(v, list)}
    return {k: list(v) if isinstance(v, list) else [v] for k, v in grid.items()}, fixed


# ---------------------------------------------------------------------------- one run
def execute_run(spec: RunSpec) -> dict[str, Any]:
    """Execute one run and write its record; never raises for a notebook failure.

    Runs in a worker process (or a Dask worker): the kernel gets one BLAS thread and a
    private Jupyter runtime folder, so parallel kernels share no connection files.
    """
    import papermill as pm

    from fusi_nmf._kernels import KERNEL_OPTIONS  # imports jupyter_client, like papermill

    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / Path(spec.notebook).name
    record: dict[str, Any] = {
        "run_id": spec.run_id,
        "notebook": str(spec.notebook),
        "parameters": spec.parameters,
        "status": "running",
        "executed_notebook": str(executed),
        "cwd": spec.cwd,
    }
    declared = set(pm.inspect_notebook(spec.notebook))
    parameters = dict(spec.parameters)
    if "output_dir" in declared:
        parameters.setdefault("output_dir", str(run_dir))
    unknown = sorted(set(parameters) - accepted_parameters(declared))
    start = time.perf_counter()
    _atomic.clean_partial(run_dir)
    # The failure is recorded inside the atomic write, so the executed notebook (outputs
    # up to the failing cell) is renamed into place whatever the outcome; Ctrl-C removes it.
    with _atomic.atomic_path(executed) as tmp:
        try:
            if unknown:
                raise ValueError(
                    f"parameter(s) {unknown} are not declared in {spec.notebook}'s parameters "
                    f"cell (declared: {sorted(declared)})"
                )
            # pipeline settings the notebook does not declare go into its `pipeline` dict
            parameters = route_parameters(parameters, declared)
            with (
                tempfile.TemporaryDirectory(prefix="fusi-nmf-kernel-") as runtime,
                temporary_environ(
                    **THREAD_ENV,
                    JUPYTER_RUNTIME_DIR=runtime,
                    FUSI_NMF_PROGRESS=os.environ.get("FUSI_NMF_PROGRESS", "0"),
                ),
            ):
                pm.execute_notebook(
                    spec.notebook,
                    str(tmp),
                    parameters=parameters,
                    kernel_name=spec.kernel_name,
                    progress_bar=False,
                    execution_timeout=spec.timeout,
                    cwd=spec.cwd or os.getcwd(),
                    **KERNEL_OPTIONS,
                )
            record["status"] = "ok"
            record.update(_metrics_from_outputs(run_dir))
        except Exception as exc:  # recorded, not raised: one failure never stops a sweep
            record["status"] = "failed"
            record["error"] = f"{type(exc).__name__}: {_first_line(exc)}"
            record["error_location"] = _error_location(exc)
            record["traceback"] = traceback.format_exc(limit=5)[-4000:]
    if executed.stat().st_size == 0:  # failed before papermill wrote anything
        executed.unlink()
        record["executed_notebook"] = None
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    _atomic.write_json(run_dir / RECORD, record)
    return record


def _first_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return (str(exc).strip().splitlines() or [""])[0]


def _error_location(exc: BaseException) -> str:
    cell = getattr(exc, "cell_index", None)
    if cell is not None:
        count = getattr(exc, "exec_count", None)
        return f"cell {cell} (execution count {count})"
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""


def _metrics_from_outputs(run_dir: Path) -> dict[str, Any]:
    """Pick the fit metrics out of the ``summary.json`` a notebook wrote (if any)."""
    path = run_dir / "summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    out: dict[str, Any] = {"summary": str(path), "outputs": summary.get("outputs", {})}
    metrics = {}
    for mode, res in summary.get("results", {}).items():
        for key in ("reconstruction_err", "explained_variance", "n_iter", "converged"):
            if key in res:
                metrics[f"{mode}.{key}"] = res[key]
    out["metrics"] = metrics
    return out


# --------------------------------------------------------------------------- a sweep
def load_records(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All run records under ``out_dir/runs`` (sorted by run id)."""
    runs = Path(out_dir) / "runs"
    records = []
    for path in sorted(runs.glob(f"*/{RECORD}")):
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(path.read_text()))
    return records


def write_index(out_dir: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Write ``runs.tsv``: one row per run (id, status, parameters, metrics, time, paths)."""
    import pandas as pd

    rows = []
    for rec in sorted(records, key=lambda r: r["run_id"]):
        row = {"run_id": rec["run_id"], "status": rec["status"]}
        row.update(rec.get("parameters", {}))
        row.update(rec.get("metrics", {}))
        row["wall_time_s"] = rec.get("wall_time_s")
        row["error"] = rec.get("error", "")
        row["notebook"] = rec.get("executed_notebook", "")
        rows.append(row)
    path = Path(out_dir) / INDEX
    _atomic.write_text(path, pd.DataFrame(rows).to_csv(sep="\t", index=False))
    return path


def _read_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _is_done(spec: RunSpec) -> bool:
    rec = _read_record(Path(spec.run_dir))
    return (
        rec is not None
        and rec.get("status") == "ok"
        and rec.get("parameters") == spec.parameters
        and bool(rec.get("executed_notebook"))
        and Path(rec["executed_notebook"]).is_file()
    )


def plan_sweep(
    notebook: str | os.PathLike,
    grid: dict[str, Sequence[Any]],
    out_dir: str | os.PathLike,
    fixed: dict[str, Any] | None = None,
    *,
    kernel_name: str = "python3",
    timeout: float | None = None,
) -> list[RunSpec]:
    """The runs of a sweep (not executed): one :class:`RunSpec` per combination."""

    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"Notebook {notebook} does not exist")
    types = declared_types(notebook)
    fixed = dict(fixed or {})
    unknown = sorted((set(grid) | set(fixed)) - accepted_parameters(types) - {"output_dir"})
    if unknown:
        has_dict = SHARED_PARAMETER in types
        shared = f" and a {SHARED_PARAMETER!r} dict of pipeline settings" if has_dict else ""
        raise ValueError(
            f"{notebook.name} has no parameter(s) {unknown}; its parameters cell declares "
            f"{sorted(types)}{shared}"
        )
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise ValueError(f"parameter(s) {overlap} are both swept and fixed; choose one")

    def typed(name: str, value: Any) -> Any:
        # a declared parameter takes the notebook's type, a routed setting the pipeline's
        if name in types or name == "output_dir":
            return coerce_value(name, value, types.get(name))
        return parse_config_value(name, value)

    # values from Python or a grid file: checked against the declared types
    grid = {k: [typed(k, v) for v in vs] for k, vs in grid.items()}
    fixed = {k: typed(k, v) for k, v in fixed.items()}
    cwd = str(Path.cwd())
    specs: dict[str, RunSpec] = {}
    for combo in expand_grid(grid):
        # the record keeps the names as given (slug and digest see every value); the
        # routing into `pipeline` happens at execution and is checked here
        parameters = fixed | combo
        route_parameters(parameters, types)
        run_id = run_id_for(notebook, parameters, swept=grid)
        if run_id in specs:
            raise ValueError(
                f"two runs of the sweep have the same parameters {combo}; every run needs "
                "its own folder, so give each value once."
            )
        run_dir = Path(out_dir).resolve() / "runs" / run_id
        rec = _read_record(run_dir)
        if rec is not None and rec.get("parameters") != parameters:
            raise ValueError(
                f"{run_dir} holds a run with other parameters ({rec.get('parameters')}) than "
                f"{parameters}; use another --out folder or remove that run."
            )
        specs[run_id] = RunSpec(
            notebook=str(notebook.resolve()),
            parameters=parameters,
            run_dir=str(run_dir),
            kernel_name=kernel_name,
            timeout=timeout,
            cwd=cwd,
        )
    return list(specs.values())


def run_sweep(
    notebook: str | os.PathLike,
    grid: dict[str, Sequence[Any]],
    out_dir: str | os.PathLike = "sweep",
    fixed: dict[str, Any] | None = None,
    *,
    jobs: int = 1,
    force: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    kernel_name: str = "python3",
    timeout: float | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Run ``notebook`` once per combination of ``grid`` (plus ``fixed`` parameters).

    Parameters
    ----------
    notebook : path
        A notebook with a cell tagged ``parameters``.
    grid : dict
        ``{parameter: [values...]}``; every combination is one run.
    out_dir : path
        Sweep folder: ``runs/<run id>/`` per run and the ``runs.tsv`` index.
    fixed : dict, optional
        Parameters passed unchanged to every run.
    jobs : int
        Parallel runs on this machine (``executor="local"``).
    force : bool
        Redo runs that already completed (default: skip them; failed or missing runs
        are always redone).
    executor : {"local", "dask"}
        ``"dask"`` submits the runs to the Dask scheduler at ``scheduler``.
    scheduler : str
        Dask scheduler address (``tcp://host:port``) for ``executor="dask"``.

    Returns
    -------
    list of dict
        The records of every run of the sweep (skipped ones read back from disk).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if executor not in ("local", "dask"):
        raise ValueError(f"executor must be 'local' or 'dask', got {executor!r}")
    if executor == "dask" and not scheduler:
        raise ValueError("executor='dask' needs scheduler='tcp://HOST:PORT' (a running scheduler)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = plan_sweep(notebook, grid, out, fixed, kernel_name=kernel_name, timeout=timeout)
    todo = [s for s in specs if force or not _is_done(s)]
    status(
        f"[sweep] {len(specs)} runs of {Path(notebook).name}: {len(specs) - len(todo)} already "
        f"done, {len(todo)} to run ({executor}, jobs={jobs if executor == 'local' else 'dask'})",
        progress,
    )
    done_records: dict[str, dict[str, Any]] = {}

    def report(rec: dict[str, Any], i: int) -> None:
        done_records[rec["run_id"]] = rec
        tail = "" if rec["status"] == "ok" else f"  {rec.get('error', '')}"
        status(
            f"[sweep {i}/{len(todo)}] {rec['run_id']}: {rec['status']} "
            f"({rec['wall_time_s']:.1f} s){tail}",
            progress,
        )
        write_index(out, _merge(load_records(out), done_records))

    if todo:
        if executor == "dask":
            _run_dask(todo, scheduler, report)
        elif jobs == 1:
            for i, spec in enumerate(todo, 1):
                report(execute_run(spec), i)
        else:
            _run_local_parallel(todo, jobs, report)
    records = [r for r in load_records(out) if r["run_id"] in {s.run_id for s in specs}]
    write_index(out, load_records(out))
    failed = [r for r in records if r["status"] != "ok"]
    status(
        f"[sweep] {len(records) - len(failed)} ok, {len(failed)} failed -> {out / INDEX}", progress
    )
    return records


def _merge(on_disk: list[dict[str, Any]], fresh: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    merged = {r["run_id"]: r for r in on_disk}
    merged.update(fresh)
    return list(merged.values())


def _run_local_parallel(specs: list[RunSpec], jobs: int, report) -> None:
    # Separate processes: each papermill/nbclient gets its own event loop and its own
    # environment (thread caps, runtime dir) for the kernel it starts.
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures: dict[Future, RunSpec] = {pool.submit(execute_run, s): s for s in specs}
        for i, fut in enumerate(as_completed(futures), 1):
            report(_result_or_failure(fut, futures[fut]), i)


def _run_dask(specs: list[RunSpec], scheduler: str, report) -> None:
    try:
        from distributed import Client
        from distributed import as_completed as dask_as_completed
    except ImportError as exc:  # pragma: no cover - dask is in requirements-dev
        raise RuntimeError(
            "executor='dask' needs dask.distributed: pip install 'fusi-nmf[dask]'"
        ) from exc
    with Client(scheduler, timeout="30s") as client:
        futures = {
            client.submit(execute_run, s, pure=False, key=f"fusi-nmf-{s.run_id}"): s for s in specs
        }
        for i, fut in enumerate(dask_as_completed(list(futures)), 1):
            report(_result_or_failure(fut, futures[fut]), i)


def _result_or_failure(fut, spec: RunSpec) -> dict[str, Any]:
    """A worker that died (not a notebook error) still leaves a failed record."""
    try:
        return fut.result()
    except Exception as exc:
        record = {
            "run_id": spec.run_id,
            "notebook": spec.notebook,
            "parameters": spec.parameters,
            "status": "failed",
            "error": f"{type(exc).__name__}: {_first_line(exc)}",
            "error_location": "worker",
            "wall_time_s": 0.0,
        }
        _atomic.write_json(Path(spec.run_dir) / RECORD, record)
        return record


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a notebook once per parameter combination (papermill)",
        description="Run NOTEBOOK for every combination of the -p values. Each run writes "
        "OUT/runs/<id>/record.json; OUT/runs.tsv indexes them. Completed runs are skipped on "
        "re-run (--force redoes them). Exit code: the number of failed runs.",
    )
    p.add_argument("notebook", help="notebook with a cell tagged 'parameters'")
    p.add_argument(
        "-p",
        "--param",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a swept parameter and its values, e.g. -p n_components 4 6 8 (repeatable)",
    )
    p.add_argument(
        "-s",
        "--set",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a fixed parameter for every run, e.g. -s preset small (repeatable)",
    )
    p.add_argument("--grid", help="YAML file: {parameters: {name: [values]}, fixed: {name: value}}")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs on this machine (default 1)")
    p.add_argument("--out", default="sweep", help="sweep folder (default ./sweep)")
    p.add_argument("--force", action="store_true", help="redo runs that already completed")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
    p.add_argument("--scheduler", help="Dask scheduler address for --executor dask")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in s")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.set_defaults(func=_cli_sweep)


def _cli_sweep(args: argparse.Namespace) -> int:
    grid: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    if args.grid:
        grid, fixed = load_grid_file(args.grid)
    # values typed on the command line take the type the notebook declares for them
    types = declared_types(args.notebook) if Path(args.notebook).exists() else {}
    routed = (set(PIPELINE_SETTINGS) - set(types)) if SHARED_PARAMETER in types else set()

    def parse(name: str, text: str) -> Any:
        # a setting routed into the `pipeline` dict is typed like the `run` command's option
        return text if name in routed else parse_value(text, types.get(name), name)

    for item in args.param:
        if len(item) < 2:
            raise ValueError(f"-p {item[0]} needs at least one value: -p NAME VALUE [VALUE ...]")
        grid[item[0]] = [parse(item[0], v) for v in item[1:]]
    for name, value in args.set:
        fixed[name] = parse(name, value)
    if not grid:
        raise ValueError("nothing to sweep: give -p NAME VALUE [VALUE ...] or --grid FILE")
    records = run_sweep(
        args.notebook,
        grid,
        args.out,
        fixed,
        jobs=args.jobs,
        force=args.force,
        executor=args.executor,
        scheduler=args.scheduler,
        kernel_name=args.kernel,
        timeout=args.timeout,
    )
    failed = [r for r in records if r["status"] != "ok"]
    for rec in failed:
        print(
            f"FAILED {rec['run_id']}: {rec.get('error', '')} [{rec.get('error_location', '')}]",
            file=sys.stderr,
        )
    print(f"{len(records) - len(failed)} ok, {len(failed)} failed; index: {Path(args.out) / INDEX}")
    return min(len(failed), 255)
