"""Papermill sweeps: records, index, resume, failure isolation, parallel and Dask runs.

Every run executes a real notebook in a real kernel that runs the real pipeline on the
small simulated recording.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from fusi_nmf.cli import main
from fusi_nmf.sweep import load_grid_file, load_records, parse_value, plan_sweep, run_sweep

PARAMETERS = """\
preset: str = "small"     # simulated preset
n_components: int = 3     # NMF components
random_state: int = 0     # NMF seed
work_dir: str = "work"    # stage cache shared by the runs
output_dir: str = ""      # set by the sweep: where this run writes its results
"""
BODY = """\
from fusi_nmf.pipeline import Workspace

ws = Workspace(work_dir, preset=preset, n_components=n_components,
               random_state=random_state, max_iter=200, progress=False)
if output_dir:
    ws.run(modes=["temporal"], out_dir=output_dir)
"""


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# toy fit"), params, nbformat.v4.new_code_cell(BODY)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path_factory.mktemp("nb") / "fit.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("work"))


def _metrics(records: list[dict]) -> dict[str, dict]:
    return {r["run_id"]: r["metrics"] for r in records}


GRID = {"n_components": [2, 3], "random_state": [0, 1]}


@pytest.fixture(scope="module")
def serial_sweep(notebook: Path, work_dir: str, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("serial")
    records = run_sweep(notebook, GRID, out, {"work_dir": work_dir}, jobs=1, progress=False)
    return out, records


def test_records_and_index_are_written(serial_sweep) -> None:
    out, records = serial_sweep
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    for rec in records:
        run_dir = out / "runs" / rec["run_id"]
        assert (run_dir / "record.json").exists() and (run_dir / "fit.ipynb").exists()
        assert rec["metrics"]["temporal.n_iter"] >= 1
        assert rec["metrics"]["temporal.reconstruction_err"] > 0
        assert Path(rec["outputs"]["maps_temporal"]).exists()
        assert rec["wall_time_s"] > 0
    index = pd.read_csv(out / "runs.tsv", sep="\t")
    assert len(index) == 4 and set(index["status"]) == {"ok"}
    assert {"n_components", "random_state", "temporal.explained_variance"} <= set(index.columns)
    # more components fit better, for each seed
    err = index.set_index(["random_state", "n_components"])["temporal.reconstruction_err"]
    assert (err.xs(3, level="n_components") < err.xs(2, level="n_components")).all()


def test_second_run_does_no_work(serial_sweep, notebook: Path, work_dir: str) -> None:
    out, records = serial_sweep
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*")}
    again = run_sweep(notebook, GRID, out, {"work_dir": work_dir}, jobs=1, progress=False)
    assert _metrics(again) == _metrics(records)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*")} == stamps


def test_force_and_missing_runs_are_redone(serial_sweep, notebook: Path, work_dir: str) -> None:
    out, records = serial_sweep
    victim = out / "runs" / records[0]["run_id"] / "record.json"
    victim.unlink()
    again = run_sweep(notebook, GRID, out, {"work_dir": work_dir}, jobs=1, progress=False)
    assert victim.exists()
    assert _metrics(again) == _metrics(records)


def test_parallel_jobs_give_the_same_numbers(serial_sweep, notebook, work_dir, tmp_path) -> None:
    _, records = serial_sweep
    parallel = run_sweep(notebook, GRID, tmp_path, {"work_dir": work_dir}, jobs=2, progress=False)
    assert all(r["status"] == "ok" for r in parallel)
    assert _metrics(parallel) == _metrics(records)


def test_a_failing_run_is_recorded_and_others_finish(notebook, work_dir, tmp_path, capsys) -> None:
    argv = ["sweep", str(notebook), "-p", "n_components", "0", "3"]
    argv += ["-s", "work_dir", work_dir, "--out", str(tmp_path)]
    code = main(argv)
    assert code == 1  # exit code = number of failed runs
    records = {r["parameters"]["n_components"]: r for r in load_records(tmp_path)}
    assert records[3]["status"] == "ok"
    failed = records[0]
    assert failed["status"] == "failed"
    assert "n_components" in failed["error"] and "ValueError" in failed["error"]
    assert failed["error_location"].startswith("cell")
    assert "FAILED" in capsys.readouterr().err
    index = pd.read_csv(tmp_path / "runs.tsv", sep="\t")
    assert sorted(index["status"]) == ["failed", "ok"]
    # a re-run redoes the failed run only
    stamp = (tmp_path / "runs" / records[3]["run_id"] / "record.json").stat().st_mtime_ns
    assert main(argv) == 1
    assert (tmp_path / "runs" / records[3]["run_id"] / "record.json").stat().st_mtime_ns == stamp


def test_dask_executor_on_a_local_cluster(serial_sweep, notebook, work_dir, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    _, records = serial_sweep
    grid = {"n_components": [2], "random_state": [0, 1]}
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        dask_records = run_sweep(
            notebook,
            grid,
            tmp_path,
            {"work_dir": work_dir},
            executor="dask",
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert len(dask_records) == 2 and all(r["status"] == "ok" for r in dask_records)
    expected = {k: v for k, v in _metrics(records).items() if "n_components-2" in k}
    assert _metrics(dask_records) == expected


def test_plan_rejects_undeclared_parameters(notebook: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no parameter"):
        plan_sweep(notebook, {"n_comps": [1]}, tmp_path)
    with pytest.raises(ValueError, match="both swept and fixed"):
        plan_sweep(notebook, {"n_components": [1]}, tmp_path, {"n_components": 2})
    with pytest.raises(FileNotFoundError):
        plan_sweep(tmp_path / "missing.ipynb", {"n_components": [1]}, tmp_path)
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(notebook, {"n_components": [1]}, tmp_path, jobs=0)
    with pytest.raises(ValueError, match="scheduler"):
        run_sweep(notebook, {"n_components": [1]}, tmp_path, executor="dask")


def test_grid_file(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("parameters:\n  n_components: [4, 6]\nfixed:\n  preset: small\n")
    assert load_grid_file(path) == ({"n_components": [4, 6]}, {"preset": "small"})
    path.write_text("n_components: [4, 6]\npreset: small\n")
    assert load_grid_file(path) == ({"n_components": [4, 6]}, {"preset": "small"})
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_grid_file(path)


# ----------------------------------------------------- run identity, values, paths (issue 15)
ECHO_PARAMETERS = """\
value = None              # any value: the notebook records what it received
path: str = ""            # a file the notebook must find
flag: bool = False        # a typed boolean
work_dir: str = "work"    # created relative to the kernel's working directory
output_dir: str = ""      # set by the sweep
"""
ECHO_BODY = """\
import json, os

