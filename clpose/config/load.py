"""Building a recipe: a raw mapping (YAML) -> the validated dataclass tree of clpose.config.schema, with messages
that name the file and the dotted key (a typo gets the closest valid key); renamed keys (RENAMED) still load, with a
deprecation note, since every checkpoint embeds its recipe; a codec's or loss's section is checked against the options
of the entry it names (read through a `Lookup`: this package imports no registry); and the way back to plain data and
YAML. clpose.recipes puts these together with the registries."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import yaml

from clpose.config.schema import HW, RENAMED, Lookup, Named, Options, Recipe, format_hw
from clpose.config.values import Problem, convert_value, field_types, out_of_range, suggest, unknown_name
from clpose.console import warn
from clpose.errors import ClposeError


def _build(cls: type, data: Any, where: str, prefix: str, lookup: Lookup, name: str | None = None) -> Any:
    """Build dataclass `cls` from a mapping; `where` names the source (file) in error messages. `name` is the entry
    name of an `Options` section (the loader has checked it)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        label = prefix.rstrip(".") or "the recipe"
        raise ClposeError(f"{where}: {label} must be a mapping of keys, got {type(data).__name__}")
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ClposeError(f"{where}: unknown key {prefix}{key}{suggest(str(key), fields, prefix)}")
    kwargs: dict[str, Any] = {} if name is None else {"name": name}
    for field_name, f in fields.items():
        dotted = f"{prefix}{field_name}"
        if named := f.metadata.get("named"):
            kwargs[field_name] = _build_named(named, data.get(field_name), where, f"{dotted}.", lookup)
            continue
        if field_name not in data or (name is not None and field_name == "name"):
            if f.metadata.get("required"):
                raise ClposeError(f"{where}: missing required key {dotted} ({f.metadata.get('help', '')})")
            continue
        tp = hints[field_name]
        if dataclasses.is_dataclass(tp):
            kwargs[field_name] = _build(tp, data[field_name], where, f"{dotted}.", lookup)
            continue
        try:
            kwargs[field_name] = convert_value(tp, data[field_name], lookup)
        except Problem as e:
            raise ClposeError(f"{where}: {dotted}: {e}") from None
        if problem := out_of_range(f, kwargs[field_name], dotted):
            raise ClposeError(f"{where}: {problem}")
    return cls(**kwargs)


def option_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def named_options(named: Named, section: Any, where: str, prefix: str, lookup: Lookup) -> tuple[str, type[Options]]:
    """The entry a `Named` section picks (its `name`, else the default) and that entry's options class. An unknown
    name is refused with the registry's names; a key of another entry with that entry's name (null: not set)."""
    name = section.get("name", named.default) if isinstance(section, dict) else named.default
    kind = lookup.kind(named.registry)
    if name is None:
        raise ClposeError(f"{where}: missing required key {prefix}name (a name in {_plural(kind)})")
    names = lookup.names(named.registry)
    if not isinstance(name, str) or name not in names:
        raise ClposeError(f"{where}: {prefix}name: {unknown_name(name, names, kind)}")
    cls = lookup.options(named.registry, name)
    own = option_fields(cls)
    for key in section if isinstance(section, dict) else ():
        owners = _owners(key, named, lookup) if key not in own else []
        if owners and section[key] is not None:
            keys = ", ".join(sorted(own - {"name"})) or "none"
            raise ClposeError(
                f"{where}: {prefix}{key} is an option of the {_listed(owners)} "
                f"{kind if len(owners) == 1 else _plural(kind)}, not of {kind} {name!r} (its keys: {keys})"
            )
    return name, cls


def _owners(key: str, named: Named, lookup: Lookup) -> list[str]:
    """The entries of `named`'s registry that have the option `key`."""
    return [n for n in lookup.names(named.registry) if key in option_fields(lookup.options(named.registry, n))]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _plural(kind: str) -> str:
    return f"{kind}es" if kind.endswith("s") else f"{kind}s"


def _build_named(named: Named, section: Any, where: str, prefix: str, lookup: Lookup) -> Options:
    name, cls = named_options(named, section, where, prefix, lookup)
    if isinstance(section, dict):  # another entry's key left null is not set (a misspelt key is still refused)
        own = option_fields(cls)
        section = {k: v for k, v in section.items() if k in own or v is not None or not _owners(k, named, lookup)}
    return _build(cls, section, where, prefix, lookup, name=name)


def _section(raw: dict[str, Any], path: list[str], create: bool = False) -> dict[str, Any] | None:
    """The mapping at `path` in a raw recipe (made where `create`), or None where it is absent or malformed."""
    node: Any = raw
    for part in path:
        if create and part not in node:
            node[part] = {}
        node = node.get(part)
        if not isinstance(node, dict):
            return None  # _build names a malformed section
    return node


def rename_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of `raw` with each old key of RENAMED moved to its new name, noting the rename once per key."""
    raw = copy.deepcopy(raw)  # the caller's mapping (a checkpoint's embedded recipe) stays as it was
    for old, new in RENAMED.items():
        *old_path, old_key = old.split(".")
        *new_path, new_key = new.split(".")
        source = _section(raw, old_path)
        if source is None or old_key not in source:
            continue
        target = _section(raw, new_path, create=True)
        if target is None:
            continue
        if new_key in target:
            raise ClposeError(f"{where}: {old} and {new} are both given; {old} is the old name of {new}, keep one")
        target[new_key] = source.pop(old_key)
        warn(f"{where}: {old} is deprecated, renamed {new}; read as {new}")
    return raw


def build_recipe(raw: Any, where: str, lookup: Lookup, name: str = "") -> Recipe:
    """The checked Recipe of a raw mapping (old key names moved to their new ones). The rules between sections that
    read the registries (which loss fits which codec) are the caller's: clpose.recipes."""
    if isinstance(raw, dict):  # anything else is named by _build
        raw = rename_keys(raw, where)
    recipe = _build(Recipe, raw, where, "", lookup)
    if not recipe.name:
        recipe.name = name
    milestones = recipe.train.milestones
    if any(a >= b for a, b in itertools.pairwise(milestones)):
        raise ClposeError(f"{where}: train.milestones must be increasing, got {milestones}")
    return recipe


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """A recipe file's raw mapping (YAML), with old key names moved to their new ones.

    Raises:
        ClposeError: a missing file, bad YAML, an empty file or one that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ClposeError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ClposeError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raise ClposeError(f"{path}: the recipe is empty")
    if not isinstance(raw, dict):
        raise ClposeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    return rename_keys(raw, str(path))  # before any overrides, so `--set data.input_size=...` meets no old key


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data (sizes as "HxW" strings) that `recipe_from_dict` reads back to an equal recipe."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            hints = field_types(type(obj))
            out = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                out[f.name] = format_hw(value) if hints[f.name] is HW else convert(value)
            return out
        if isinstance(obj, list):
            return [convert(v) for v in obj]
        return obj

    data = convert(recipe)
    data = {"name": data.pop("name"), **data}
    return data


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (every default written out)."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=None)
