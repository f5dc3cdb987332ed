"""One recipe value against its field: its type (with the YAML spellings users write), its range, and a hint for a
misspelt key. Used by loading and by `--set` overrides alike, so both give the same messages."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Annotated, Any, Literal, Union

from clpose.config.schema import Check, HxW, Lookup, Registered, parse_hw
from clpose.errors import ClposeError


class Problem(Exception):
    """A value that does not fit its field; turned into a ClposeError that names the file and key."""


def unknown_name(value: Any, names: list[str], kind: str) -> str:
    """The message for a name no registry entry has: every valid name, and the closest one."""
    hint = difflib.get_close_matches(str(value), names, n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"expected one of {', '.join(repr(n) for n in names)}, got {value!r} (unknown {kind} {value!r}{extra})"


def type_name(tp: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def convert_value(tp: Any, value: Any, lookup: Lookup | None = None) -> Any:
    """Check `value` against the annotation `tp`; return it in canonical form or raise Problem. A registry name
    (`Registered`) is checked against `lookup`'s names."""
    origin = typing.get_origin(tp)
    if origin is Annotated and isinstance(marker := typing.get_args(tp)[1], Registered):
        if lookup is None:
            raise ValueError(f"checking a {marker.registry} name needs a Lookup of the registries")
        names = marker.names(lookup)
        if isinstance(value, str) and value in names:
            return value
        raise Problem(unknown_name(value, names, lookup.kind(marker.registry)))
    if origin is Annotated and isinstance(typing.get_args(tp)[1], HxW):
        if value is None:
            raise Problem("expected HxW, e.g. 256x192, got null")
        if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v > 0 for v in value):
            return (value[0], value[1])
        try:
            return parse_hw(value)
        except ClposeError:
            raise Problem(f"expected HxW with positive integers, e.g. 256x192, got {value!r}") from None
    if origin is Annotated:  # a marker without a rule here is a schema mistake, not a user's
        raise ValueError(f"no rule for the annotation {tp!r}")
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return convert_value(args[0], value, lookup)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("off" if value is False else "on") in choices:
            return "off" if value is False else "on"  # YAML 1.1 reads off/on (and no/yes) as booleans
        if value in choices and not isinstance(value, bool):
            return value
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise Problem(f"expected {type_name(tp)}, got {value!r}{extra}")
    if origin is list:
        if not isinstance(value, list):
            raise Problem(f"expected {type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [convert_value(item, v, lookup) for v in value]
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and type(value) is int:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, str):
        return value
    raise Problem(f"expected {type_name(tp)}, got {value!r} ({type(value).__name__})")


def out_of_range(f: dataclasses.Field, value: Any, dotted: str) -> str | None:
    """The message tail (e.g. `data.num_workers must be >= 0, got -1`) where `value` breaks f's range, else None."""
    check: Check | None = f.metadata.get("check")
    if check is None or value is None:  # null means "not set" (the code's default), so there is no range
        return None
    for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
        if not check.ok(v):
            return f"{dotted}{'' if i is None else f'[{i}]'} must be {check.describe()}, got {v}"
    return None


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def suggest(key: str, valid: Any, prefix: str) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if match:
        return f" (did you mean {prefix}{match[0]}?)"
    return f" (valid keys: {', '.join(valid)})"
