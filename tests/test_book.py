"""The book build: papermill execution into book/, Jupyter Book HTML, real browser check.

Tests on a tiny two-chapter book (real kernels, real ``jupyter-book build``) pin
the build machinery: parameters reach only the notebooks that declare them, the kernels'
environment, the one-line-per-notebook report, the hidden injected-parameters cell, and
failure handling. The full-book test builds the HTML of the chapters the session's
``executed_book`` fixture executed (small simulated preset) and checks every page in
headless Chromium. All but the quick unit tests are marked ``slow``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from fusi_nmf.book import (
    BookBuildError,
    NotebookExecutionError,
    build_book,
    expected_seconds,
    toc_chapters,
)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_check  # noqa: E402


# --------------------------------------------------------------------------- tiny book
def _notebook(path: Path, title: str, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nSome narrative."),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)


def _tiny_book(root: Path) -> Path:
    """A two-chapter book with the repository's real _config.yml."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "intro.md").write_text("# Tiny book\n\nStart with {doc}`book/01_alpha`.\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: book/01_alpha\n  - file: book/02_beta\n"
    )
    (root / "notebooks").mkdir()
    _notebook(
        root / "notebooks" / "01_alpha.ipynb",
        "Alpha",
        'work_dir: str = "work"  # cache folder\nn_components: int = 3  # number of components',
        "%matplotlib inline\n"
        "import json, os, pathlib\n"
        "from fusi_nmf.plotting import plot_error_curve\n"
        "pathlib.Path(work_dir).mkdir(exist_ok=True)\n"
        "env = {k: os.environ.get(k) for k in ('FUSI_NMF_PROGRESS', 'MPLBACKEND')}\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        "env['transport'] = IPKernelApp.instance().transport\n"
        "pathlib.Path(work_dir, 'alpha.json').write_text(json.dumps(env))\n"
        "if n_components < 1:\n"
        "    raise ValueError(f'n_components={n_components}: must be at least 1')\n"
        "fig = plot_error_curve(list(range(1, n_components + 1)), title='Alpha  curve')\n"
        "fig",
    )
    _notebook(
        root / "notebooks" / "02_beta.ipynb",
        "Beta",
        'work_dir: str = "work"  # cache folder\nmax_iter: int = 5  # iterations',
        "import pathlib, sys\n"
        "print('noise on stderr', file=sys.stderr)\n"
        "print(f'max_iter is {max_iter!r}')",
    )
    return root


def _injected_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path}: expected one injected-parameters cell"
    assert "hide-input" in cells[0].metadata["tags"]
    return cells[0].source


def test_toc_chapters_reads_repository_toc():
    chapters = toc_chapters(REPO)
    assert chapters[0] == "book/01_data"
    assert chapters[-1] == "book/07_validation"
    assert len(chapters) == 7
    assert [c.split("/")[1][:2] for c in chapters] == [f"{i:02d}" for i in range(1, 8)]


