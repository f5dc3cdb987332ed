"""docs/recipes.md: the reference of every recipe key, generated from the schema (a test keeps the file current)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal, Union

from clpose.config.schema import HW, RENAMED, Recipe, Registered, format_hw
from clpose.config.values import field_types


def _doc_type(tp: Any) -> str:
    """A type as the docs table writes it: string, integer or null, one of a / b, list of integers, HxW."""
    if tp is HW:
        return "HxW"
    origin = typing.get_origin(tp)
    if origin is Annotated and isinstance(marker := typing.get_args(tp)[1], Registered):
        return "one of " + " / ".join(marker.names())
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _doc_type(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + " / ".join(str(c) for c in typing.get_args(tp))
    if origin is list:
        return f"list of {_doc_type(typing.get_args(tp)[0])}s"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(tp, str(tp))


def recipe_reference() -> str:
    """Markdown reference of every recipe key (docs/recipes.md is this text; a test keeps it current)."""
    lines = [
        "# Recipe keys",
        "",
        "Generated from `clpose/config/schema.py` by `clpose.config.recipe_reference()`. A recipe",
        "is one flat YAML file; `--set KEY=VALUE` overrides a key with the same checks. Sizes are HxW.",
        "A range applies to a set value (null is not checked) and to every entry of a list.",
        "",
    ]

    def walk(cls: type, prefix: str) -> None:
        hints = field_types(cls)
        rows = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                continue
            if f.metadata.get("required"):
                default = "required"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{f.default_factory()}`"
            else:
                default = f"`{format_hw(f.default) if tp is HW else f.default}`"
            kind = _doc_type(tp)
            check = f.metadata.get("check")
            allowed = check.rule if check else ""
            rows.append(f"| `{prefix}{f.name}` | {kind} | {allowed} | {default} | {f.metadata.get('help', '')} |")
        if rows:
            lines.extend(
                [
                    f"## {prefix.rstrip('.') or 'top level'}",
                    "",
                    "| key | type | range | default | meaning |",
                    "|---|---|---|---|---|",
                    *rows,
                    "",
                ]
            )
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")

    walk(Recipe, "")
    lines.extend(
        [
            "## Renamed keys",
            "",
            "Old names still load (checkpoints embed their recipe), with a deprecation note; giving both is an error.",
            "",
            "| old key | new key |",
            "|---|---|",
            *(f"| `{old}` | `{new}` |" for old, new in RENAMED.items()),
            "",
        ]
    )
    return "\n".join(lines)
