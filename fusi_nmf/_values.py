"""Values typed on the command line: one parser for ``sweep``, ``book`` and pipeline settings.

A value is read as a Python user expects, by the YAML 1.2 core schema (``8`` an int,
``1e-3`` and ``0.5`` floats, ``010`` is 10, only ``true``/``false`` booleans, ``null``
None, ``no`` and ``abc`` strings, ``[4, 8]`` a list), then checked against the type
declared for it (a notebook parameter's annotation or a ``PipelineConfig`` field's), so
``sweep -p`` and ``book -p`` accept and refuse the same values with the same message.
"""

from __future__ import annotations

import ast
import contextlib
import re
from typing import Any

import yaml

__all__ = ["coerce_value", "declared_type", "load_yaml", "parse_value"]


class _CoreLoader(yaml.SafeLoader):
    """YAML 1.2 core schema (PyYAML implements 1.1, where ``1e-3`` is a string,
    ``010`` is octal 8 and ``no``/``off`` are False)."""

    yaml_implicit_resolvers: dict = {}  # noqa: RUF012 - PyYAML's class-level registry


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _CoreLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)  # decimal even with leading zeros: 010 -> 10


_CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_CoreLoader.add_constructor(
    "tag:yaml.org,2002:bool", lambda loader, node: loader.construct_scalar(node).lower() == "true"
)


def load_yaml(text: str, where: str) -> Any:
    """``text`` read by the YAML 1.2 core schema; ``ValueError`` naming ``where`` if invalid."""
    try:
        return yaml.load(text, Loader=_CoreLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: {text!r} is not a valid value ({exc})") from exc


def declared_type(info: dict[str, Any]) -> str:
    """Type name of one :func:`papermill.inspect_notebook` parameter entry.

    The annotation (``n: int = 3``) wins; an unannotated parameter takes the type of its
    default value (``n = 3`` -> ``"int"``); ``"None"`` when neither says.
    """
    kind = info.get("inferred_type_name") or "None"
    if kind == "None":
        with contextlib.suppress(ValueError, SyntaxError, TypeError):
            default = ast.literal_eval(info.get("default") or "None")
            if default is not None:
                kind = type(default).__name__
    return kind


# how a refusal names each type (nouns joined by "or" for a union, the hint for one type)
_EXPECTED = {
    "bool": ("a boolean", "a boolean; write true or false"),
    "int": ("an integer", "an integer"),
    "float": ("a number", "a number"),
    "str": ("a string", "a string; quote it"),
    "list": ("a list", "a list (e.g. [4, 8])"),
    "dict": ("a mapping", "a mapping"),
}


def coerce_value(
    name: str,
    value: Any,
    type_name: str | None,
    text: str | None = None,
    declared_by: str = "the notebook",
) -> Any:
    """Check ``value`` against a declared type name; convert where safe (int -> float).

    ``type_name`` is a notebook annotation or a field annotation: ``int``, ``float``,
    ``bool``, ``str``, ``list``, ``dict``, ``Optional[X]`` or a union ``X | Y | None``;
    any other name (``"None"``: undeclared) passes the value as it is. ``text`` is the
    value as typed, kept for a ``str`` (``010`` stays ``"010"``). ``declared_by`` names
    who declares the type in the error message.
    """
    kind = (type_name or "None").strip()
    optional = re.fullmatch(r"Optional\[(.*)\]", kind)
    kinds = [part.strip() for part in (optional.group(1) if optional else kind).split("|")]
    if optional:
        kinds.append("None")
    if value is None and "None" in kinds:
        return None
    known = [k for k in kinds if k in _EXPECTED]
    if not known:
        return value
    number = not isinstance(value, bool)
    if "bool" in known and isinstance(value, bool):
        return value
    if "int" in known and number and isinstance(value, int):
        return value
    if "float" in known and number and isinstance(value, int | float):
        return float(value)
    if ("list" in known and isinstance(value, list)) or (
        "dict" in known and isinstance(value, dict)
    ):
        return value
    if "str" in known and (isinstance(value, str) or text is not None):
        return value if isinstance(value, str) else text
    shown = repr(text if text is not None else value)
    expected = (
        _EXPECTED[known[0]][1] if len(known) == 1 else " or ".join(_EXPECTED[k][0] for k in known)
    )
    raise ValueError(
        f"parameter {name}={shown} is not {expected} ({declared_by} declares "
        f"{name}: {type_name})"
    )


def parse_value(
    text: str, type_name: str | None = None, name: str = "value", declared_by: str = "the notebook"
) -> Any:
    """Parse a command-line value as a Python user expects.

    YAML 1.2 core schema (``8`` -> int, ``1e-3`` and ``0.5`` -> float, ``010`` -> 10,
    ``true``/``false`` -> bool, ``null`` -> None, ``no`` and ``abc`` -> str, ``[4, 8]`` ->
    list), then :func:`coerce_value` against ``type_name`` if given.
    """
    value = load_yaml(text, f"parameter {name!r}")
    return coerce_value(name, value, type_name, text, declared_by)
