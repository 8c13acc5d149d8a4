"""Declared options: what a table of assignment.toml may contain, stated once as data next to the code that uses it
(each check kind in harness/checks.py, [limits] from harness.limits.Limits, the other tables in harness/schema.py).

`table_problems` checks one table against its declaration and returns every problem as a line that names the table
and the key: unknown keys (with the nearest valid name), missing required ones, wrong types, values out of range.
"""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Option:
    """One key of a table. `accepts`: a type (float also takes TOML integers), a generic like list[int] or
    dict[str, float], a literal string value ("reference"), or a tuple of these."""

    name: str
    accepts: object
    required: bool = False
    default: object = None
    doc: str = ""
    minimum: float | None = None  # numbers: inclusive bounds
    maximum: float | None = None
    positive: bool = False  # numbers: > 0


def accepts(kind, value) -> bool:
    if isinstance(kind, tuple):
        return any(accepts(k, value) for k in kind)
    if isinstance(kind, str):
        return value == kind
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return isinstance(value, list) and all(accepts(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(accepts(args[1], v) for v in value.values())
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a list",
         dict: "a table"}


def describe(kind) -> str:
    """'a number', 'a list of whole numbers', '"reference"', ... as a person would say it."""
    if isinstance(kind, tuple):
        return " or ".join(describe(k) for k in kind)
    if isinstance(kind, str):
        return f'"{kind}"'
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a table of {describe(args[1]).removeprefix('a ').removeprefix('an ')}s"
    return NAMES.get(kind, kind.__name__)


def shown(value) -> str:
    """A value as written in TOML, with what it is: '"0.9" (a string)'."""
    import json

    kind = next((name for t, name in NAMES.items() if type(value) is t), type(value).__name__)
    return f"{json.dumps(value, default=str)} ({kind})"


def suggestion(name: str, known, shape: str = "{}") -> str:
    """' (did you mean memory_gb?)', or the known names when none is close. `shape` writes a name: '[{}]'."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {shape.format(close[0])}?)"
    return f" (known: {', '.join(shape.format(k) for k in sorted(known)) or 'none'})"


def value_problem(option: Option, value) -> str | None:
    if not accepts(option.accepts, value):
        return f"expected {describe(option.accepts)}, got {shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if option.positive and value <= 0:
        return f"must be above 0, got {value}"
    if option.minimum is not None and value < option.minimum:
        return f"must be at least {option.minimum:g}, got {value}"
    if option.maximum is not None and value > option.maximum:
        return f"must be at most {option.maximum:g}, got {value}"
    return None


def table_problems(table: dict, options: dict[str, Option], where: str, what: str = "key",
                   needed_by: str = "") -> list[str]:
    """Problems of `table` against `options`; each line starts with `where` ('[limits]', "[[checks]] 'acc'")."""
    problems = []
    for key, value in table.items():
        if key not in options:
            problems.append(f"{where} {key}: unknown {what}{suggestion(key, options)}")
        elif (problem := value_problem(options[key], value)) is not None:
            problems.append(f"{where} {key}: {problem}")
    for option in options.values():
        if option.required and option.name not in table:
            doc = f": {option.doc}" if option.doc else ""
            problems.append(f"{where} {option.name}: missing, {needed_by or 'required'}{doc}")
    return problems


def dataclass_options(cls, **overrides) -> dict[str, Option]:
    """Options of a dataclass of settings (e.g. Limits): each field a key, typed by its annotation (`float | None`
    accepts a number: TOML has no null), its default the field's; `overrides` add bounds by name or for all ('*')."""
    hints = typing.get_type_hints(cls)
    options = {}
    for f in fields(cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = tuple(k for k in typing.get_args(kind) if k is not type(None))
            kind = kind[0] if len(kind) == 1 else kind
        extra = {**overrides.get("*", {}), **overrides.get(f.name, {})}
        options[f.name] = Option(f.name, kind, default=f.default, **extra)
    return options
