"""Recipes: a dataclass tree loaded from YAML, validated with messages that name the file and the key.

A recipe has the sections model, codec, loss, data (with data.augment), train and eval. Unknown keys,
wrong types, values out of their declared range and missing required values are ClposeErrors naming the
file, the dotted key and, for a typo, the closest valid key. `--set train.lr=0.002` overrides go through the
same checks. Renamed keys (RENAMED) still load, with a deprecation note, since every checkpoint embeds its
recipe. Input sizes are written HxW ("256x192" = height 256, width 192) as in the paper.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from clpose.console import warn
from clpose.errors import ClposeError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")  # train.amp and the commands' --amp (clpose/precision.py)
AMP_HELP = (
    "Precision: auto (bf16 where the GPU or CPU runs it natively, fp16 on GPUs older than compute capability 8.0, "
    "else fp32), off (fp32), or bf16 / fp16 autocast."
)
ALPHA_RANGE = "(0, 1]"  # a PCK threshold is a fraction of the normaliser: eval.alpha and `clpose eval --alpha`
HW = Annotated[tuple[int, int], "HxW"]  # (height, width), written "HxW" in YAML and on the command line
_REQUIRED = dataclasses.MISSING

# Old dotted key -> new dotted key. Every checkpoint embeds its recipe, so a renamed key must keep loading:
# the old name is moved to the new one before the recipe is built, with a deprecation note. No key has been
# renamed in this repository's history yet; data.image_size is a compatibility alias (the usual spelling
# elsewhere) and the example to follow when a key is renamed.
RENAMED: dict[str, str] = {
    "data.image_size": "data.input_size",
}


@dataclass(frozen=True)
class Check:
    """A numeric range declared next to its field: "[0, 1]", "(0, 1)", "[0, 1)", ">= 0", "> 0" or "{4, 8}".

    The rule text is what the error message and docs/recipes.md show. null ("if set") is never checked; in a
    list every entry is.
    """

    rule: str

    def __post_init__(self) -> None:
        self.ok(0.0)  # a malformed rule fails when clpose.config is imported, not on the first recipe

    def ok(self, value: float) -> bool:
        """Whether `value` keeps the rule; NaN and infinities never do (no numeric option of clpose means them)."""
        rule = self.rule
        if not math.isfinite(value):
            return False
        if rule.startswith(">="):
            return value >= float(rule[2:])
        if rule.startswith(">"):
            return value > float(rule[1:])
        if rule[0] == "{" and rule[-1] == "}":
            return value in {float(v) for v in rule[1:-1].split(",")}
        if rule[0] not in "[(" or rule[-1] not in "])":
            raise ValueError(f"bad range rule {rule!r}")
        lo, hi = (float(v) for v in rule[1:-1].split(","))
        return (lo <= value if rule[0] == "[" else lo < value) and (value <= hi if rule[-1] == "]" else value < hi)

    def describe(self) -> str:
        """The rule as the message's "must be ..." phrase: "in [0, 1]", ">= 1", "one of 4, 8, 16, 32"."""
        if self.rule[0] == "{":
            return "one of " + ", ".join(v.strip() for v in self.rule[1:-1].split(","))
        return self.rule if self.rule[0] == ">" else f"in {self.rule}"


def check_option(name: str, value: float, rule: str) -> None:
    """A command-line option checked with a recipe field's range rule (`Check`): a ClposeError such as
    "--alpha must be in (0, 1], got -1" unless `value` keeps it (NaN never does)."""
    check = Check(rule)
    if not check.ok(value):
        raise ClposeError(f"{name} must be {check.describe()}, got {value:g}")


def _opt(default: Any = _REQUIRED, help: str = "", factory: Any = None, check: str | None = None) -> Any:
    """A dataclass field with a help string and an optional range `check` (both shown in docs/recipes.md)."""
    metadata: dict[str, Any] = {"help": help}
    if check is not None:
        metadata["check"] = Check(check)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if default is _REQUIRED:
        return field(metadata={**metadata, "required": True})
    return field(default=default, metadata=metadata)


@dataclass
class ModelConfig:
    name: str = _opt(help="model name, e.g. clnet_resnet50, clnet_hourglass, simplebaseline_resnet50")
    pretrained: str | None = _opt(
        None,
        "the trunk's torchvision ImageNet weights: imagenet (its reference weights, e.g. "
        "ResNet50_Weights.IMAGENET1K_V1, fetched once and cached), a torchvision weights name "
        "(ResNet50_Weights.IMAGENET1K_V2, torchvision://resnet50) or a local state dict file; null: from scratch",
    )
    stride: int | None = _opt(None, "CLNet-ResNet output stride: 4, 8, 16 (default) or 32", check="{4, 8, 16, 32}")
    stacks: int | None = _opt(None, "number of hourglass stacks (default 8)", check=">= 1")