os.makedirs(work_dir, exist_ok=True)
with open(os.path.join(output_dir, "value.json"), "w") as fh:
    json.dump({"value": value, "type": type(value).__name__}, fh)
if path:
    assert os.path.isfile(path), f"{path} is not an existing file (cwd {os.getcwd()})"
if value == "fail":
    raise RuntimeError("asked to fail")
"""


@pytest.fixture(scope="module")
def echo_sweep(tmp_path_factory: pytest.TempPathFactory):
    """One real sweep of a cheap notebook, started from another folder than the notebook's."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(ECHO_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(ECHO_BODY)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb_dir = tmp_path_factory.mktemp("notebooks")
    nbformat.write(nb, nb_dir / "echo.ipynb")
    caller = tmp_path_factory.mktemp("caller")
    (caller / "in").mkdir()
    (caller / "in" / "x_pwd.nii.gz").write_bytes(b"")
    values = ["coll/sub ä/x_pwd.nii.gz", "coll/sub ö/x_pwd.nii.gz", "1e-3", "010", "no", "fail"]
    argv = ["sweep", str(nb_dir / "echo.ipynb"), "-p", "value", *values]
    argv += ["-s", "path", "in/x_pwd.nii.gz", "--out", "sweep"]
    old = Path.cwd()
    os.chdir(caller)
    try:
        code = main(argv)
    finally:
        os.chdir(old)
    records = {str(r["parameters"]["value"]): r for r in load_records(caller / "sweep")}
    return code, records, caller, nb_dir


def _received(record: dict) -> dict:
    return json.loads((Path(record["executed_notebook"]).parent / "value.json").read_text())


def test_values_that_slug_alike_get_their_own_runs(echo_sweep) -> None:
    code, records, caller, _ = echo_sweep
    assert len(pd.read_csv(caller / "sweep" / "runs.tsv", sep="\t")) == 6
    a, b = records["coll/sub ä/x_pwd.nii.gz"], records["coll/sub ö/x_pwd.nii.gz"]
    assert a["run_id"] != b["run_id"]
    assert _received(a)["value"] == "coll/sub ä/x_pwd.nii.gz"
    assert _received(b)["value"] == "coll/sub ö/x_pwd.nii.gz"
    assert a["status"] == b["status"] == "ok"
    assert code == 1  # only the "fail" run failed


