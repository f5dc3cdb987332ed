"""Recipes: the schema of a recipe (schema.py), building and checking it (load.py, values.py), `--set` overrides
(overrides.py) and the reference of its keys (reference.py). This package imports no registry: what it reads from
them comes through a `Lookup`, and clpose.recipes (above the registries) loads recipes with the real one."""

from __future__ import annotations

from clpose.config.load import build_recipe, dump_recipe, read_recipe_file, recipe_to_dict, rename_keys
from clpose.config.overrides import apply_overrides, parse_override
from clpose.config.reference import recipe_reference
from clpose.config.schema import (
    ALPHA_RANGE,
    AMP_CHOICES,
    AMP_HELP,
    HW,
    RENAMED,
    AmpName,
    AugmentConfig,
    Check,
    DataConfig,
    EvalConfig,
    Lookup,
    Named,
    Options,
    Recipe,
    Registered,
    TrainConfig,
    check_option,
    format_hw,
    option,
    parse_hw,
)

__all__ = [
    "ALPHA_RANGE",
    "AMP_CHOICES",
    "AMP_HELP",
    "HW",
    "RENAMED",
    "AmpName",
    "AugmentConfig",
    "Check",
    "DataConfig",
    "EvalConfig",
    "Lookup",
    "Named",
    "Options",
    "Recipe",
    "Registered",
    "TrainConfig",
    "apply_overrides",
    "build_recipe",
    "check_option",
    "dump_recipe",
    "format_hw",
    "option",
    "parse_hw",
    "parse_override",
    "read_recipe_file",
    "recipe_reference",
    "recipe_to_dict",
    "rename_keys",
]