@pytest.mark.slow  # real kernels and a real jupyter-book build (~20 s)
def test_build_tiny_book(tmp_path, monkeypatch):
    root = _tiny_book(tmp_path / "book_root")
    work = tmp_path / "work"
    # a non-inline backend in the parent must not reach the kernels (figures would vanish)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("FUSI_NMF_PROGRESS", raising=False)
    out = io.StringIO()
    result = build_book(
        root, n_components=4, parameters={"max_iter": "7"}, work_dir=work, stream=out
    )

    # one line per notebook as it finishes (they run side by side), numbered in toc
    # order, with its time; then the html location
    lines = out.getvalue().splitlines()
    first_two = sorted(lines[:2])
    assert re.fullmatch(r"\[1/2\] 01_alpha\.ipynb\s+\d+\.\d s", first_two[0])
    assert re.fullmatch(r"\[2/2\] 02_beta\.ipynb\s+\d+\.\d s", first_two[1])
    assert str(root / "_build" / "html" / "index.html") in lines[-1]
    assert [run.name for run in result.runs] == ["01_alpha", "02_beta"]

    # each notebook got exactly the parameters it declares; CLI strings typed as declared
    alpha = _injected_source(root / "book" / "01_alpha.ipynb")
    beta = _injected_source(root / "book" / "02_beta.ipynb")
    assert "n_components = 4" in alpha and "max_iter" not in alpha
    assert "max_iter = 7" in beta and "n_components" not in beta
    assert f'work_dir = "{work.resolve()}"' in alpha
    assert result.runs[1].parameters == {"max_iter": 7, "work_dir": str(work.resolve())}

    # kernels ran with progress bars off and matplotlib's inline backend
    env = json.loads((work / "alpha.json").read_text())
    assert env["FUSI_NMF_PROGRESS"] == "0"
    assert env["MPLBACKEND"] != "Agg"
    # Unix sockets, not TCP ports that kernels started side by side can race for
    assert env["transport"] == "ipc"
    import os

    assert os.environ["MPLBACKEND"] == "Agg"  # the parent's environment is restored

    # the html: warning-free build, figure present, stderr dropped, injected cell folded
    assert result.html_index == root / "_build" / "html" / "index.html"
    assert not re.search(r"WARNING|ERROR", result.build_log)
    alpha_html = (root / "_build" / "html" / "book" / "01_alpha.html").read_text()
    beta_html = (root / "_build" / "html" / "book" / "02_beta.html").read_text()
    # the figure's title is its alt text (not the image's file name)
    assert re.search(r'<img alt="Alpha curve" src="../_images/[0-9a-f]+\.png"', alpha_html)
    assert "max_iter is 7" in beta_html
    assert "noise on stderr</span>" not in beta_html  # the code is shown, not its stderr
    assert beta_html.count("noise on stderr") == 1
    assert "tag_injected-parameters" in beta_html and "tag_hide-input" in beta_html
    # every script once (sphinx-thebe's configuration came twice: a console error)
    assert alpha_html.count("const THEBE_JS_URL") == 1
    # launch buttons open the committed source notebook, not the untracked executed copy
    assert "urlpath=lab/tree/notebooks/02_beta.ipynb" in beta_html


@pytest.mark.slow  # real kernels and a real jupyter-book build (~20 s)
def test_failing_notebook_keeps_previous_copy(tmp_path):
    root = _tiny_book(tmp_path / "book_root")
    build_book(root, work_dir=tmp_path / "work", build=False, verbose=False)
    good_alpha = (root / "book" / "01_alpha.ipynb").read_bytes()
    good_beta = (root / "book" / "02_beta.ipynb").read_bytes()

    out = io.StringIO()
    with pytest.raises(PapermillExecutionError) as info:  # one at a time: the chain stops
        build_book(root, n_components=-1, work_dir=tmp_path / "work", stream=out, jobs=1)
    err = info.value
    assert isinstance(err, NotebookExecutionError)
    message = str(err)
    assert "01_alpha.ipynb" in message
    assert "ValueError: n_components=-1: must be at least 1" in message
    assert f"cell {err.cell_index}" in message
    assert re.fullmatch(r"\[1/2\] 01_alpha\.ipynb\s+FAILED after \d+\.\d s", out.getvalue().strip())
    # previous good copies untouched (the chain stopped at the failure), failure kept aside
    assert (root / "book" / "01_alpha.ipynb").read_bytes() == good_alpha
    assert (root / "book" / "02_beta.ipynb").read_bytes() == good_beta
    assert err.failed_copy == root / "_build" / "failed" / "01_alpha.ipynb"
    failed = nbformat.read(err.failed_copy, as_version=4)
    assert any(o.get("ename") == "ValueError" for c in failed.cells for o in c.get("outputs", []))
    assert not list((root / "book").glob(".*"))  # no temporary files left behind
    assert not (root / "_build" / "html").exists()
    # a later good run replaces the copy and drops the stale failure report
    build_book(root, work_dir=tmp_path / "work", notebooks=["01"], build=False, verbose=False)
    assert not err.failed_copy.exists()


