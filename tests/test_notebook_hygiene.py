"""Source notebooks are clean inputs for papermill and the book.

Committed notebooks carry no outputs or execution counts (the book's copies in ``book/``
are executed by ``python -m fusi_nmf book``), have exactly one cell tagged ``parameters``
whose defaults are typed and commented (``papermill --help-notebook`` shows them) and
hold the shared pipeline settings in one empty ``pipeline`` dict, and match ``_toc.yml``
one to one.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import nbformat
import papermill
import pytest

from fusi_nmf.book import toc_chapters
from fusi_nmf.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]


def test_notebooks_and_toc_match():
    chapters = [Path(c) for c in toc_chapters(REPO)]
    assert all(c.parent == Path("book") for c in chapters), chapters
    in_toc = {c.name for c in chapters}
    on_disk = {p.stem for p in NOTEBOOKS}
    assert sorted(on_disk - in_toc) == [], "notebooks missing from _toc.yml"
    assert sorted(in_toc - on_disk) == [], "_toc.yml chapters without notebooks/NAME.ipynb"
    assert len(chapters) == len(in_toc), "a chapter is listed twice in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert dirty == [], f"{path.name}: cells {dirty} have outputs or execution counts"
    assert "papermill" not in nb.metadata, f"{path.name}: is an executed (papermill) copy"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == [], f"{path.name}: contains a papermill injected-parameters cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_typed_and_commented(path):
    params = papermill.inspect_notebook(str(path))
    assert params, f"{path.name}: the parameters cell declares nothing"
    untyped = [n for n, p in params.items() if p["inferred_type_name"] in ("None", "", None)]
    undocumented = [n for n, p in params.items() if not (p["help"] or "").strip()]
    assert untyped == [], f"{path.name}: parameters without a type annotation: {untyped}"
    assert undocumented == [], f"{path.name}: parameters without a comment: {undocumented}"
    # every notebook shares the chain's work directory (the book passes one absolute path)
    assert "work_dir" in params, f"{path.name}: no work_dir parameter"


def test_shared_parameters_agree():
    """A name declared by several notebooks has one type and one default everywhere.

    ``python -m fusi_nmf book -p NAME VALUE`` sends the same value to every notebook that
    declares NAME, so the notebooks must mean the same thing by it.
    """
    seen: dict[str, tuple[str, str, str]] = {}
    clashes = []
    for path in NOTEBOOKS:
        for name, p in papermill.inspect_notebook(str(path)).items():
            key = (p["inferred_type_name"], p["default"])
            if name in seen and seen[name][:2] != key:
                clashes.append(f"{name}: {seen[name][2]} {seen[name][:2]} vs {path.name} {key}")
            seen.setdefault(name, (*key, path.name))
    assert clashes == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_shared_settings_are_one_empty_dict(path):
    """The shared pipeline settings arrive in one ``pipeline`` dict, empty by default.

    The chapter declares ``dataset``, ``work_dir`` and its own knobs; every other setting is
    an entry of ``pipeline`` (``book``/``sweep`` route ``-p NAME VALUE`` into it), which the
    workspace cell unpacks into ``Workspace`` so that an unknown key fails there.
    """
    params = papermill.inspect_notebook(str(path))
    assert "pipeline" in params, f"{path.name}: no pipeline dict parameter"
    assert params["pipeline"]["inferred_type_name"] == "dict"
    assert ast.literal_eval(params["pipeline"]["default"]) == {}
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    # short cells: besides dataset, the chapter keeps only a few settings as its own knobs
    own_settings = sorted(set(params) & fields - {"dataset"})
    assert len(own_settings) <= 4, f"{path.name}: shared settings declared again {own_settings}"
    nb = nbformat.read(path, as_version=4)
    calls = [c.source for c in nb.cells if "Workspace(" in c.source and "**pipeline" in c.source]
    assert len(calls) == 1, f"{path.name}: no Workspace(..., **pipeline) call"


def test_parameter_defaults_match_pipeline_config():
    """Every notebook parameter that is a pipeline setting defaults to PipelineConfig's value.

    ``PipelineConfig`` is the one source of truth for defaults; the notebooks are authored by
    hand, so this is what keeps a chapter's parameter cell from drifting away from it.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    drift = []
    for path in NOTEBOOKS:
        for name, p in papermill.inspect_notebook(str(path)).items():
            if name not in defaults:
                continue
            value = ast.literal_eval(p["default"])
            expected = defaults[name]
            if value == "" and expected is None:  # "" stands for None in a typed str cell
                continue
            if value != expected:
                drift.append(f"{path.name}: {name} = {value!r}, PipelineConfig says {expected!r}")
    assert drift == []
