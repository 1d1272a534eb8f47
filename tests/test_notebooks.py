"""Every chapter notebook runs under papermill with a real kernel on the small preset.

The chapters run in ``_toc.yml`` order and share one work directory, as in the book, so
later chapters reuse the cached stages of earlier ones. Each notebook receives only the
parameters its ``parameters`` cell declares. A bad parameter must stop the run with a
``PapermillExecutionError`` that names it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from fusi_nmf._util import temporary_environ
from fusi_nmf.book import notebook_parameters, toc_chapters

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"


def _ordered_notebooks() -> list[Path]:
    """Every notebooks/*.ipynb, in table-of-contents order (unlisted ones last, by name)."""
    on_disk = {p.stem: p for p in sorted(NOTEBOOK_DIR.glob("*.ipynb"))}
    order = [Path(entry).name for entry in toc_chapters(REPO)]
    listed = [on_disk.pop(name) for name in order if name in on_disk]
    return listed + list(on_disk.values())


NOTEBOOKS = _ordered_notebooks()
SMALL = {"preset": "small", "n_components": 4, "max_iter": 200}
# Chapter 6 launches a sweep of chapter 4: keep it to 2 x 2 quick runs in the test.
SMALL_SWEEP = {"ks": [2, 4], "seeds": [0, 1], "n_jobs": 2}


def _execute(source: Path, out_dir: Path, work_dir: Path, **overrides) -> nbformat.NotebookNode:
    declared = notebook_parameters(source)
    params = {"work_dir": str(work_dir), **SMALL, **SMALL_SWEEP, **overrides}
    params = {k: v for k, v in params.items() if k in declared}
    return papermill.execute_notebook(
        str(source),
        str(out_dir / source.name),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(out_dir),
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, nbformat.NotebookNode | BaseException | Path]:
    """Run every chapter once, in book order, sharing one work dir (key ``"work_dir"``)."""
    out_dir = tmp_path_factory.mktemp("executed")
    work_dir = out_dir / "work"
    results: dict[str, nbformat.NotebookNode | BaseException | Path] = {"work_dir": work_dir}
    # Agg (MPLBACKEND) in the kernel would drop inline figures.
    with temporary_environ(FUSI_NMF_PROGRESS="0", MPLBACKEND=None):
        for source in NOTEBOOKS:
            try:
                results[source.name] = _execute(source, out_dir, work_dir)
            except Exception as exc:  # reported per notebook by the tests below
                results[source.name] = exc
    return results


def _figure_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        cell
        for cell in nb.cells
        if cell.cell_type == "code" and ("plot_" in cell.source or "display(fig)" in cell.source)
    ]


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_runs_and_shows_its_figures(executed, name):
    result = executed[name]
    if isinstance(result, BaseException):
        pytest.fail(f"{name} failed under papermill: {result}")
    assert result.metadata["papermill"]["parameters"]["preset"] == "small"
    errors = [
        out
        for cell in result.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    figure_cells = _figure_cells(result)
    assert figure_cells, f"{name} has no figure cell"
    for cell in figure_cells:
        outputs = cell.get("outputs", [])
        images = [out for out in outputs if "image/png" in out.get("data", {})]
        # A figure cell shows its figure, or says explicitly why it skipped it (e.g. a
        # comparison whose package function is not available).
        skipped = any("skipped" in out.get("text", "") for out in outputs)
        assert images or skipped, (
            f"{name}: figure cell without an image/png output:\n{cell.source}"
        )


def test_chapters_share_the_work_dir_cache(executed):
    """The chain computes each preprocessing stage once: every later chapter reuses it."""
    failed = [name for name, r in executed.items() if isinstance(r, BaseException)]
    assert failed == []
    work_dir = executed["work_dir"]
    for stage in ("registration", "cleaned", "standardized"):
        entries = sorted(p.name for p in work_dir.glob(f"{stage}-*.nc"))
        assert len(entries) == 1, f"{stage} computed with different keys: {entries}"


def test_a_bad_parameter_stops_the_notebook_with_a_useful_message(tmp_path):
    source = NOTEBOOK_DIR / "04_temporal_nmf.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        _execute(source, tmp_path, tmp_path / "work", n_components=0)
    message = str(info.value)
    assert "ValueError" in message
    assert "n_components" in message and ">= 1" in message