@dataclass
class CodecConfig:
    name: Literal["composite", "heatmap"] = _opt("composite", "target/decoding scheme")
    sigma: float | None = _opt(
        None, "Gaussian sigma: input px for composite (16), heatmap px for heatmap (2)", check="> 0"
    )
    tau: float = _opt(0.6, "composite: activation threshold of the regression region and of decoding", check="(0, 1)")
    target: Literal["gaussian", "disk"] = _opt("gaussian", "composite heatmap target; disk is for the grmi loss")
    disk_radius: float | None = _opt(
        None, "disk target radius in input px (default: the Gaussian's tau radius)", check="> 0"
    )
    dark: bool = _opt(False, "heatmap codec: unbiased encoding and DARK decoding")
    decode: Literal["weighted", "peak"] = _opt(
        "weighted",
        "composite decode: weighted (section 3.4: activation-weighted votes of every cell >= tau) or peak (the "
        "arg-max cell's centre plus its offset; for losses that train offsets only at the peak)",
    )
    sigma_rule: Literal["fixed", "stride"] = _opt(
        "fixed",
        "composite: fixed (sigma as given at every stride, the paper's 16 px) or stride (sigma x S / 16: the same "
        "Gaussian in cells at every stride; the paper does not say which its Table 5 used)",
    )


@dataclass
class LossConfig:
    name: Literal["composite", "peak_mse", "grmi", "heatmap_mse"] = _opt("composite", "training loss")
    w_h: float = _opt(0.5, "weight of the heatmap term", check=">= 0")
    w_o: float = _opt(2.0, "weight of the offset terms", check=">= 0")
    region: Literal["pred", "gt", "union"] = _opt("pred", "cells where the offsets are trained (Omega)")


@dataclass
class AugmentConfig:
    flip_prob: float = _opt(0.5, "probability of a horizontal flip", check="[0, 1]")
    scale_factor: float = _opt(0.25, "scale s *= clip(N(0,1) * sf + 1, 1 - sf, 1 + sf)", check="[0, 1)")
    rotation_factor: float = _opt(30.0, "rotation clip(N(0,1) * rf, -2rf, 2rf) degrees", check=">= 0")
    rotation_prob: float = _opt(0.6, "probability of applying the rotation", check="[0, 1]")
    shear_factor: float = _opt(0.0, "shear clip(N(0,1) * shf, -2shf, 2shf) (tan of the shear angle)", check=">= 0")
    half_body_prob: float = _opt(0.0, "probability of a half-body crop (HRNet's COCO configs: 0.3)", check="[0, 1]")
    half_body_min_keypoints: int = _opt(8, "labelled keypoints needed before a half-body crop is tried", check=">= 0")
    color_jitter: float = _opt(0.2, "brightness/contrast/saturation jitter strength (0 = off)", check="[0, 1]")


@dataclass
class DataConfig:
    dataset: str = _opt(help="lsp, mpii, coco or synthetic (the records format of `clpose prepare`)")
    root: str = _opt(help="folder written by `clpose prepare` (records and summary.json)")
    input_size: HW = _opt((256, 256), "network input size HxW")
    train_split: str = _opt("train", "records split used for training")
    val_split: str = _opt("valid", "records split used for validation")
    box_padding: float = _opt(1.25, "person box enlargement before cropping", check="> 0")
    num_workers: int = _opt(4, "data loader worker processes", check=">= 0")
    pipeline: Literal["auto", "cpu", "gpu"] = _opt(
        "auto",
        "training data pipeline: cpu (workers decode, crop, augment and encode), gpu (workers read bytes and draw "
        "the augmentation, the training device does the rest), auto (gpu on CUDA, cpu otherwise)",
    )
    train_limit: int | None = _opt(None, "use only the first N training people (quick runs)", check=">= 1")
    val_limit: int | None = _opt(
        None, "use only the images of the first N validation people (whole images: COCO AP scores those)", check=">= 1"
    )
    augment: AugmentConfig = _opt(factory=AugmentConfig, help="training augmentation")


