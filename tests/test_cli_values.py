"""``book -p`` and ``sweep -p`` read a value the same way (one parser: fusi_nmf._values).

Both commands run a real tiny notebook in a real kernel; the same command-line values
must reach it with the same types, and a bad value must be refused by both with the same
message before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from fusi_nmf.cli import main

PARAMETERS = """\
flag: bool = True   # a declared boolean
k: int = 3          # a declared integer
rate: float = 0.1   # a declared float
label: str = "a"    # a declared string
out: str = ""       # where the notebook writes what it received
work_dir: str = "work"
pipeline: dict = {}  # pipeline settings the notebook does not declare by name
"""
BODY = """\
import json
from pathlib import Path

received = {"flag": flag, "k": k, "rate": rate, "label": label, "pipeline": pipeline}
Path(out).write_text(json.dumps({n: [v, type(v).__name__] for n, v in received.items()}))
"""
# the same values for both commands: YAML 1.2 core schema, then the declared type
GIVEN = [("flag", "false"), ("k", "010"), ("rate", "1e-3"), ("label", "010"),
         ("smooth_after_zscore", "true"), ("high_pass", "1e-3")]
EXPECTED = {
    "flag": [False, "bool"], "k": [10, "int"], "rate": [0.001, "float"], "label": ["010", "str"],
    "pipeline": [{"smooth_after_zscore": True, "high_pass": 0.001}, "dict"],
}


@pytest.fixture(scope="module")
def book_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-chapter book: _toc.yml and notebooks/echo.ipynb."""
    root = tmp_path_factory.mktemp("book")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: book/echo\n")
    (root / "notebooks").mkdir()
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(BODY)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, root / "notebooks" / "echo.ipynb")
    return root


def _book(root: Path, values: list[tuple[str, str]]) -> list[str]:
    return ["book", "--root", str(root), "--no-build", "--work-dir", str(root / "work"),
            *[a for name, value in values for a in ("-p", name, value)]]


def _sweep(root: Path, values: list[tuple[str, str]]) -> list[str]:
    (name, value), *rest = values  # one swept parameter, the others fixed
    return ["sweep", str(root / "notebooks" / "echo.ipynb"), "--out", str(root / "sweep"),
            "-p", name, value, *[a for n, v in rest for a in ("-s", n, v)]]


def test_book_and_sweep_pass_the_same_typed_values(book_root: Path) -> None:
    received = {}
    for command, argv in (("book", _book), ("sweep", _sweep)):
        out = book_root / f"{command}.json"
        assert main(argv(book_root, [*GIVEN, ("out", str(out))])) == 0
        received[command] = json.loads(out.read_text())
    assert received["book"] == received["sweep"] == EXPECTED


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("smooth_after_zscore", "no", "parameter smooth_after_zscore='no' is not a boolean; "
         "write true or false (PipelineConfig declares smooth_after_zscore: bool)"),
        ("smooth_after_zscore", "1", "smooth_after_zscore='1' is not a boolean; write true"),
        ("flag", "no", "parameter flag='no' is not a boolean; write true or false "
         "(the notebook declares flag: bool)"),
        ("flag", "off", "flag='off' is not a boolean"),
        ("k", "1e-3", "parameter k='1e-3' is not an integer (the notebook declares k: int)"),
        ("n_components", "2.5", "n_components='2.5' is not an integer (PipelineConfig declares"),
    ],
)
def test_book_and_sweep_refuse_the_same_values_alike(
    book_root: Path, capsys, name: str, value: str, message: str
) -> None:
    errors = {}
    files_before = sorted(book_root.rglob("*"))
    for command, argv in (("book", _book), ("sweep", _sweep)):
        assert main(argv(book_root, [(name, value)])) == 2, command
        errors[command] = capsys.readouterr().err.strip()
    assert errors["book"] == errors["sweep"], errors
    assert message in errors["book"]
    assert sorted(book_root.rglob("*")) == files_before  # refused before anything ran