def test_a_sweep_that_would_share_a_folder_is_refused(notebook: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same parameters"):
        plan_sweep(notebook, {"n_components": [2, 2]}, tmp_path)


def test_values_are_parsed_like_python(echo_sweep, notebook: Path, tmp_path, capsys) -> None:
    _, records, _, _ = echo_sweep
    assert _received(records["0.001"]) == {"value": 0.001, "type": "float"}
    assert _received(records["10"]) == {"value": 10, "type": "int"}
    assert _received(records["no"]) == {"value": "no", "type": "str"}
    # a parameter the notebook declares bool refuses "no" (never False), before any run
    argv = ["sweep", str(notebook), "-p", "n_components", "2", "-s", "preset", "010"]
    assert parse_value("010", "str") == "010" and parse_value("1e-3", "float") == 0.001
    with pytest.raises(ValueError, match="true or false"):
        parse_value("no", "bool", "flag")
    assert main([*argv, "-s", "random_state", "1e-3", "--out", str(tmp_path)]) == 2
    assert "not an integer" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_relative_paths_resolve_from_the_callers_folder(echo_sweep) -> None:
    _, records, caller, nb_dir = echo_sweep
    found = [r["status"] for r in records.values() if r["parameters"]["value"] != "fail"]
    assert found == ["ok"] * 5  # each run's notebook found in/x_pwd.nii.gz
    assert (caller / "work").is_dir() and not (nb_dir / "work").exists()


def test_a_failed_runs_notebook_is_kept(echo_sweep) -> None:
    _, records, caller, _ = echo_sweep
    failed = records["fail"]
    assert failed["status"] == "failed"
    executed = Path(failed["executed_notebook"])
    assert executed.exists()
    outputs = [o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", [])]
    assert any(o.get("ename") in ("RuntimeError", "AssertionError") for o in outputs)
    index = pd.read_csv(caller / "sweep" / "runs.tsv", sep="\t").set_index("status")
    assert index.loc["failed", "notebook"] == str(executed)
    assert not list(executed.parent.glob(".*.part*"))
    assert "asked to fail" in failed["error"]


# ------------------------------------------------- a book chapter: shared pipeline settings
CHAPTERS = Path(__file__).resolve().parents[1] / "notebooks"


def test_shared_settings_are_planned_by_name(tmp_path: Path) -> None:
    """A setting the chapter does not declare is swept by name; the run id sees its value."""
    chapter = CHAPTERS / "04_temporal_nmf.ipynb"
    specs = plan_sweep(chapter, {"high_pass": ["0.01", 0.02]}, tmp_path, {"preset": "small"})
    # typed like the run command's --high-pass (a float), kept by name in the record
    assert [s.parameters for s in specs] == [
        {"preset": "small", "high_pass": 0.01},
        {"preset": "small", "high_pass": 0.02},
    ]
    ids = [s.run_id for s in specs]
    assert ids[0].startswith("04_temporal_nmf__high_pass-0.01__")
    assert ids[1].startswith("04_temporal_nmf__high_pass-0.02__")
    assert ids[0].rsplit("__", 1)[1] != ids[1].rsplit("__", 1)[1]  # digests differ
    other = plan_sweep(chapter, {"high_pass": [0.01]}, tmp_path / "b", {"preset": "default"})
    assert other[0].run_id != ids[0]  # a fixed shared setting is in the digest too
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['high_pas'\].*'pipeline' dict"):
        plan_sweep(chapter, {"high_pas": [0.01]}, tmp_path)
    with pytest.raises(ValueError, match="must be a non-negative number"):
        plan_sweep(chapter, {"high_pass": [-1]}, tmp_path)
    with pytest.raises(ValueError, match="both by name and inside 'pipeline'"):
        plan_sweep(chapter, {"high_pass": [0.01]}, tmp_path, {"pipeline": {"high_pass": 0.02}})


def test_a_swept_shared_setting_reaches_the_chapters_workspace(tmp_path: Path, capsys) -> None:
    """``sweep 03 -p high_pass 0 0.02``: each run's chapter computes with its own value."""
    work, out = tmp_path / "work", tmp_path / "out"
    chapter = str(CHAPTERS / "03_standardization.ipynb")
    argv = ["sweep", chapter, "-p", "high_pass", "0", "0.02", "-s", "preset", "small"]
    assert main([*argv, "-s", "work_dir", str(work), "--out", str(out)]) == 0
    records = load_records(out)
    assert [r["status"] for r in records] == ["ok", "ok"]
    passed = [
        nbformat.read(r["executed_notebook"], as_version=4).metadata["papermill"]["parameters"]
        for r in records
    ]
    assert sorted(p["pipeline"]["high_pass"] for p in passed) == [0.0, 0.02]
    assert all(p["pipeline"]["preset"] == "small" for p in passed)
    # two cleaning configurations, two cached cleaning stages
    assert len(list(work.glob("cleaned-*.nc"))) == 2