@dataclass
class TrainConfig:
    epochs: int = _opt(140, "training epochs", check=">= 1")
    batch_size: int = _opt(128, "global batch size (split across torchrun ranks)", check=">= 1")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = _opt("adam", "optimizer")
    lr: float = _opt(1e-3, "initial learning rate", check="> 0")
    weight_decay: float = _opt(0.0, "weight decay", check=">= 0")
    momentum: float = _opt(0.9, "SGD momentum (RMSprop: its momentum, 0 in the stacked-hourglass code)", check="[0, 1)")
    schedule: Literal["multistep", "cosine"] = _opt("multistep", "learning-rate schedule")
    milestones: list[int] = _opt(
        factory=lambda: [90, 120], help="multistep: epochs where lr *= gamma (increasing)", check=">= 0"
    )
    gamma: float = _opt(0.1, "multistep: decay factor", check="> 0")
    warmup_epochs: float = _opt(0.0, "linear warm-up length in epochs (fractions allowed)", check=">= 0")
    amp: Literal["auto", "off", "bf16", "fp16"] = _opt(
        "auto",
        "mixed precision; auto: bf16 on GPUs of compute capability 8.0+ and on CPUs with native bf16 (AMX, "
        "AVX512-BF16), fp16 on older GPUs, fp32 otherwise (clpose/precision.py)",
    )
    channels_last: bool = _opt(False, "channels_last memory format")
    grad_clip: float | None = _opt(None, "clip the gradient norm to this value", check="> 0")
    sync_bn: bool = _opt(False, "SyncBatchNorm under torchrun")
    seed: int = _opt(0, "random seed")
    val_every: int = _opt(1, "validate every N epochs", check=">= 1")
    max_minutes: float | None = _opt(None, "stop after this many minutes of training (budgeted runs)", check="> 0")


@dataclass
class EvalConfig:
    metric: Literal["auto", "pck", "pckh", "oks"] = _opt("auto", "auto: pck (lsp, synthetic), pckh, oks")
    alpha: float | None = _opt(None, "PCK threshold (default 0.2 for pck, 0.5 for pckh)", check=ALPHA_RANGE)
    flip: bool = _opt(True, "flip test")
    batch_size: int = _opt(64, "evaluation batch size", check=">= 1")
    boxes: str = _opt("gt", "COCO person boxes: gt or a COCO results-format detections file")
    oks_nms_thr: float = _opt(0.9, "OKS-NMS threshold (COCO)", check="[0, 1]")
    kpt_score_thr: float = _opt(0.2, "keypoint score threshold of the instance rescoring (COCO)", check="[0, 1]")


@dataclass
class Recipe:
    model: ModelConfig = _opt(help="network")
    data: DataConfig = _opt(help="dataset and pipeline")
    codec: CodecConfig = _opt(factory=CodecConfig, help="targets and decoding")
    loss: LossConfig = _opt(factory=LossConfig, help="loss")
    train: TrainConfig = _opt(factory=TrainConfig, help="optimisation")
    eval: EvalConfig = _opt(factory=EvalConfig, help="evaluation")
    name: str = _opt("", "run name (default: the recipe file's name)")


# --------------------------------------------------------------------------------------------------------
# validation


class _Problem(Exception):
    """A value that does not fit its field; turned into a ClposeError that names the file and key."""


