"""Build the Jupyter Book: execute the notebooks with papermill, then render HTML.

``python -m fusi_nmf book`` (or :func:`build_book`) does two things:

1. Executes every source notebook ``notebooks/NAME.ipynb`` listed in ``_toc.yml``
   (chapters ``book/NAME``) with papermill into ``book/NAME.ipynb``, in table-of-contents
   order, passing only the parameters each notebook declares in its ``parameters`` cell
   and one absolute ``work_dir`` shared by the whole chain (stages are cached there, so
   later notebooks reuse what earlier ones computed). A pipeline setting (a
   :class:`~fusi_nmf.pipeline.PipelineConfig` field) that a chapter does not declare by
   itself goes into that chapter's ``pipeline`` dict parameter, so every chapter
   computes with the same settings. One line per notebook reports its
   wall time. A notebook is executed into a temporary file and renamed into place only if
   it succeeded: a failure leaves the previous good copy untouched.
2. Runs ``jupyter-book build <root> --builder html -W -n --keep-going --all`` (Jupyter
   Book 1.x; ``_config.yml`` switches its own execution off), which writes
   ``_build/html/index.html``.

This module is also a tiny Sphinx extension (listed in ``_config.yml``): it points the
Binder launch button at the committed source notebook instead of the executed copy, and
includes every script once (sphinx-thebe's configuration script came twice).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from papermill.exceptions import PapermillExecutionError

from fusi_nmf._atomic import atomic_path
from fusi_nmf._util import temporary_environ
from fusi_nmf._values import declared_type, parse_value
from fusi_nmf.pipeline import PipelineConfig, parse_config_value

__all__ = [
    "BookBuildError",
    "BookResult",
    "NotebookExecutionError",
    "NotebookRun",
    "add_parser",
    "build_book",
    "build_html",
    "execute_notebook",
    "figure_alt_text",
    "find_root",
    "notebook_parameters",
    "route_parameters",
    "toc_chapters",
]

#: Kernel the notebooks run in (``make venv`` installs the venv's kernelspec under this name).
KERNEL_NAME = "python3"
#: Tag papermill puts on the cell it injects; the book hides that cell's input.
INJECTED_TAG = "injected-parameters"
HIDE_TAG = "hide-input"


class NotebookExecutionError(PapermillExecutionError):
    """A notebook raised while papermill executed it.

    Same fields as :class:`papermill.exceptions.PapermillExecutionError`, plus the
    ``notebook`` that failed and ``failed_copy``, the executed notebook (with the
    traceback in its outputs) kept for inspection.
    """

    def __init__(
        self,
        notebook: Path,
        error: PapermillExecutionError,
        failed_copy: Path | None = None,
    ) -> None:
        super().__init__(
            error.cell_index,
            error.exec_count,
            error.source,
            error.ename,
            error.evalue,
            error.traceback,
        )
        self.notebook = Path(notebook)
        self.failed_copy = failed_copy

    def __str__(self) -> str:
        source = (self.source or "").strip().splitlines()
        first = source[0] if source else ""
        where = f"cell {self.cell_index} (In [{self.exec_count}]: {first!r})"
        lines = [
            f"notebook {self.notebook.name} failed in {where}: {self.ename}: {self.evalue}",
        ]
        if self.failed_copy is not None:
            lines.append(f"the executed notebook with the full traceback: {self.failed_copy}")
        lines.append("the previous executed copy in book/ (if any) was left untouched.")
        return "\n".join(lines)


class BookBuildError(RuntimeError):
    """``jupyter-book build`` failed or emitted warnings (the build runs with ``-W``)."""


@dataclass
class NotebookRun:
    """One executed notebook: where from, where to, with what, how long."""

    name: str
    source: Path
    output: Path
    parameters: dict[str, Any]
    seconds: float


@dataclass
class BookResult:
    """What :func:`build_book` did."""

    root: Path
    work_dir: Path
    runs: list[NotebookRun] = field(default_factory=list)
    execute_seconds: float = 0.0
    html_index: Path | None = None
    build_seconds: float = 0.0
    build_log: str = ""

    @property
    def notebook_seconds(self) -> dict[str, float]:
        """Wall time per executed notebook, in table-of-contents order."""
        return {run.name: run.seconds for run in self.runs}


# --------------------------------------------------------------------------- toc / params
def find_root(root: str | os.PathLike | None = None) -> Path:
    """Return the book's root folder (the one holding ``_toc.yml`` and ``_config.yml``).

    ``root`` if given, else the current directory if it holds ``_toc.yml``, else the
    repository this package is installed from (editable installs).
    """
    if root is not None:
        candidates = [Path(root)]
    else:
        candidates = [Path.cwd(), Path(__file__).resolve().parents[1]]
    for candidate in candidates:
        if (candidate / "_toc.yml").is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no _toc.yml in {tried}: run from the repository root or pass --root DIR "
        "(the folder with _config.yml, _toc.yml and notebooks/)."
    )


def toc_chapters(root: str | os.PathLike) -> list[str]:
    """Return the ``file:`` entries of ``root/_toc.yml`` in reading order (root page excluded).

    Parts, chapters and nested sections are flattened; entries are paths relative to
    ``root`` without suffix, e.g. ``"book/01_data"``.
    """
    toc_path = Path(root) / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8")) or {}
    if not isinstance(toc, dict):
        raise ValueError(f"{toc_path}: expected a mapping (jb-book format), got {type(toc)}")
    files: list[str] = []

    def walk(entries: Any) -> None:
        for entry in entries or []:
            if not isinstance(entry, dict):
                continue
            if "file" in entry:
                files.append(str(Path(entry["file"]).with_suffix("")))
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk([{k: v for k, v in toc.items() if k in ("parts", "chapters", "sections")}])
    return files


def _chapter_notebooks(root: Path, notebooks_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(name, source, output)`` for every toc chapter backed by an executed notebook.

    A chapter ``book/NAME`` is backed by ``notebooks_dir/NAME.ipynb``; chapters elsewhere
    (plain Markdown pages) are not notebooks and are skipped.
    """
    chapters = []
    for entry in toc_chapters(root):
        rel = Path(entry)
        if rel.parts[0] != "book":
            continue
        source = notebooks_dir / f"{rel.name}.ipynb"
        chapters.append((rel.name, source, root / rel.with_suffix(".ipynb")))
    return chapters


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Parameters a notebook declares: name -> ``{inferred_type_name, default, help}``.

    Thin wrapper around :func:`papermill.inspect_notebook` with a clear error if the
    notebook is missing.
    """
    import papermill

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} does not exist")
    return papermill.inspect_notebook(str(path))


# The chapters' shared settings: a chapter declares ``dataset``, ``work_dir``, the knobs its
# own code uses, and one dict parameter ``pipeline`` for every other PipelineConfig setting
# (``Workspace(work_dir, dataset=dataset, **pipeline)``). book and sweep accept any setting
# by name and route it there, so every chapter of a chain computes with the same settings.

#: The chapters' dict parameter that carries the shared pipeline settings.
SHARED_PARAMETER = "pipeline"
#: Names a ``pipeline`` dict may hold.
PIPELINE_SETTINGS = frozenset(f.name for f in dataclasses.fields(PipelineConfig))


def accepted_parameters(declared: Collection[str]) -> set[str]:
    """Names a notebook declaring ``declared`` accepts: its own, plus the settings if it
    declares ``pipeline``."""
    return set(declared) | (set(PIPELINE_SETTINGS) if SHARED_PARAMETER in declared else set())


def route_parameters(parameters: dict[str, Any], declared: Collection[str]) -> dict[str, Any]:
    """Papermill parameters for one notebook from ``{name: value}`` given by name.

    Names the notebook declares pass as they are; pipeline settings it does not declare
    are typed (:func:`fusi_nmf.pipeline.parse_config_value`) and merged into its
    ``pipeline`` dict (a ``pipeline`` given explicitly is the base). Other names are
    dropped: the caller decides which names are errors (see :func:`accepted_parameters`).

    Raises
    ------
    ValueError
        A setting is given both by name and inside ``pipeline``, or a value is invalid.
    """
    out = {k: v for k, v in parameters.items() if k in declared}
    shared = SHARED_PARAMETER
    if shared not in declared:
        return out
    if not isinstance(out.get(shared, {}), dict):
        raise ValueError(f"parameter {shared!r} must be a mapping, got {out[shared]!r}")
    base = dict(out.get(shared) or {})
    routed = {
        k: parse_config_value(k, v)
        for k, v in parameters.items()
        if k in PIPELINE_SETTINGS and k not in declared
    }
    both = sorted(set(base) & set(routed))
    if both:
        raise ValueError(
            f"setting(s) {both} given both by name and inside {shared!r}; give each once"
        )
    if routed or shared in out:
        out[shared] = base | routed
        PipelineConfig.from_dict(out[shared])  # unknown keys or bad values fail here, clearly
    return out


def _coerce(name: str, value: Any, declared: dict[str, Any] | None) -> Any:
    """A command-line string typed as ``sweep`` types it (:func:`fusi_nmf._values.parse_value`,
    against the type the notebook declares for ``name``); other values pass as they are."""
    if not isinstance(value, str):
        return value
    return parse_value(value, declared_type(declared or {}), name)


# --------------------------------------------------------------------------- execution
#: One BLAS/OpenMP thread per kernel, for the book's chapters and for sweep runs alike:
#: N kernels side by side use N cores without oversubscribing them.
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


#: Memory one chapter kernel may need at its peak: measured 787 MiB for the largest
#: (chapter 6 on the full-size default recording; all four kernels of a book run on 2
#: cores peaked at 2.3 GiB together), rounded up.
KERNEL_MEMORY_BYTES = 1 << 30


def default_jobs() -> int:
    """Chapters executed at once by default: two per core, as many as memory allows.

    A kernel spends part of its time starting, importing and waiting for a stage another
    chapter is computing, so one kernel per core leaves cores idle. Measured on 2 cores
    (the book on the default recording, data and work folder cold): 4 at once 48-52 s,
    3 at once 53-59 s, 2 at once 62 s, one after the other 88 s. Each kernel uses one
    BLAS thread, so the number changes no result. Kernels are limited to what the
    available memory (:func:`available_memory`) holds at :data:`KERNEL_MEMORY_BYTES`
    each, at least one: a container's CPU count often exceeds what its memory fits.
    """
    by_cores = 2 * (os.cpu_count() or 1)
    memory = available_memory()
    if memory is None:
        return by_cores
    return max(1, min(by_cores, memory // KERNEL_MEMORY_BYTES))


def available_memory() -> int | None:
    """Bytes this process can still use: the smaller of the system's available memory
    and its cgroup's limit minus its usage (containers, Binder); None if unknown."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            limits.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Environment the kernels inherit while notebooks execute.

    Progress bars off (they would only clutter stderr, which the book drops anyway), and
    no ``MPLBACKEND``: a non-inline backend such as ``Agg`` would make the notebooks'
    figures disappear from the book. One BLAS thread per kernel: chapters run side by
    side (``jobs``) without oversubscribing the cores, and a chapter's numbers do not
    depend on how many run at once (the pipeline's stages use one thread anyway).
    """
    with temporary_environ(FUSI_NMF_PROGRESS="0", MPLBACKEND=None, **THREAD_ENV):
        yield


_FIGURE_REPR = re.compile(r"^<Figure: (?P<title>.+)>$", re.S)


def figure_alt_text(cell: Any) -> str | None:
    """Alt text for the images a code cell displays: their figure titles, or None.

    :class:`fusi_nmf.plotting.TitledFigure` stores ``<Figure: title>`` as the
    ``text/plain`` beside its PNG; several figures in one cell are joined with "; ".
    An image without such a title gets the generic ``"figure"`` (never a file path).
    """
    titles, images = [], 0
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if not any(key.startswith("image/") for key in data):
            continue
        images += 1
        text = data.get("text/plain", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        match = _FIGURE_REPR.match(text.strip())
        if match:
            titles.append(" ".join(match.group("title").split()))
    if not images:
        return None
    return "; ".join(titles) if titles else "figure"


def _prepare_for_book(path: Path) -> None:
    """Fold papermill's injected-parameters cell and give every figure its alt text.

    The injected cell is tagged ``hide-input`` (readers can unfold it); an image cell gets
    myst-nb's cell-level ``mystnb.image.alt`` from :func:`figure_alt_text`.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            cell["metadata"]["tags"] = [*tags, HIDE_TAG]
            changed = True
        alt = figure_alt_text(cell) if cell.get("cell_type") == "code" else None
        if alt is not None:
            mystnb = cell["metadata"].setdefault("mystnb", {})
            mystnb.setdefault("image", {})["alt"] = alt
            changed = True
    if changed:
        nbformat.write(nb, path)


def execute_notebook(
    source: str | os.PathLike,
    output: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    kernel_name: str = KERNEL_NAME,
    cwd: str | os.PathLike | None = None,
    failed_dir: str | os.PathLike | None = None,
) -> float:
    """Execute ``source`` with papermill into ``output``; return the wall time in seconds.

    The notebook runs into a temporary file beside ``output`` which replaces ``output``
    only on success. The injected-parameters cell is tagged ``hide-input`` and every
    figure gets its title as alt text (:func:`figure_alt_text`).

    Parameters
    ----------
    source, output : path
        Source notebook and executed copy.
    parameters : dict, optional
        Passed to papermill as is (only names the notebook declares make sense).
    kernel_name : str
        Jupyter kernel to run in.
    cwd : path, optional
        Working directory of the kernel; default: the source notebook's folder, as when
        a reader opens the notebook in Jupyter.
    failed_dir : path, optional
        Where to keep the executed notebook of a failed run (with the traceback).

    Raises
    ------
    NotebookExecutionError
        A cell raised; the message names the notebook and the cell.
    """
    import papermill

    from fusi_nmf._kernels import KERNEL_OPTIONS  # imports jupyter_client, like papermill

    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"notebook {source} does not exist")
    cwd = Path(cwd) if cwd is not None else source.parent
    start = time.perf_counter()
    with atomic_path(output) as tmp:
        try:
            papermill.execute_notebook(
                str(source),
                str(tmp),
                parameters=dict(parameters or {}),
                kernel_name=kernel_name,
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
                **KERNEL_OPTIONS,
            )
        except PapermillExecutionError as exc:
            failed_copy = None
            if failed_dir is not None and tmp.exists():
                failed_copy = Path(failed_dir) / output.name
                failed_copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp, failed_copy)
            raise NotebookExecutionError(source, exc, failed_copy) from exc
        _prepare_for_book(tmp)
        if failed_dir is not None:  # a stale failure report would mislead
            (Path(failed_dir) / output.name).unlink(missing_ok=True)
        tmp.chmod(0o644)  # mkstemp makes it private; an executed notebook is a normal file
    return time.perf_counter() - start


