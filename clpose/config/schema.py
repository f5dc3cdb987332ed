"""The recipe schema: one dataclass per section (model, codec, loss, data with data.augment, train, eval), each field
with its default, help text and range (`Check`), as docs/recipes.md shows them. Sizes are HxW ("256x192" = height
256, width 192) as in the paper. Loading and checking a recipe is clpose.config.load's job."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from clpose.errors import ClposeError

AmpName = Literal["auto", "off", "bf16", "fp16"]  # train.amp and the commands' --amp (clpose/precision.py)
AMP_CHOICES: tuple[str, ...] = typing.get_args(AmpName)
AMP_HELP = (
    "Precision: auto (bf16 where the GPU or CPU runs it natively, fp16 on GPUs older than compute capability 8.0, "
    "else fp32), off (fp32), or bf16 / fp16 autocast."
)
ALPHA_RANGE = "(0, 1]"  # a PCK threshold is a fraction of the normaliser: eval.alpha and `clpose eval --alpha`
HW = Annotated[tuple[int, int], "HxW"]  # (height, width), written "HxW" in YAML and on the command line


@dataclass(frozen=True)
class Registered:
    """A recipe value that must name an entry of one of clpose's registries ("codecs", "losses", "metrics"): the
    valid names are read from the registry when a recipe is checked, so a registered codec, loss or metric is a
    valid recipe value with no edit here."""

    registry: str
    extra: tuple[str, ...] = ()  # names valid besides the registry's, e.g. the metric "auto"

    def names(self) -> list[str]:
        return [*self.extra, *registry_names(self.registry)]


def registry_names(registry: str) -> list[str]:
    """The names in a registry (imported when asked, not when clpose.config is: the registries import config)."""
    if registry == "codecs":
        from clpose.codecs import CODECS

        return list(CODECS)
    if registry == "losses":
        from clpose.losses import LOSSES

        return list(LOSSES)
    if registry == "metrics":
        from clpose.evaluation.metrics import METRICS

        return list(METRICS)
    raise ValueError(f"unknown registry {registry!r}")


CodecName = Annotated[str, Registered("codecs")]
LossName = Annotated[str, Registered("losses")]
MetricName = Annotated[str, Registered("metrics", ("auto",))]
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


def _section(help: str, cls: type | None = None) -> Any:
    """A section of the recipe (a nested dataclass): required where `cls` is None, else made from its defaults."""
    return _opt(help=help) if cls is None else _opt(factory=cls, help=help)


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
    name: CodecName = _opt("composite", "target/decoding scheme (clpose.codecs.CODECS)")
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
    name: LossName = _opt("composite", "training loss (clpose.losses.LOSSES)")
    w_h: float = _opt(0.5, "weight of the heatmap term", check=">= 0")
    w_o: float = _opt(2.0, "weight of the offset terms", check=">= 0")
    region: Literal["pred", "gt", "union"] = _opt("pred", "cells where the offsets are trained (Omega)")


@dataclass
class AugmentConfig:
    # geometry: SimpleBaseline's flip, scale and rotation draws, plus a shear
    flip_prob: float = _opt(0.5, "probability of a horizontal flip", check="[0, 1]")
    scale_factor: float = _opt(0.25, "scale s *= clip(N(0,1) * sf + 1, 1 - sf, 1 + sf)", check="[0, 1)")
    rotation_factor: float = _opt(30.0, "rotation clip(N(0,1) * rf, -2rf, 2rf) degrees", check=">= 0")
    rotation_prob: float = _opt(0.6, "probability of applying the rotation", check="[0, 1]")
    shear_factor: float = _opt(0.0, "shear clip(N(0,1) * shf, -2shf, 2shf) (tan of the shear angle)", check=">= 0")
    # HRNet's half-body crops (its COCO configs)
    half_body_prob: float = _opt(0.0, "probability of a half-body crop (HRNet's COCO configs: 0.3)", check="[0, 1]")
    half_body_min_keypoints: int = _opt(8, "labelled keypoints needed before a half-body crop is tried", check=">= 0")
    # photometric
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
    augment: AugmentConfig = _section("training augmentation", AugmentConfig)


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
    amp: AmpName = _opt(
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
    metric: MetricName = _opt("auto", "auto: the dataset's (pck for lsp and synthetic, pckh for mpii, oks for coco)")
    alpha: float | None = _opt(None, "PCK threshold (default 0.2 for pck, 0.5 for pckh)", check=ALPHA_RANGE)
    flip: bool = _opt(True, "flip test")
    batch_size: int = _opt(64, "evaluation batch size", check=">= 1")
    # COCO: the person boxes, then the SimpleBaseline/HRNet rescoring and OKS-NMS of the predictions
    boxes: str = _opt("gt", "COCO person boxes: gt or a COCO results-format detections file")
    oks_nms_thr: float = _opt(0.9, "OKS-NMS threshold (COCO)", check="[0, 1]")
    kpt_score_thr: float = _opt(0.2, "keypoint score threshold of the instance rescoring (COCO)", check="[0, 1]")


@dataclass
class Recipe:
    model: ModelConfig = _section("network")
    data: DataConfig = _section("dataset and pipeline")
    codec: CodecConfig = _section("targets and decoding", CodecConfig)
    loss: LossConfig = _section("loss", LossConfig)
    train: TrainConfig = _section("optimisation", TrainConfig)
    eval: EvalConfig = _section("evaluation", EvalConfig)
    name: str = _opt("", "run name (default: the recipe file's name)")


def parse_hw(text: str, what: str = "input size") -> tuple[int, int]:
    """Parse "256x192" (height x width) into (256, 192)."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ClposeError(f"{what} {text!r} is not HxW with positive integers, e.g. 256x192")
    return int(parts[0]), int(parts[1])


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"
