"""Recipes: validation messages name the file, the dotted key and the closest valid key."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from clpose.config import RENAMED, Recipe, dump_recipe, parse_hw, parse_override, recipe_to_dict
from clpose.console import err_console
from clpose.errors import ClposeError
from clpose.recipes import load_recipe, recipe_from_dict
from clpose.recipes import reference as recipe_reference

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
    path = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
    assert path.read_text() == recipe_reference(), "regenerate: python -c 'from clpose.recipes import reference; ...'"


# --------------------------------------------------------------------------------------------------------
# ranges and renamed keys

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _with(dotted: str, value: Any) -> dict[str, Any]:
    """MINIMAL as a mapping with one dotted key set."""
    raw = yaml.safe_load(MINIMAL)
    *parents, key = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value
    return raw


OUT_OF_RANGE = [
    ("model.stride", 12, "model.stride must be one of 4, 8, 16, 32, got 12"),
    ("model.stacks", 0, "model.stacks must be >= 1, got 0"),
    ("codec.sigma", 0, "codec.sigma must be > 0, got 0.0"),
    ("codec.tau", 1, "codec.tau must be in (0, 1), got 1.0"),
    ("codec.tau", 0, "codec.tau must be in (0, 1), got 0.0"),
    ("codec.disk_radius", -1, "codec.disk_radius must be > 0, got -1.0"),
    ("loss.w_h", -0.5, "loss.w_h must be >= 0, got -0.5"),
    ("loss.w_o", -1, "loss.w_o must be >= 0, got -1.0"),
    ("data.input_size", "0x192", "data.input_size: expected HxW with positive integers, e.g. 256x192, got '0x192'"),
    ("data.box_padding", 0, "data.box_padding must be > 0, got 0.0"),
    ("data.num_workers", -1, "data.num_workers must be >= 0, got -1"),
    ("data.train_limit", 0, "data.train_limit must be >= 1, got 0"),
    ("data.val_limit", -3, "data.val_limit must be >= 1, got -3"),
    ("data.augment.flip_prob", 1.5, "data.augment.flip_prob must be in [0, 1], got 1.5"),
    ("data.augment.scale_factor", 1, "data.augment.scale_factor must be in [0, 1), got 1.0"),
    ("data.augment.rotation_factor", -30, "data.augment.rotation_factor must be >= 0, got -30.0"),
    ("data.augment.rotation_prob", -0.1, "data.augment.rotation_prob must be in [0, 1], got -0.1"),
    ("data.augment.shear_factor", -0.2, "data.augment.shear_factor must be >= 0, got -0.2"),
    ("data.augment.half_body_prob", 2, "data.augment.half_body_prob must be in [0, 1], got 2.0"),
    ("data.augment.half_body_min_keypoints", -1, "data.augment.half_body_min_keypoints must be >= 0, got -1"),
    ("data.augment.color_jitter", 1.5, "data.augment.color_jitter must be in [0, 1], got 1.5"),
    ("train.epochs", 0, "train.epochs must be >= 1, got 0"),
    ("train.batch_size", 0, "train.batch_size must be >= 1, got 0"),
    ("train.lr", 0, "train.lr must be > 0, got 0.0"),
    ("train.weight_decay", -1e-4, "train.weight_decay must be >= 0, got -0.0001"),
    ("train.momentum", 1, "train.momentum must be in [0, 1), got 1.0"),
    ("train.milestones", [90, -1], "train.milestones[1] must be >= 0, got -1"),
    ("train.milestones", [120, 90], "train.milestones must be increasing, got [120, 90]"),
    ("train.milestones", [90, 90], "train.milestones must be increasing, got [90, 90]"),
    ("train.gamma", 0, "train.gamma must be > 0, got 0.0"),
    ("train.warmup_epochs", -0.5, "train.warmup_epochs must be >= 0, got -0.5"),
    ("train.grad_clip", 0, "train.grad_clip must be > 0, got 0.0"),
    ("train.val_every", 0, "train.val_every must be >= 1, got 0"),
    ("train.max_minutes", -5, "train.max_minutes must be > 0, got -5.0"),
    ("eval.alpha", 0, "eval.alpha must be in (0, 1], got 0.0"),
    ("eval.batch_size", 0, "eval.batch_size must be >= 1, got 0"),
    ("eval.oks_nms_thr", 1.1, "eval.oks_nms_thr must be in [0, 1], got 1.1"),
    ("eval.kpt_score_thr", -0.2, "eval.kpt_score_thr must be in [0, 1], got -0.2"),
]


@pytest.mark.parametrize(("dotted", "value", "message"), OUT_OF_RANGE, ids=[f"{c[0]}={c[1]}" for c in OUT_OF_RANGE])
def test_out_of_range_names_file_and_key(tmp_path: Path, dotted: str, value: Any, message: str) -> None:
    raw = _with(dotted, value)
    if dotted == "model.stacks":  # an option of the hourglasses (a ResNet's recipe refuses it by name)
        raw["model"]["name"] = "clnet_hourglass"
    path = _write(tmp_path, yaml.safe_dump(raw), "x.yaml")
    with pytest.raises(ClposeError, match=f"^{re.escape(f'{path}: {message}')}$"):
        load_recipe(path)


def test_range_edges_and_null_load(tmp_path: Path) -> None:
    raw = _with("data.num_workers", 0)
    raw["data"]["augment"] = {"flip_prob": 1, "rotation_prob": 0, "scale_factor": 0, "color_jitter": 1}
    raw["model"] |= {"stride": 4, "stacks": None}
    raw["train"] |= {"momentum": 0, "milestones": [], "grad_clip": None}
    raw["eval"] = {"oks_nms_thr": 1, "kpt_score_thr": 0, "alpha": None}
    recipe = recipe_from_dict(raw, "edges")
    assert recipe.data.num_workers == 0 and recipe.data.augment.flip_prob == 1.0 and recipe.model.stride == 4


def test_negative_num_workers_is_a_recipe_error_not_a_torch_traceback(tmp_path: Path) -> None:
    # before the range checks this loaded and DataLoader raised a bare ValueError from inside torch
    path = _write(tmp_path, MINIMAL.replace("  input_size: 256x192\n", "  input_size: 256x192\n  num_workers: -1\n"))
    with pytest.raises(ClposeError, match=f"^{re.escape(f'{path}: data.num_workers must be >= 0, got -1')}$"):
        load_recipe(path)


def test_checkpoint_recipe_is_range_checked() -> None:
    with pytest.raises(ClposeError, match=r"^ckpt\.pt \(recipe\): train\.lr must be > 0, got -0\.1$"):
        recipe_from_dict(_with("train.lr", -0.1), "ckpt.pt (recipe)")


def test_override_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(
        ClposeError,
        match=r"^--set data\.augment\.flip_prob=1\.5: data\.augment\.flip_prob must be in \[0, 1\], got 1\.5$",
    ):
        load_recipe(path, ["data.augment.flip_prob=1.5"])
    with pytest.raises(ClposeError, match=r"^--set data\.num_workers=-1: data\.num_workers must be >= 0, got -1$"):
        load_recipe(path, ["data.num_workers=-1"])
    with pytest.raises(
        ClposeError, match=r"^--set train\.milestones=\[5,-2\]: train\.milestones\[1\] must be >= 0, got -2$"
    ):
        load_recipe(path, ["train.milestones=[5,-2]"])
    with pytest.raises(ClposeError, match=re.escape(f"{path}: train.milestones must be increasing, got [8, 5]")):
        load_recipe(path, ["train.milestones=[8,5]"])  # a cross-key rule: named with the file it ends up in
    assert load_recipe(path, ["model.stride=null", "train.grad_clip=1.0"]).train.grad_clip == 1.0


def test_renamed_key_loads_with_a_note(tmp_path: Path) -> None:
    assert RENAMED["data.image_size"] == "data.input_size"
    new = load_recipe(_write(tmp_path, MINIMAL))
    path = _write(tmp_path, MINIMAL.replace("input_size:", "image_size:"))
    with err_console.capture() as captured:
        old = load_recipe(path)
    assert old == new
    note = f"{path}: data.image_size is deprecated, renamed data.input_size; read as data.input_size"
    assert captured.get().strip() == f"warning: {note}"


def test_renamed_key_in_a_checkpoint_and_in_overrides(tmp_path: Path) -> None:
    raw = yaml.safe_load(MINIMAL.replace("input_size:", "image_size:"))
    kept = copy.deepcopy(raw)
    with err_console.capture() as captured:
        recipe = recipe_from_dict(raw, "ckpt.pt (recipe)")
    assert recipe.data.input_size == (256, 192) and raw == kept  # the checkpoint's own mapping is left alone
    assert "ckpt.pt (recipe): data.image_size is deprecated, renamed data.input_size" in captured.get()
    with err_console.capture() as captured:
        recipe = load_recipe(_write(tmp_path, MINIMAL), ["data.image_size=384x288"])
    assert recipe.data.input_size == (384, 288)
    assert "--set data.image_size=384x288: data.image_size is deprecated, renamed data.input_size" in captured.get()
    # an old file overridden with the new name: the override wins, no conflict
    with err_console.capture():
        recipe = load_recipe(_write(tmp_path, MINIMAL.replace("input_size:", "image_size:")), ["data.input_size=64x48"])
    assert recipe.data.input_size == (64, 48)


def test_old_and_new_key_together_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path, MINIMAL.replace("  input_size: 256x192\n", "  input_size: 256x192\n  image_size: 384x288\n")
    )
    message = (
        f"{path}: data.image_size and data.input_size are both given; "
        "data.image_size is the old name of data.input_size, keep one"
    )
    with pytest.raises(ClposeError, match=f"^{re.escape(message)}$"):
        load_recipe(path)


def test_renamed_keys_are_documented() -> None:
    assert "## Renamed keys" in recipe_reference() and "| `data.image_size` | `data.input_size` |" in recipe_reference()


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_shipped_recipe_loads(path: Path) -> None:
    assert isinstance(load_recipe(path), Recipe)
