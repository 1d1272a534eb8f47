"""Every chapter notebook runs under papermill with a real kernel on the small preset.

The chapters are executed once per test session by the ``executed_book`` fixture
(``tests/conftest.py``, the book's own :func:`fusi_nmf.book.build_book`), in
``_toc.yml`` order with one shared work directory, so later chapters reuse the cached
stages of earlier ones; ``tests/test_book.py`` builds and browses the same executed
chapters. Each notebook receives the parameters its ``parameters`` cell declares, and the
other pipeline settings (``preset`` here) in its ``pipeline`` dict.
A bad parameter must stop the run with a ``PapermillExecutionError`` that names it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import SMALL_BOOK

from fusi_nmf._util import temporary_environ
from fusi_nmf.book import notebook_parameters, route_parameters, toc_chapters

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


def _execute(source: Path, out_dir: Path, work_dir: Path, **params) -> nbformat.NotebookNode:
    declared = notebook_parameters(source)
    params = {"work_dir": str(work_dir), **SMALL_BOOK, **params}
    params = route_parameters(params, declared)  # as the book does: settings into the pipeline dict
    with temporary_environ(FUSI_NMF_PROGRESS="0", MPLBACKEND=None):
        return papermill.execute_notebook(
            str(source),
            str(out_dir / source.name),
            parameters=params,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(out_dir),
        )


def _executed(book, name: str) -> nbformat.NotebookNode:
    """The executed chapter, or a test failure saying why it is missing."""
    if book.error is not None and not book.executed(name).is_file():
        pytest.fail(f"{name} was not executed: the book stopped at {book.error}")
    path = book.executed(name)
    assert path.is_file(), f"{path} missing after a successful execution"
    return nbformat.read(path, as_version=4)


def _figure_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        cell
        for cell in nb.cells
        if cell.cell_type == "code" and ("plot_" in cell.source or "display(fig)" in cell.source)
    ]


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_runs_and_shows_its_figures(executed_book, name):
    result = _executed(executed_book, name)
    assert result.metadata["papermill"]["parameters"]["pipeline"]["preset"] == "small"
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
        # the small preset is simulated: it has ground truth, so no figure may be skipped
        assert images, f"{name}: figure cell without an image/png output:\n{cell.source}"


def test_chapters_share_the_work_dir_cache(executed_book):
    """The chain computes each preprocessing stage once: every later chapter reuses it."""
    assert executed_book.error is None, executed_book.error
    assert [run.name for run in executed_book.runs] == [p.stem for p in NOTEBOOKS]
    work_dir = executed_book.work_dir
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


def test_an_unknown_pipeline_entry_stops_the_notebook_with_the_valid_names(tmp_path):
    """Plain papermill users pass the dict themselves: a typo fails with the list of names."""
    source = NOTEBOOK_DIR / "01_data.ipynb"
    params = {"work_dir": str(tmp_path / "work"), "pipeline": {"hig_pass": 0.02}}
    with (
        pytest.raises(papermill.PapermillExecutionError) as info,
        temporary_environ(FUSI_NMF_PROGRESS="0"),
    ):
        papermill.execute_notebook(
            str(source), str(tmp_path / source.name), parameters=params, progress_bar=False
        )
    message = str(info.value)
    assert "Unknown pipeline parameter(s) ['hig_pass']" in message
    assert "'high_pass'" in message  # the valid names are listed
