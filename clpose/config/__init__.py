"""Recipes: the schema of a recipe (schema.py), loading and checking it (load.py, values.py), `--set` overrides
(overrides.py) and the reference of its keys (reference.py). The names below are what the rest of clpose uses."""

from __future__ import annotations

from clpose.config.load import dump_recipe, load_recipe, recipe_from_dict, recipe_to_dict
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
    CodecConfig,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    Recipe,
    Registered,
    TrainConfig,
    check_option,
    format_hw,
    parse_hw,
    registry_names,
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
    "CodecConfig",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "Recipe",
    "Registered",
    "TrainConfig",
    "apply_overrides",
    "check_option",
    "dump_recipe",
    "format_hw",
    "load_recipe",
    "parse_hw",
    "parse_override",
    "recipe_from_dict",
    "recipe_reference",
    "recipe_to_dict",
    "registry_names",
]
