"""docs/recipes.md: the reference of every recipe key, generated from the schema (a test keeps the file current)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal, Union

from clpose.config.schema import HW, RENAMED, Lookup, Recipe, Registered, format_hw
from clpose.config.values import field_types


def _doc_type(tp: Any, lookup: Lookup) -> str:
    """A type as the docs table writes it: string, integer or null, one of a / b, list of integers, HxW."""
    if tp is HW:
        return "HxW"
    origin = typing.get_origin(tp)
    if origin is Annotated and isinstance(marker := typing.get_args(tp)[1], Registered):
        return "one of " + " / ".join(marker.names(lookup))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _doc_type(a, lookup) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + " / ".join(str(c) for c in typing.get_args(tp))
    if origin is list:
        return f"list of {_doc_type(typing.get_args(tp)[0], lookup)}s"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(tp, str(tp))


def recipe_reference(lookup: Lookup) -> str:
    """Markdown reference of every recipe key (docs/recipes.md is this text; a test keeps it current): the schema's
    sections, and for the codec and loss sections the keys of each registered entry (read through `lookup`)."""
    lines = [
        "# Recipe keys",
        "",
        "Generated from `clpose/config/schema.py` and the registries' entries by `clpose.recipes.reference()`.",
        "A recipe is one flat YAML file; `--set KEY=VALUE` overrides a key with the same checks. Sizes are HxW.",
        "A range applies to a set value (null is not checked) and to every entry of a list. The `model`,",
        "`codec` and `loss` sections hold a `name` and the keys of that entry only (each entry's keys are",
        "listed under it; another entry's key is refused by name, or ignored when null). A recipe an older",
        "clpose wrote out in full (every entry's keys) still loads: the other entries' keys are dropped,",
        "with a note where one was set.",
        "",
    ]

    def walk(cls: type, prefix: str, title: str = "") -> None:
        hints = field_types(cls)
        rows = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp) or f.metadata.get("named") or (title and f.name == "name"):
                continue
            if f.metadata.get("required"):
                default = "required"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{f.default_factory()}`"
            else:
                default = f"`{format_hw(f.default) if tp is HW else f.default}`"
            kind = _doc_type(tp, lookup)
            check = f.metadata.get("check")
            allowed = check.rule if check else ""
            rows.append(f"| `{prefix}{f.name}` | {kind} | {allowed} | {default} | {f.metadata.get('help', '')} |")
        if rows or title:
            lines.extend(
                [
                    f"### {title}" if title else f"## {prefix.rstrip('.') or 'top level'}",
                    "",
                    "| key | type | range | default | meaning |",
                    "|---|---|---|---|---|",
                    *(rows or ["| | | | | no options of its own |"]),
                    "",
                ]
            )
        for f in dataclasses.fields(cls):
            if named := f.metadata.get("named"):
                kind = lookup.kind(named.registry)
                names = " / ".join(lookup.names(named.registry))
                default = f"default `{named.default}`" if named.default else "required"
                said = f"{f.metadata['help']}. `{prefix}{f.name}.name`: one of {names}; {default}."
                lines.extend([f"## {prefix}{f.name}", "", said, ""])
                groups: dict[type, list[str]] = {}  # entries sharing an options class share a table
                for entry in lookup.names(named.registry):
                    groups.setdefault(lookup.options(named.registry, entry), []).append(entry)
                for cls, entries in groups.items():
                    walk(cls, f"{prefix}{f.name}.", f"{kind} {', '.join(f'`{e}`' for e in entries)}")
            elif dataclasses.is_dataclass(hints[f.name]):
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
