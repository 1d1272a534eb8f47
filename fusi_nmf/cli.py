"""Command line: ``python -m fusi_nmf <command> ...``.

Each command lives in the module that does the work; that module exposes
``add_parser(subparsers)`` which registers its sub-parser and sets
``func(args) -> int`` as the default. This file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: exit status after Ctrl-C (128 + SIGINT), what shells report for an interrupted command
EXIT_INTERRUPTED = 130

# command name -> module that implements it (imported lazily: fast --help)
COMMANDS: dict[str, str] = {
    "run": "fusi_nmf.pipeline",
    "simulate": "fusi_nmf.simulate",
    "fetch": "fusi_nmf.datasets",
    "book": "fusi_nmf.book",
    "sweep": "fusi_nmf.sweep",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser; ``only`` registers just that command's sub-parser.

    Each command's module is imported to register its sub-parser. ``main`` passes the
    command it was given as ``only``: importing every module (``book`` pulls in
    papermill and nbformat) cost ~0.4 s of start-up per ``run`` (python -X importtime).
    """
    parser = argparse.ArgumentParser(
        prog="python -m fusi_nmf",
        description="fUSI Power Doppler -> motion correction -> z-score -> pos/neg NMF.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args_in = sys.argv[1:] if argv is None else list(argv)
        # a known command first: import only its module (help and errors unchanged)
        only = args_in[0] if args_in and args_in[0] in COMMANDS else None
        parser = build_parser(only)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # One line, not a traceback: completed cache entries stay valid and the
        # temporary files of the interrupted write are removed by the next run.
        if os.environ.get("FUSI_NMF_DEBUG"):
            raise
        print("interrupted (Ctrl-C); nothing half-written is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        # Users get the message, not a traceback; FUSI_NMF_DEBUG=1 shows it all.
        if os.environ.get("FUSI_NMF_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
