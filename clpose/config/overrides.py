"""`--set KEY=VALUE` overrides of a raw recipe mapping, with the same checks (and messages) as the file's own keys."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import yaml

from clpose.config.load import named_options
from clpose.config.schema import RENAMED, Lookup, Recipe, Registered
from clpose.config.values import Problem, convert_value, field_types, out_of_range, suggest
from clpose.console import warn
from clpose.errors import ClposeError


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split "train.lr=0.002" into (["train", "lr"], 0.002); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ClposeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=0.002")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _field_type(path: list[str], text: str, raw: dict[str, Any], lookup: Lookup) -> tuple[Any, dataclasses.Field]:
    """The annotation and field of the dotted key `path`; a typo is named with its closest valid key. In a codec's or
    loss's section the keys are those of the entry the raw recipe names there (after the earlier overrides)."""
    tp: Any = Recipe
    node: Any = raw
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth]) + ("." if depth else "")
        if not dataclasses.is_dataclass(tp):
            raise ClposeError(f"--set {text}: {prefix.rstrip('.')} is a value, not a section")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if part not in fields:
            raise ClposeError(f"--set {text}: unknown key {prefix}{part}{suggest(part, fields, prefix)}")
        tp, f = field_types(tp)[part], fields[part]
        node = node.get(part) if isinstance(node, dict) else None
        if named := f.metadata.get("named"):
            if depth + 1 < len(path) and path[depth + 1] == "name":
                return Annotated[str, Registered(named.registry)], f
            section = dict(node) if isinstance(node, dict) else {}
            if depth + 1 < len(path):
                section[path[depth + 1]] = ...  # the key being set (any value): refused by name if another entry's
            _, tp = named_options(named, section, f"--set {text}", f"{prefix}{part}.", lookup)
    if dataclasses.is_dataclass(tp):
        raise ClposeError(f"--set {text}: {'.'.join(path)} is a section; set one of its keys")
    return tp, f


def apply_overrides(raw: dict[str, Any], overrides: list[str], lookup: Lookup) -> dict[str, Any]:
    """Apply "a.b=c" overrides to a raw recipe mapping (in place), checking each key and value."""
    for text in overrides:
        path, value = parse_override(text)
        dotted = ".".join(path)
        if dotted in RENAMED:
            warn(f"--set {text}: {dotted} is deprecated, renamed {RENAMED[dotted]}; read as {RENAMED[dotted]}")
            dotted = RENAMED[dotted]
            path = dotted.split(".")
        tp, f = _field_type(path, text, raw, lookup)
        try:
            converted = convert_value(tp, value, lookup)
        except Problem as e:
            raise ClposeError(f"--set {text}: {e}") from None
        if problem := out_of_range(f, converted, dotted):
            raise ClposeError(f"--set {text}: {problem}")
        node = raw
        for part in path[:-1]:
            if node.get(part) is None:  # absent, or an empty section (`eval:` alone reads as null)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):  # the file's own section is malformed; _build names it
                break
        else:
            node[path[-1]] = value
    return raw