def _select(
    chapters: list[tuple[str, Path, Path]], selection: Sequence[str] | None
) -> list[tuple[str, Path, Path]]:
    """Keep the chapters whose name starts with one of ``selection`` (``"03"``, a full name)."""
    if not selection:
        return chapters
    stems = [Path(str(wanted)).name.removesuffix(".ipynb") for wanted in selection]
    known = [name for name, _, _ in chapters]
    for wanted, stem in zip(selection, stems, strict=True):
        if not any(name.startswith(stem) for name in known):
            raise ValueError(
                f"--notebooks {wanted!r} matches no chapter of _toc.yml; "
                f"choose from {', '.join(known)} (a number prefix such as 03 is enough)"
            )
    return [c for c in chapters if any(c[0].startswith(stem) for stem in stems)]


def expected_seconds(source: Path, output: Path) -> float:
    """How long a chapter is expected to run, to start the longest first (``jobs > 1``).

    Its last execution (papermill's record in the executed copy ``output``), else the
    source notebook's ``metadata["fusi_nmf"]["expected_seconds"]`` (a hint its author
    measured), else 0. Only the order in which chapters start depends on it.
    """
    for path, read in ((output, _papermill_seconds), (source, _hinted_seconds)):
        if path.is_file():
            try:
                seconds = read(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                seconds = None
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                return float(seconds)
    return 0.0


def _papermill_seconds(notebook: dict) -> Any:
    return notebook.get("metadata", {}).get("papermill", {}).get("duration")


def _hinted_seconds(notebook: dict) -> Any:
    return notebook.get("metadata", {}).get("fusi_nmf", {}).get("expected_seconds")


def _missing_sources(chapters: list[tuple[str, Path, Path]]) -> None:
    missing = [str(source) for _, source, _ in chapters if not source.is_file()]
    if missing:
        raise FileNotFoundError(
            "_toc.yml lists chapters whose source notebook does not exist: "
            + ", ".join(missing)
            + "; add the notebook or remove the chapter from _toc.yml."
        )


# --------------------------------------------------------------------------- html
def _jupyter_book_command() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    return [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


_WARNING_RE = re.compile(r"(WARNING|ERROR|CRITICAL|SEVERE):")


def build_html(root: str | os.PathLike, *, stream: TextIO | None = None) -> tuple[Path, str]:
    """Run ``jupyter-book build`` on ``root`` (HTML, warnings are errors).

    Every page is re-read (``--all``) so warnings of unchanged pages are reported too.

    Parameters
    ----------
    root : path
        Book root (``_config.yml``, ``_toc.yml``); the HTML goes to ``root/_build/html``.
    stream : text stream, optional
        Where to print the full build log if the build fails.

    Returns
    -------
    index : Path
        ``root/_build/html/index.html``.
    log : str
        The build's stdout and stderr.

    Raises
    ------
    BookBuildError
        The build failed or emitted a warning; the message lists the warnings.
    """
    root = Path(root)
    cmd = [
        *_jupyter_book_command(),
        "build",
        str(root),
        "--builder",
        "html",
        "-W",
        "-n",
        "--keep-going",
        "--all",
    ]
    env = dict(os.environ)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if _WARNING_RE.search(line)]
    index = root / "_build" / "html" / "index.html"
    if proc.returncode != 0 or warnings or not index.is_file():
        if stream is not None:
            print(log, file=stream)
        shown = "\n".join(warnings[:20]) or log[-3000:]
        raise BookBuildError(
            f"jupyter-book build failed (exit {proc.returncode}, {len(warnings)} warnings; "
            f"the build treats warnings as errors):\n{shown}"
        )
    return index, log


# --------------------------------------------------------------------------- main entry
def build_book(
    root: str | os.PathLike | None = None,
    *,
    notebooks_dir: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    preset: str | None = None,
    n_components: int | None = None,
    parameters: dict[str, Any] | None = None,
    work_dir: str | os.PathLike | None = None,
    notebooks: Sequence[str] | None = None,
    execute: bool = True,
    build: bool = True,
    jobs: int | None = None,
    kernel_name: str = KERNEL_NAME,
    verbose: bool = True,
    stream: TextIO | None = None,
) -> BookResult:
    """Execute the book's notebooks with papermill, then build the HTML book.

    Parameters
    ----------
    root : path, optional
        Folder with ``_config.yml``, ``_toc.yml``, ``intro.md``; default: see
        :func:`find_root`. Executed notebooks go to ``root/book/``, HTML to
        ``root/_build/html``.
    notebooks_dir : path, optional
        Source notebooks (default ``root/notebooks``).
    dataset, preset, n_components : optional
        Shortcuts for the parameters of the same name (``None``: notebook default).
    parameters : dict, optional
        More parameters by name. Each notebook receives those it declares; a pipeline
        setting (a :class:`~fusi_nmf.pipeline.PipelineConfig` field) it does not declare
        goes into its ``pipeline`` dict. Any other name is an error (probably a typo).
        Strings are converted to the declared type, or the setting's type (command line
        values); every chapter's parameters are checked before the first one runs.
    work_dir : path, optional
        Work directory shared by the chain (made absolute); default ``root/_build/work``.
    notebooks : sequence of str, optional
        Execute only these chapters (names or number prefixes such as ``"03"``); the
        others keep their existing executed copies.
    execute, build : bool
        Run papermill / run ``jupyter-book build``.
    jobs : int, optional
        Notebooks executed at once (default :func:`default_jobs`: two per core, as many
        as the available memory holds). They
        start longest first (:func:`expected_seconds`; book order among equals) and
        share the work folder: a stage one chapter is computing is waited for and read
        by the others, never computed twice.
    kernel_name : str
        Jupyter kernel name.
    verbose : bool
        Print one line per notebook (and where the HTML is).
    stream : text stream, optional
        Where those lines go (default: ``sys.stdout`` at call time).

    Returns
    -------
    BookResult
        Executed notebooks with their times, the ``index.html`` path, the build log.

    Raises
    ------
    NotebookExecutionError
        A notebook failed (subclass of ``PapermillExecutionError``); the message names
        the notebook and the cell. Notebooks not yet started are not executed (those
        already running finish) and the book is not built.
    BookBuildError
        ``jupyter-book build`` failed or warned.
    """
    root = find_root(root)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else root / "notebooks"
    work_dir = Path(work_dir) if work_dir is not None else root / "_build" / "work"
    work_dir = work_dir.expanduser().resolve()
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: must be an integer of at least 1")

    chapters = _chapter_notebooks(root, notebooks_dir)
    if not chapters:
        raise ValueError(f"{root / '_toc.yml'} lists no chapter under book/")
    result = BookResult(root=root, work_dir=work_dir)

    out = stream if stream is not None else sys.stdout

    def say(message: str) -> None:
        if verbose:
            print(message, file=out, flush=True)

    if execute:
        selected = _select(chapters, notebooks)
        _missing_sources(selected)
        declared = {
            name: notebook_parameters(source) for name, source, _ in chapters if source.is_file()
        }
        given: dict[str, Any] = dict(parameters or {})
        shortcuts = {"dataset": dataset, "preset": preset, "n_components": n_components}
        for key, value in shortcuts.items():
            if value is not None:
                given[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
        own = set().union(*(set(p) for p in declared.values()))
        known = set().union(*(accepted_parameters(p) for p in declared.values()))
        unknown = sorted(set(given) - known)
        if unknown:
            shared = f" and any pipeline setting ({', '.join(sorted(PIPELINE_SETTINGS))})"
            raise ValueError(
                f"parameter(s) {', '.join(unknown)} are declared by no notebook and are no "
                f"pipeline setting; the notebooks take: {', '.join(sorted(own))}"
                + (shared if known != own else "")
            )
        dataset_value = given.get("dataset")
        if isinstance(dataset_value, str) and (
            os.sep in dataset_value or dataset_value.endswith((".nii", ".nii.gz"))
        ):  # a file path: make it absolute, since the kernels run in notebooks/
            given["dataset"] = str(Path(dataset_value).expanduser().resolve())
        # the kernels run in notebooks/: a work folder inside the repository is passed
        # relative to it, so the executed pages show no local folder
        given["work_dir"] = (
            os.path.relpath(work_dir, notebooks_dir.resolve())
            if work_dir.is_relative_to(root)
            else str(work_dir)
        )

        index = {name: i for i, (name, _, _) in enumerate(chapters, start=1)}
        total = len(chapters)
        failed_dir = root / "_build" / "failed"
        lock = threading.Lock()

        def parameters_for(name: str) -> dict[str, Any]:
            typed = {
                key: _coerce(key, value, declared[name].get(key))
                for key, value in given.items()
                if key in declared[name]
            }
            # settings the notebook does not declare go into its `pipeline` dict
            return route_parameters(given | typed, declared[name])

        # every chapter's parameters are checked before the first one runs
        planned = {name: parameters_for(name) for name, _, _ in selected}
        work_dir.mkdir(parents=True, exist_ok=True)

        def run_one(chapter: tuple[str, Path, Path]) -> NotebookRun:
            name, source, output = chapter
            params = planned[name]
            start = time.perf_counter()
            try:
                seconds = execute_notebook(
                    source, output, params, kernel_name=kernel_name, failed_dir=failed_dir
                )
            except PapermillExecutionError:
                with lock:
                    say(
                        f"[{index[name]}/{total}] {output.name:<28s} FAILED after "
                        f"{time.perf_counter() - start:.1f} s"
                    )
                raise
            with lock:
                say(f"[{index[name]}/{total}] {output.name:<28s} {seconds:6.1f} s")
            return NotebookRun(name, source, output, params, seconds)

        start = time.perf_counter()
        with _kernel_environment():
            if jobs == 1 or len(selected) < 2:
                for chapter in selected:
                    result.runs.append(run_one(chapter))
            else:
                # longest first (stable: book order among equals), so that the longest
                # chapter does not run alone at the end
                longest_first = sorted(selected, key=lambda c: -expected_seconds(c[1], c[2]))
                result.runs.extend(_run_parallel(run_one, longest_first, jobs))
        result.runs.sort(key=lambda run: index[run.name])
        result.execute_seconds = time.perf_counter() - start
        say(
            f"executed {len(result.runs)} notebook(s) in {result.execute_seconds:.1f} s "
            f"(work dir {work_dir})"
        )

    if build:
        missing = [str(output) for _, _, output in chapters if not output.is_file()]
        if missing:
            raise FileNotFoundError(
                "these chapters have not been executed yet: "
                + ", ".join(missing)
                + "; run `python -m fusi_nmf book` without --no-execute/--notebooks first."
            )
        start = time.perf_counter()
        result.html_index, result.build_log = build_html(root, stream=out if verbose else None)
        result.build_seconds = time.perf_counter() - start
        say(f"built the HTML book in {result.build_seconds:.1f} s: {result.html_index}")
    return result


def _run_parallel(run_one: Any, chapters: Sequence[Any], jobs: int) -> list[NotebookRun]:
    """``run_one`` on every chapter, ``jobs`` at once, started in order.

    On the first failure the chapters not yet started are cancelled, the running ones
    finish (a kernel is not killed halfway through writing its notebook), and the
    failure is raised.
    """
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(chapters)))
    futures = [pool.submit(run_one, chapter) for chapter in chapters]
    try:
        for future in as_completed(futures):
            future.result()  # raises the first failure
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [future.result() for future in futures]