def parse_hw(text: str, what: str = "input size") -> tuple[int, int]:
    """Parse "256x192" (height x width) into (256, 192)."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ClposeError(f"{what} {text!r} is not HxW with positive integers, e.g. 256x192")
    return int(parts[0]), int(parts[1])


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _type_name(tp: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any) -> Any:
    """Check `value` against the annotation `tp`; return it in canonical form or raise _Problem."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if value is None:
            raise _Problem("expected HxW, e.g. 256x192, got null")
        if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v > 0 for v in value):
            return (value[0], value[1])
        try:
            return parse_hw(value)
        except ClposeError:
            raise _Problem(f"expected HxW with positive integers, e.g. 256x192, got {value!r}") from None
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("off" if value is False else "on") in choices:
            return "off" if value is False else "on"  # YAML 1.1 reads off/on (and no/yes) as booleans
        if value in choices and not isinstance(value, bool):
            return value
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise _Problem(f"expected {_type_name(tp)}, got {value!r}{extra}")
    if origin is list:
        if not isinstance(value, list):
            raise _Problem(f"expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v) for v in value]
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
    raise _Problem(f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _out_of_range(f: dataclasses.Field, value: Any, dotted: str) -> str | None:
    """The message tail (e.g. `data.num_workers must be >= 0, got -1`) where `value` breaks f's range, else None."""
    check: Check | None = f.metadata.get("check")
    if check is None or value is None:  # null means "not set" (the code's default), so there is no range
        return None
    for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
        if not check.ok(v):
            return f"{dotted}{'' if i is None else f'[{i}]'} must be {check.describe()}, got {v}"
    return None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping; `where` names the source (file) in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        label = prefix.rstrip(".") or "the recipe"
        raise ClposeError(f"{where}: {label} must be a mapping of keys, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ClposeError(f"{where}: unknown key {prefix}{key}{_suggest(str(key), fields, prefix)}")
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
            kwargs[name] = _convert(tp, data[name])
        except _Problem as e:
            raise ClposeError(f"{where}: {dotted}: {e}") from None
        if problem := _out_of_range(f, kwargs[name], dotted):
            raise ClposeError(f"{where}: {problem}")
    return cls(**kwargs)


def _suggest(key: str, valid: Any, prefix: str) -> str:
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if match:
        return f" (did you mean {prefix}{match[0]}?)"
    return f" (valid keys: {', '.join(valid)})"


def _check_consistency(recipe: Recipe, where: str) -> None:
    """Cross-field rules that a single field's type cannot express."""
    heatmap_codec = recipe.codec.name == "heatmap"
    heatmap_loss = recipe.loss.name == "heatmap_mse"
    if heatmap_codec != heatmap_loss:
        raise ClposeError(
            f"{where}: loss.name {recipe.loss.name!r} does not fit codec.name {recipe.codec.name!r} "
            "(the heatmap codec trains with heatmap_mse; the composite codec with composite, peak_mse or grmi)"
        )
    if (recipe.loss.name == "grmi") != (recipe.codec.target == "disk"):
        raise ClposeError(
            f"{where}: loss.name grmi and codec.target disk go together (got "
            f"loss.name {recipe.loss.name!r}, codec.target {recipe.codec.target!r})"
        )
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


# --------------------------------------------------------------------------------------------------------
# overrides


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


def _field_type(path: list[str], text: str) -> tuple[Any, dataclasses.Field]:
    """The annotation and field of the dotted key `path`; a typo is named with its closest valid key."""
    tp: Any = Recipe
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth]) + ("." if depth else "")
        if not dataclasses.is_dataclass(tp):
            raise ClposeError(f"--set {text}: {prefix.rstrip('.')} is a value, not a section")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if part not in fields:
            raise ClposeError(f"--set {text}: unknown key {prefix}{part}{_suggest(part, fields, prefix)}")
        tp, f = _hints(tp)[part], fields[part]
    if dataclasses.is_dataclass(tp):
        raise ClposeError(f"--set {text}: {'.'.join(path)} is a section; set one of its keys")
    return tp, f


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply "a.b=c" overrides to a raw recipe mapping (in place), checking each key and value."""
    for text in overrides:
        path, value = parse_override(text)
        dotted = ".".join(path)
        if dotted in RENAMED:
            warn(f"--set {text}: {dotted} is deprecated, renamed {RENAMED[dotted]}; read as {RENAMED[dotted]}")
            dotted = RENAMED[dotted]
            path = dotted.split(".")
        tp, f = _field_type(path, text)
        try:
            converted = _convert(tp, value)
        except _Problem as e:
            raise ClposeError(f"--set {text}: {e}") from None
        if problem := _out_of_range(f, converted, dotted):
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


# --------------------------------------------------------------------------------------------------------
# public entry points


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
            hints = _hints(type(obj))
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


def _doc_type(tp: Any) -> str:
    """A type as the docs table writes it: string, integer or null, one of a / b, list of integers, HxW."""
    if tp is HW:
        return "HxW"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _doc_type(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + " / ".join(str(c) for c in typing.get_args(tp))
    if origin is list:
        return f"list of {_doc_type(typing.get_args(tp)[0])}s"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(tp, str(tp))


def recipe_reference() -> str:
    """Markdown reference of every recipe key (docs/recipes.md is this text; a test keeps it current)."""
    lines = [
        "# Recipe keys",
        "",
        "Generated from `clpose/config.py` by `clpose.config.recipe_reference()`. A recipe",
        "is one flat YAML file; `--set KEY=VALUE` overrides a key with the same checks. Sizes are HxW.",
        "A range applies to a set value (null is not checked) and to every entry of a list.",
        "",
    ]

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                continue
            if f.metadata.get("required"):
                default = "required"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{f.default_factory()}`"
            else:
                default = f"`{format_hw(f.default) if tp is HW else f.default}`"
            kind = _doc_type(tp)
            check = f.metadata.get("check")
            allowed = check.rule if check else ""
            rows.append(f"| `{prefix}{f.name}` | {kind} | {allowed} | {default} | {f.metadata.get('help', '')} |")
        if rows:
            lines.extend(
                [
                    f"## {prefix.rstrip('.') or 'top level'}",
                    "",
                    "| key | type | range | default | meaning |",
                    "|---|---|---|---|---|",
                    *rows,
                    "",
                ]
            )
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
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