@pytest.mark.slow  # real kernels (~10 s)
def test_a_failure_among_parallel_chapters_is_raised_and_nothing_is_built(tmp_path):
    root = _tiny_book(tmp_path / "book_root")
    out = io.StringIO()
    with pytest.raises(NotebookExecutionError, match=r"01_alpha\.ipynb") as info:
        build_book(root, n_components=-1, work_dir=tmp_path / "work", stream=out, jobs=2)
    # beta was already running beside alpha: it finished, and says so; no book was built
    assert re.search(r"^\[2/2\] 02_beta\.ipynb\s+\d+\.\d s$", out.getvalue(), re.M)
    assert re.search(r"^\[1/2\] 01_alpha\.ipynb\s+FAILED after", out.getvalue(), re.M)
    assert "max_iter is 5" in (root / "book" / "02_beta.ipynb").read_text()
    assert not (root / "book" / "01_alpha.ipynb").exists()
    assert info.value.failed_copy == root / "_build" / "failed" / "01_alpha.ipynb"
    assert not (root / "_build" / "html").exists()


def _chapters_copy(root: Path) -> Path:
    """The repository's real chapters in a fresh book root (book/ and _build/ stay clean)."""
    root.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "intro.md"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


def test_shared_setting_names_are_checked_before_any_chapter_runs(tmp_path):
    root = _chapters_copy(tmp_path / "repo")
    run = {"work_dir": tmp_path / "work", "build": False, "verbose": False}
    with pytest.raises(ValueError, match="declared by no notebook") as info:
        build_book(root, parameters={"high_pas": "0.02"}, **run)
    assert "any pipeline setting" in str(info.value) and "high_pass" in str(info.value)
    # a setting's value is typed like the run CLI's option and checked by PipelineConfig
    with pytest.raises(ValueError, match="high_pass='fast' is not a number"):
        build_book(root, parameters={"high_pass": "fast"}, **run)
    with pytest.raises(ValueError, match=r"high_pass=-1\.0 must be a non-negative number"):
        build_book(root, parameters={"high_pass": "-1"}, **run)
    # the dict itself: unknown keys list the valid ones; a setting given twice is refused
    with pytest.raises(ValueError, match=r"Unknown pipeline parameter\(s\) \['hig_pass'\]"):
        build_book(root, parameters={"pipeline": '{"hig_pass": 0.02}'}, **run)
    with pytest.raises(ValueError, match="both by name and inside 'pipeline'"):
        build_book(root, parameters={"pipeline": "{preset: small}", "preset": "small"}, **run)
    assert not (root / "book").exists() and not (tmp_path / "work").exists()


@pytest.mark.slow  # a real chapter on the small preset (~10 s)
def test_a_shared_setting_reaches_the_chapters_workspace(tmp_path):
    """``book -p high_pass 0`` goes into chapter 3's pipeline dict and its Workspace."""
    from fusi_nmf.cli import main
    from fusi_nmf.pipeline import Workspace

    root = _chapters_copy(tmp_path / "repo")
    work = tmp_path / "work"
    argv = ["book", "--root", str(root), "--no-build", "--work-dir", str(work), "--notebooks"]
    assert main([*argv, "03", "--preset", "small", "-p", "high_pass", "0"]) == 0
    executed = nbformat.read(root / "book" / "03_standardization.ipynb", as_version=4)
    passed = executed.metadata["papermill"]["parameters"]
    assert passed["pipeline"] == {"preset": "small", "high_pass": 0.0}  # typed as a float
    # the chapter cached its cleaning stage under the key of exactly that configuration
    assert len(list(work.glob("cleaned-*.nc"))) == 1
    ws = Workspace(work, preset="small", high_pass=0.0, progress=False)
    ws.cleaned()
    assert "cleaned" in ws.cache_hits  # with the default high_pass it would be computed anew


@pytest.mark.slow  # real kernels and a real jupyter-book build (~20 s)
def test_cli_reports_failure_and_bad_parameters(tmp_path, capfd):
    from fusi_nmf.cli import main

    root = _tiny_book(tmp_path / "book_root")
    cmd = ["book", "--root", str(root), "--no-build", "--work-dir", str(tmp_path / "work")]

    assert main([*cmd, "-p", "n_compnents", "3"]) == 2
    err = capfd.readouterr().err
    assert "n_compnents" in err and "declared by no notebook" in err

    assert main([*cmd, "-p", "max_iter", "many"]) == 2
    err = capfd.readouterr().err
    assert "max_iter='many'" in err and "int" in err

    assert main([*cmd, "--n-components", "-1"]) == 1
    captured = capfd.readouterr()
    assert "error: notebook 01_alpha.ipynb failed" in captured.err
    assert "Traceback" not in captured.err

    assert main([*cmd, "--notebooks", "01", "02_beta", "--jobs", "2"]) == 0
    captured = capfd.readouterr()
    assert sorted(re.findall(r"^\[\d/2\] \S+", captured.out, re.M)) == [
        "[1/2] 01_alpha.ipynb",
        "[2/2] 02_beta.ipynb",
    ]
    assert captured.err == ""  # no kernel start-up chatter