# --------------------------------------------------------------------------- CLI
def _main(args: argparse.Namespace) -> int:
    parameters: dict[str, Any] = {}
    for name, value in args.param or []:
        parameters[name] = value
    try:
        build_book(
            args.root,
            dataset=args.dataset,
            preset=args.preset,
            n_components=args.n_components,
            parameters=parameters,
            work_dir=args.work_dir,
            notebooks=args.notebooks,
            execute=not args.no_execute,
            build=not args.no_build,
            jobs=args.jobs,
        )
    except PapermillExecutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BookBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``python -m fusi_nmf book``."""
    parser = subparsers.add_parser(
        "book",
        help="execute the notebooks with papermill and build the Jupyter Book",
        description=(
            "Execute notebooks/*.ipynb (in _toc.yml order) with papermill into book/, "
            "one line per notebook with its time, then build the HTML book into "
            "_build/html with Jupyter Book 1.x (warnings are errors)."
        ),
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="simulated | nunez-elizalde-2022 | PATH to a *_pwd.nii.gz (default: simulated)",
    )
    parser.add_argument("--preset", default=None, help="simulated recording size: default | small")
    parser.add_argument("--n-components", type=int, default=None, help="number of NMF components")
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="any other notebook parameter or pipeline setting (repeatable), "
        "e.g. -p max_iter 1000 -p high_pass 0.02",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="work directory shared by the notebooks (default: _build/work)",
    )
    parser.add_argument(
        "--notebooks",
        nargs="+",
        default=None,
        metavar="NAME",
        help="execute only these chapters (e.g. 01 03); others keep their executed copy",
    )
    parser.add_argument("--no-execute", action="store_true", help="skip papermill")
    parser.add_argument("--no-build", action="store_true", help="skip jupyter-book build")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks executed at once (default: two per core, as many as the available "
        "memory holds at 1 GiB each; each kernel uses one BLAS thread, and chapters wait "
        "for the stages another is computing)",
    )
    parser.add_argument(
        "--root", default=None, help="book root with _config.yml and _toc.yml (default: .)"
    )
    parser.set_defaults(func=_main)
    return parser


# --------------------------------------------------------------------------- Sphinx
def _launch_source_notebooks(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Point launch buttons of ``book/NAME`` pages at ``notebooks/NAME.ipynb``.

    The executed copies in ``book/`` are build products (not in the repository), so
    Binder must open the committed source notebook instead.
    """
    if not pagename.startswith("book/"):
        return
    name = pagename.split("/", 1)[1]
    for group in context.get("header_buttons", []) or []:
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url")
            if url:
                button["url"] = url.replace(f"book/{name}.ipynb", f"notebooks/{name}.ipynb")


def _drop_duplicate_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Include every script once.

    sphinx-thebe registers its inline configuration script (``const THEBE_JS_URL = ...``)
    at every ``env-before-read-docs``, which Jupyter Book triggers twice, so each page
    declared the same ``const`` twice: a console error ("Identifier 'THEBE_JS_URL' has
    already been declared") on every page.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, tuple]] = set()
    unique = []
    for script in scripts:
        # the two copies may differ in priority only; the browser runs both either way
        attributes = getattr(script, "attributes", {}) or {}
        name = str(getattr(script, "filename", script) or "")
        key = (name, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension entry point (``sphinx: extra_extensions: [fusi_nmf.book]``)."""
    # after sphinx-book-theme adds the launch buttons (priority 501)
    app.connect("html-page-context", _launch_source_notebooks, priority=600)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
