"""Loading a recipe: YAML (yaml.safe_load) -> the validated dataclass tree of clpose.config.schema, with messages
that name the file and the dotted key (a typo gets the closest valid key); renamed keys (RENAMED) still load, with a
deprecation note, since every checkpoint embeds its recipe; cross-field rules read the registries (which losses fit
which codec); and the way back to plain data and YAML."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import yaml

from clpose.config.overrides import apply_overrides
from clpose.config.schema import HW, RENAMED, Recipe, format_hw
from clpose.config.values import Problem, convert_value, field_types, out_of_range, suggest
from clpose.console import warn
from clpose.errors import ClposeError


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping; `where` names the source (file) in error messages."""
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
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}{name}"
        if name not in data:
            if f.metadata.get("required"):
                raise ClposeError(f"{where}: missing required key {dotted} ({f.metadata.get('help', '')})")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], where, f"{dotted}.")
            continue
        try:
            kwargs[name] = convert_value(tp, data[name])
        except Problem as e:
            raise ClposeError(f"{where}: {dotted}: {e}") from None
        if problem := out_of_range(f, kwargs[name], dotted):
            raise ClposeError(f"{where}: {problem}")
    return cls(**kwargs)


def _check_consistency(recipe: Recipe, where: str) -> None:
    """Cross-field rules that a single field's type cannot express: the loss must train the codec's targets, and the
    codec's and the loss's own rules (their registry entries say which) must hold."""
    from clpose.codecs import get_codec
    from clpose.losses import LOSSES, get_loss

    codec, loss = get_codec(recipe.codec.name), get_loss(recipe.loss.name)
    if recipe.codec.name not in loss.codecs:
        fits = [name for name, entry in LOSSES.items() if recipe.codec.name in entry.codecs]
        raise ClposeError(
            f"{where}: loss.name {recipe.loss.name!r} does not fit codec.name {recipe.codec.name!r} (the "
            f"{recipe.codec.name} codec trains with {', '.join(fits) or 'no registered loss'})"
        )
    for rule in (codec.check, loss.check):
        if rule is not None and (problem := rule(recipe)):
            raise ClposeError(f"{where}: {problem}")
    milestones = recipe.train.milestones
    if any(a >= b for a, b in itertools.pairwise(milestones)):
        raise ClposeError(f"{where}: train.milestones must be increasing, got {milestones}")


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


def _rename_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
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


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe", name: str = "") -> Recipe:
    if isinstance(raw, dict):  # anything else is named by _build
        raw = _rename_keys(raw, where)
    recipe = _build(Recipe, raw, where, "")
    if not recipe.name:
        recipe.name = name
    _check_consistency(recipe, where)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load and validate a recipe file, applying `--set` style overrides.

    Raises:
        ClposeError: a missing file, bad YAML, an unknown key, a wrong type or a missing required value.
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
    raw = _rename_keys(raw, str(path))  # before the overrides, so `--set data.input_size=...` meets no old key
    apply_overrides(raw, overrides or [])
    return recipe_from_dict(raw, str(path), name=path.stem)


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
