"""Loading a recipe against the registries: clpose.config's schema and checks, with the names and options of the
registered codecs, losses and metrics (`REGISTRIES`), the rules between sections that the entries state (which loss
fits which codec, a codec's or loss's own rule), and recipes written before each codec and loss owned its keys.

This module sits above the registries and below everything that loads a recipe (engine, training, the commands): the
config package imports no registry, and no registry imports this.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from clpose.codecs import CODECS, get_codec
from clpose.config import Options, Recipe, apply_overrides, build_recipe, read_recipe_file, recipe_reference
from clpose.console import warn
from clpose.errors import ClposeError
from clpose.losses import LOSSES, get_loss
from clpose.models import MODELS


class Registries:
    """The `Lookup` recipe checking reads: codecs and losses (their names and options classes) and metrics (names)."""

    KINDS: ClassVar[dict[str, str]] = {"codecs": "codec", "losses": "loss", "metrics": "metric", "models": "model"}

    def registry(self, registry: str) -> dict[str, Any]:
        if registry == "metrics":
            from clpose.evaluation.metrics import METRICS  # imported when a metric name is checked: it loads NumPy

            return METRICS
        return {"codecs": CODECS, "losses": LOSSES, "models": MODELS}[registry]

    def names(self, registry: str) -> list[str]:
        return list(self.registry(registry))

    def options(self, registry: str, name: str) -> type[Options]:
        return self.registry(registry)[name].options

    def kind(self, registry: str) -> str:
        return self.KINDS[registry]


REGISTRIES = Registries()

# The flat model, codec and loss sections of recipes written before each entry owned its keys (every checkpoint embeds
# its recipe, written out in full): the old keys and their old defaults. Such a section holds all of them.
OLD_SECTIONS: dict[str, dict[str, Any]] = {
    "codec": {
        "sigma": None,
        "tau": 0.6,
        "target": "gaussian",
        "disk_radius": None,
        "dark": False,
        "decode": "weighted",
        "sigma_rule": "fixed",
    },
    "loss": {"w_h": 0.5, "w_o": 2.0, "region": "pred"},
    "model": {"pretrained": None, "stride": None, "stacks": None},
}


def upgrade_old_sections(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of `raw` where a model, codec or loss section written in full by an older clpose (all of OLD_SECTIONS'
    keys) keeps only its entry's own keys: the others were ignored then, and a null sigma, stride or stacks meant the
    entry's default. A dropped key that was set to something other than its old default is noted (it never had an
    effect)."""
    raw = copy.deepcopy(raw)
    named = {f.name: f.metadata["named"] for f in dataclasses.fields(Recipe) if "named" in f.metadata}
    for section, old in OLD_SECTIONS.items():
        data = raw.get(section)
        if not isinstance(data, dict) or not set(old) <= set(data):
            continue
        registry = REGISTRIES.registry(named[section].registry)
        entry = registry.get(data.get("name", named[section].default))
        if entry is None:
            continue  # the unknown name is refused when the recipe is built
        own = {f.name for f in dataclasses.fields(entry.options)}
        for key in [k for k in data if k not in own or (data[k] is None and k in ("sigma", "stride", "stacks"))]:
            value = data.pop(key)
            if key in old and value != old[key]:
                warn(f"{where}: {section}.{key} {value!r} is not an option of the {data.get('name')} {section}; "
                     "it had no effect and is dropped")  # fmt: skip
    return raw


def check_pairing(recipe: Recipe, where: str) -> None:
    """The rules between sections: the loss must train the codec's targets, and the codec's and the loss's own rules
    (their registry entries say which) must hold."""
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


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe", name: str = "") -> Recipe:
    """The checked Recipe of a raw mapping (a checkpoint's embedded recipe, a demo's)."""
    if isinstance(raw, dict):
        raw = upgrade_old_sections(raw, where)
    recipe = build_recipe(raw, where, REGISTRIES, name)
    check_pairing(recipe, where)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load and validate a recipe file, applying `--set` style overrides.

    Raises:
        ClposeError: a missing file, bad YAML, an unknown key, a wrong type or a missing required value.
    """
    path = Path(path)
    raw = upgrade_old_sections(read_recipe_file(path), str(path))
    apply_overrides(raw, overrides or [], REGISTRIES)
    return recipe_from_dict(raw, str(path), name=path.stem)


def reference() -> str:
    """docs/recipes.md: every recipe key, with each registered codec's and loss's own keys."""
    return recipe_reference(REGISTRIES)
