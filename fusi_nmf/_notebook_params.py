"""Route ``-p NAME VALUE`` to a chapter notebook: its own parameter or its ``pipeline`` dict.

A chapter declares ``dataset``, ``work_dir``, the knobs its own code uses, and one dict
parameter ``pipeline`` for every other :class:`fusi_nmf.pipeline.PipelineConfig` setting
(``Workspace(work_dir, dataset=dataset, **pipeline)``). ``python -m fusi_nmf book`` and
``sweep`` accept any setting by name: a name the notebook declares goes to it as is, a
pipeline setting it does not declare goes into ``pipeline``, so every chapter of a chain
computes with the same settings and the shared cache stays consistent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from fusi_nmf.pipeline import PipelineConfig, parse_config_value

#: The chapters' dict parameter that carries the shared pipeline settings.
SHARED = "pipeline"
#: Names a ``pipeline`` dict may hold.
SETTINGS = frozenset(f.name for f in dataclasses.fields(PipelineConfig))


def routable(declared: Collection[str]) -> set[str]:
    """Names a notebook declaring ``declared`` accepts: its own, plus the settings if it
    declares ``pipeline``."""
    return set(declared) | (set(SETTINGS) if SHARED in declared else set())


def route(parameters: dict[str, Any], declared: Collection[str]) -> dict[str, Any]:
    """Papermill parameters for one notebook from ``{name: value}`` given by name.

    Names the notebook declares pass as they are; pipeline settings it does not declare
    are typed (:func:`fusi_nmf.pipeline.parse_config_value`) and merged into its
    ``pipeline`` dict (a ``pipeline`` given explicitly is the base). Other names are
    dropped: the caller decides which names are errors (see :func:`routable`).

    Raises
    ------
    ValueError
        A setting is given both by name and inside ``pipeline``, or a value is invalid.
    """
    out = {k: v for k, v in parameters.items() if k in declared}
    if SHARED not in declared:
        return out
    if not isinstance(out.get(SHARED, {}), dict):
        raise ValueError(f"parameter {SHARED!r} must be a mapping, got {out[SHARED]!r}")
    base = dict(out.get(SHARED) or {})
    routed = {
        k: parse_config_value(k, v)
        for k, v in parameters.items()
        if k in SETTINGS and k not in declared
    }
    both = sorted(set(base) & set(routed))
    if both:
        raise ValueError(
            f"setting(s) {both} given both by name and inside {SHARED!r}; give each once"
        )
    if routed or SHARED in out:
        out[SHARED] = base | routed
        PipelineConfig.from_dict(out[SHARED])  # unknown keys or bad values fail here, clearly
    return out