def test_build_refuses_unexecuted_chapters(tmp_path):
    root = _tiny_book(tmp_path / "book_root")
    with pytest.raises(FileNotFoundError, match="not been executed yet"):
        build_book(root, execute=False, verbose=False)
    with pytest.raises(ValueError, match="matches no chapter"):
        build_book(root, notebooks=["09"], build=False, verbose=False)


@pytest.mark.slow  # real kernels and a real jupyter-book build (~20 s)
def test_warning_fails_the_build(tmp_path):
    root = _tiny_book(tmp_path / "book_root")
    (root / "book").mkdir()
    for source in (root / "notebooks").glob("*.ipynb"):  # unexecuted copies render too
        shutil.copy(source, root / "book" / source.name)
    assert build_book(root, execute=False, verbose=False).html_index.is_file()
    (root / "intro.md").write_text("# Tiny book\n\nA broken reference: {doc}`book/nowhere`.\n")
    with pytest.raises(BookBuildError, match="nowhere"):
        build_book(root, execute=False, verbose=False)


# --------------------------------------------------------------------------- browser
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install chromium)"
)


@pytest.mark.slow  # a real Chromium session (~9 s)
@pytest.mark.browser
@needs_chromium
def test_browser_check_detects_problems(tmp_path):
    """The checker itself fails on a broken page (so a clean report means something)."""
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "index.html").write_text(
        "<html><body><div class='bd-sidebar-primary'><nav>"
        "<a class='reference internal' href='book/ok.html'>ok</a></nav></div></body></html>"
    )
    (site / "book" / "ok.html").write_text("<html><body><article>fine</article></body></html>")
    wide = "<tr>" + "".join(f"<td>column{i}</td>" for i in range(60)) + "</tr>"
    (site / "book" / "broken.html").write_text(
        "<html><body><article style='max-width: 600px'><img src='missing.png' "
        "alt='../_images/missing.png'>"
        f"<table>{wide}</table>"
        f"<div style='overflow-x: auto'><table>{wide}</table></div></article>"
        "<script>console.error('boom'); const THEBE_JS_URL = 1;</script>"
        "<script>const THEBE_JS_URL = 2;</script>"
        "<script src='https://example.org/tracker.js'></script></body></html>"
    )
    report = browser_check.check_book(site, tmp_path / "shots")
    problems = "\n".join(report.problems())
    for width in ("desktop", "phone"):
        key = f"book/broken.html @{width}"
        assert f"{key}: console error: boom" in problems
        # a script included twice is an error too: there is no ignore list
        assert f"{key}: console error: uncaught: " in problems and "THEBE_JS_URL" in problems
        assert f"{key}: image alt text is a file name" in problems
        # the bare table overflows; the one in a scrolling box does not
        overflow = [p for p in report.problems() if p.startswith(f"{key}: wide content")]
        assert len(overflow) == 1 and "column0" in overflow[0], overflow
    assert "naturalWidth 0" in problems and "missing.png" in problems
    assert "404" in problems
    assert "needs an external resource: https://example.org/tracker.js" in problems
    assert "sidebar: no link reaches book/broken.html" in problems
    assert report.nav_reached == ["book/ok.html"]
    # the bare page has no theme menu button: the phone check says so
    assert report.menu_checked and "no visible menu button" in problems
    assert not any(p.startswith("book/ok.html") for p in report.problems())
    assert (tmp_path / "shots" / "phone_book_broken.png").stat().st_size > 0


