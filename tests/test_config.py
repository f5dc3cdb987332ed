"""Recipes: validation messages name the file, the dotted key and the closest valid key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clpose.config import (
    Recipe,
    dump_recipe,
    load_recipe,
    parse_hw,
    parse_override,
    recipe_from_dict,
    recipe_to_dict,
)
from clpose.errors import ClposeError

MINIMAL = """
model:
  name: clnet_resnet50
data:
  dataset: mpii
  root: data/mpii
  input_size: 256x192
train:
  lr: 1e-3
  milestones: [90, 120]
"""


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_minimal_recipe_fills_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, MINIMAL, "mpii_x.yaml"))
    assert isinstance(recipe, Recipe)
    assert recipe.name == "mpii_x"
    assert recipe.data.input_size == (256, 192)
    assert recipe.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads "1e-3" as a string; accepted as a number
    assert recipe.codec.tau == 0.6 and recipe.loss.w_h == 0.5 and recipe.loss.w_o == 2.0
    assert recipe.data.augment.flip_prob == 0.5


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "  lrr: 0.1\n")
    with pytest.raises(ClposeError) as e:
        load_recipe(path)
    assert str(path) in str(e.value) and "train.lrr" in str(e.value) and "did you mean train.lr?" in str(e.value)


def test_unknown_nested_and_section_keys(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match=r"data\.augment\.flip_prb \(did you mean data\.augment\.flip_prob\?\)"):
        load_recipe(_write(tmp_path, MINIMAL.replace("data:\n", "data:\n  augment:\n    flip_prb: 0.1\n")))
    with pytest.raises(ClposeError, match=r"unknown key trian \(did you mean train\?\)"):
        load_recipe(_write(tmp_path, MINIMAL + "trian: {}\n"))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match=r"train\.epochs: expected an integer, got 'many'"):
        load_recipe(_write(tmp_path, MINIMAL + "  epochs: many\n"))
    with pytest.raises(ClposeError, match=r"train\.optimizer: expected one of .* \(did you mean 'adam'\?\)"):
        load_recipe(_write(tmp_path, MINIMAL + "  optimizer: adan\n"))
    with pytest.raises(ClposeError, match=r"data\.input_size: expected HxW"):
        load_recipe(_write(tmp_path, MINIMAL.replace("256x192", "256*192")))
    with pytest.raises(ClposeError, match=r"train\.milestones: expected a list of an integer"):
        load_recipe(_write(tmp_path, MINIMAL.replace("[90, 120]", "90")))
    with pytest.raises(ClposeError, match=r"train\.channels_last: expected true/false"):
        load_recipe(_write(tmp_path, MINIMAL + "  channels_last: 1\n"))


def test_missing_required_value(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match=r"missing required key data\.root"):
        load_recipe(_write(tmp_path, MINIMAL.replace("  root: data/mpii\n", "")))
    with pytest.raises(ClposeError, match=r"missing required key model"):
        load_recipe(_write(tmp_path, "data: {dataset: mpii, root: x}\n"))


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ClposeError, match=r"r\.yaml: line 3 is not valid YAML \(expected"):
        load_recipe(_write(tmp_path, "model:\n  name: [x\n"))
    with pytest.raises(ClposeError, match="empty"):
        load_recipe(_write(tmp_path, ""))
    with pytest.raises(ClposeError, match="train must be a mapping"):
        load_recipe(_write(tmp_path, MINIMAL.replace("train:\n  lr: 1e-3\n  milestones: [90, 120]\n", "train: 3\n")))


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    recipe = load_recipe(
        path,
        [
            "train.lr=0.002",
            "data.input_size=384x288",
            "model.pretrained=null",
            "train.milestones=[5,8]",
            "data.augment.flip_prob=0",
        ],
    )
    assert recipe.train.lr == 0.002 and recipe.data.input_size == (384, 288)
    assert recipe.train.milestones == [5, 8] and recipe.data.augment.flip_prob == 0.0
    with pytest.raises(ClposeError, match=r"--set train\.lrr=1: unknown key train\.lrr \(did you mean train\.lr\?\)"):
        load_recipe(path, ["train.lrr=1"])
    with pytest.raises(ClposeError, match=r"--set train\.epochs=abc: expected an integer"):
        load_recipe(path, ["train.epochs=abc"])
    with pytest.raises(ClposeError, match="KEY=VALUE"):
        load_recipe(path, ["train.lr"])
    with pytest.raises(ClposeError, match="is a section"):
        load_recipe(path, ["train=3"])
    with pytest.raises(ClposeError, match="is a value, not a section"):
        load_recipe(path, ["train.lr.x=3"])


def test_yaml_booleans_read_as_off(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, MINIMAL + "  amp: off\n"), ["train.amp=bf16"])
    assert recipe.train.amp == "bf16"
    assert load_recipe(_write(tmp_path, MINIMAL + "  amp: off\n")).train.amp == "off"
    assert load_recipe(_write(tmp_path, MINIMAL), ["train.amp=off"]).train.amp == "off"


def test_parse_override_reads_values_as_yaml() -> None:
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=x=y") == (["a"], "x=y")


def test_cross_field_consistency() -> None:
    raw = {
        "model": {"name": "simplebaseline_resnet50"},
        "data": {"dataset": "coco", "root": "x"},
        "codec": {"name": "heatmap"},
    }
    with pytest.raises(ClposeError, match="heatmap_mse"):
        recipe_from_dict(raw)
    raw["loss"] = {"name": "heatmap_mse"}
    assert recipe_from_dict(raw).codec.name == "heatmap"
    with pytest.raises(ClposeError, match=r"grmi and codec\.target disk"):
        recipe_from_dict({**raw, "codec": {"name": "composite"}, "loss": {"name": "grmi"}})


def test_dump_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, MINIMAL, "x.yaml"), ["train.epochs=7"])
    text = dump_recipe(recipe)
    assert "input_size: 256x192" in text
    again = load_recipe(_write(tmp_path, text, "y.yaml"))
    assert again == recipe  # the name written in the dump wins over the file name
    assert recipe_to_dict(again) == recipe_to_dict(recipe)


def test_parse_hw() -> None:
    assert parse_hw("256x192") == (256, 192)
    assert parse_hw("384X288") == (384, 288)
    for bad in ("256", "0x10", "axb", "1x2x3"):
        with pytest.raises(ClposeError, match="HxW"):
            parse_hw(bad)


def test_docs_recipes_md_is_current() -> None:
    from clpose.config import recipe_reference

    path = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
    assert path.read_text() == recipe_reference(), (
        "regenerate: python -c 'from clpose.config import recipe_reference; ...'"
    )