def _image_outputs(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or {"remove-output", "remove-cell"} & set(tags):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            count += any(k.startswith("image/") for k in data)
    return count


@pytest.mark.slow
@pytest.mark.browser
def test_full_book_small_preset(executed_book, tmp_path):
    """Build the real book from the session's executed chapters, then check it in Chromium.

    The chapters were executed once for the session (``executed_book`` in conftest.py,
    shared with test_notebooks.py); this builds their HTML in the same copy of the
    repository, so the repository's own book/ and _build/ are never touched.
    """
    assert executed_book.error is None, f"the book did not execute: {executed_book.error}"
    root = executed_book.root
    chapters = [f"{c}.html" for c in toc_chapters(root)]
    assert len(executed_book.runs) == len(chapters)
    out = io.StringIO()
    result = build_book(root, execute=False, stream=out)
    print(executed_book.log + out.getvalue())
    assert not re.search(r"WARNING|ERROR", result.build_log)
    assert result.html_index is not None and result.html_index.is_file()

    html = root / "_build" / "html"
    # no page shows the machine's folders (the work folder is passed relative to notebooks/)
    leaks = [p.name for p in html.rglob("*.html") if str(root) in p.read_text(errors="replace")]
    assert leaks == [], f"pages showing the local folder {root}: {leaks}"
    if not CHROMIUM.exists():
        pytest.skip("book built warning-free; browser check needs /usr/bin/chromium")
    # no screenshots (16 full-page PNGs are a third of this test's time and nothing here
    # reads them); `python tests/browser_check.py DIR --screenshots OUT` takes them
    report = browser_check.check_book(html, None, chapters=chapters)
    assert report.problems() == []  # no console error at all, menu opens, tables scroll
    assert report.nav_reached == chapters
    assert report.menu_checked
    for chapter in chapters:
        executed = root / chapter.replace(".html", ".ipynb")
        for width in ("desktop", "phone"):
            page = report.pages[f"{chapter} @{width}"]
            assert page.article_images == _image_outputs(executed), (chapter, width)
            figures = [(src, alt) for src, _width, alt in page.images if "/_images/" in src]
            untitled = [src for src, alt in figures if not alt or alt == "figure"]
            assert untitled == [], (chapter, width, untitled)
    assert sum(report.pages[f"{c} @desktop"].article_images for c in chapters) > 0


def test_expected_seconds_orders_parallel_chapters(tmp_path):
    """Longest first: the last run's duration, else the author's hint, else 0."""
    source, output = tmp_path / "06.ipynb", tmp_path / "book" / "06.ipynb"
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, source)
    assert expected_seconds(source, output) == 0.0
    nb.metadata["fusi_nmf"] = {"expected_seconds": 30}
    nbformat.write(nb, source)
    assert expected_seconds(source, output) == 30.0
    output.parent.mkdir()
    nb.metadata["papermill"] = {"duration": 12.5}
    nbformat.write(nb, output)
    assert expected_seconds(source, output) == 12.5
    output.write_text("not json")  # a broken copy falls back to the hint
    assert expected_seconds(source, output) == 30.0
    # the repository's model-selection chapter (the longest) is started first on a cold build
    repo = REPO / "notebooks" / "06_model_selection.ipynb"
    assert expected_seconds(repo, tmp_path / "missing.ipynb") > max(
        expected_seconds(p, tmp_path / "missing.ipynb")
        for p in (REPO / "notebooks").glob("*.ipynb") if p != repo
    )


def test_default_jobs_two_per_core_within_the_available_memory(monkeypatch):
    from fusi_nmf import book

    memory = book.available_memory()  # read from this machine's /proc and cgroup files
    assert memory is not None and 0 < memory
    total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) * 1024
    assert memory <= total
    cores = os.cpu_count() or 1
    assert 1 <= book.default_jobs() <= 2 * cores
    # the policy, with the memory this machine does not have (a small container): one
    # kernel per GiB available, never fewer than one
    monkeypatch.setattr(book, "available_memory", lambda: int(2.5 * 2**30))
    assert book.default_jobs() == min(2 * cores, 2)
    monkeypatch.setattr(book, "available_memory", lambda: 100 * 2**20)
    assert book.default_jobs() == 1
    monkeypatch.setattr(book, "available_memory", lambda: None)
    assert book.default_jobs() == 2 * cores
