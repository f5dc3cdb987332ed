"""The recipe schema: one dataclass per section (model, codec, loss, data with data.augment, train, eval), each field
with its default, help text and range (`Check`), as docs/recipes.md shows them. Sizes are HxW ("256x192" = height
256, width 192) as in the paper. Loading and checking a recipe is clpose.config.load's job."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from clpose.errors import ClposeError

AmpName = Literal["auto", "off", "bf16", "fp16"]  # train.amp and the commands' --amp (clpose/precision.py)
AMP_CHOICES: tuple[str, ...] = typing.get_args(AmpName)
AMP_HELP = (
    "Precision: auto (bf16 where the GPU or CPU runs it natively, fp16 on GPUs older than compute capability 8.0, "
    "else fp32), off (fp32), or bf16 / fp16 autocast."
)
ALPHA_RANGE = "(0, 1]"  # a PCK threshold is a fraction of the normaliser: eval.alpha and `clpose eval --alpha`


class HxW:
    """Marks a (height, width) field, written "HxW" in YAML and on the command line (`HW`)."""

    def __repr__(self) -> str:
        return "HxW"


HW = Annotated[tuple[int, int], HxW()]  # (height, width)


@dataclass(frozen=True)
class Registered:
    """A recipe value that must name an entry of one of clpose's registries ("codecs", "losses", "metrics"): the
    valid names are read from the registry (through a `Lookup`) when a recipe is checked, so a registered codec,
    loss or metric is a valid recipe value with no edit here."""

    registry: str
    extra: tuple[str, ...] = ()  # names valid besides the registry's, e.g. the metric "auto"

    def names(self, lookup: Lookup) -> list[str]:
        return [*self.extra, *lookup.names(self.registry)]


@dataclass
class Options:
    """The options of one registry entry (a codec's, a loss's): a recipe section that holds the entry's `name` and
    that entry's own keys. Each entry declares a subclass with its fields (`_opt`: default, help, range), so a
    default is written once, beside its entry, and a key of another entry is refused by name."""

    name: str = ""


@dataclass(frozen=True)
class Named:
    """Marks a Recipe field whose section is the options of the entry its `name` picks in `registry`."""

    registry: str
    default: str | None  # the entry a recipe without a `name` in that section gets; None: `name` is required


class Lookup(Protocol):
    """What recipe checking reads from the registries; the layer above the registries (clpose.recipes) supplies it,
    so this package imports no registry."""

    def names(self, registry: str) -> list[str]:
        """The names registered in `registry`."""
        ...

    def options(self, registry: str, name: str) -> type[Options]:
        """The options class of the entry `name` of `registry` (a registered name)."""
        ...

    def kind(self, registry: str) -> str:
        """What an entry of `registry` is called in messages: "codec", "loss"."""
        ...


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


def option(default: Any = _REQUIRED, help: str = "", factory: Any = None, check: str | None = None) -> Any:
    """A dataclass field with a help string and an optional range `check` (both shown in docs/recipes.md)."""
    metadata: dict[str, Any] = {"help": help}
    if check is not None:
        metadata["check"] = Check(check)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    if default is _REQUIRED:
        return field(metadata={**metadata, "required": True})
    return field(default=default, metadata=metadata)


def _named(registry: str, default: str | None, help: str) -> Any:
    """A section whose keys are those of the registry entry its `name` picks (`Named`); the loader fills it."""
    return field(default=None, metadata={"help": help, "named": Named(registry, default)})


def _section(help: str, cls: type | None = None) -> Any:
    """A section of the recipe (a nested dataclass): required where `cls` is None (the loader says so when it is
    missing), else made from its defaults."""
    if cls is None:
        return field(default=None, metadata={"help": help, "required": True})
    return option(factory=cls, help=help)


@dataclass
class AugmentConfig:
    # geometry: SimpleBaseline's flip, scale and rotation draws, plus a shear
    flip_prob: float = option(0.5, "probability of a horizontal flip", check="[0, 1]")
    scale_factor: float = option(0.25, "scale s *= clip(N(0,1) * sf + 1, 1 - sf, 1 + sf)", check="[0, 1)")
    rotation_factor: float = option(30.0, "rotation clip(N(0,1) * rf, -2rf, 2rf) degrees", check=">= 0")
    rotation_prob: float = option(0.6, "probability of applying the rotation", check="[0, 1]")
    shear_factor: float = option(0.0, "shear clip(N(0,1) * shf, -2shf, 2shf) (tan of the shear angle)", check=">= 0")
    # HRNet's half-body crops (its COCO configs)
    half_body_prob: float = option(0.0, "probability of a half-body crop (HRNet's COCO configs: 0.3)", check="[0, 1]")
    half_body_min_keypoints: int = option(8, "labelled keypoints needed before a half-body crop is tried", check=">= 0")
    # photometric
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter strength (0 = off)", check="[0, 1]")


@dataclass
class DataConfig:
    dataset: str = option(help="lsp, mpii, coco or synthetic (the records format of `clpose prepare`)")
    root: str = option(help="folder written by `clpose prepare` (records and summary.json)")
    input_size: HW = option((256, 256), "network input size HxW")
    train_split: str = option("train", "records split used for training")
    val_split: str = option("valid", "records split used for validation")
    box_padding: float = option(1.25, "person box enlargement before cropping", check="> 0")
    num_workers: int = option(4, "data loader worker processes", check=">= 0")
    pipeline: Literal["auto", "cpu", "gpu"] = option(
        "auto",
        "training data pipeline: cpu (workers decode, crop, augment and encode), gpu (workers read bytes and draw "
        "the augmentation, the training device does the rest), auto (gpu on CUDA, cpu otherwise)",
    )
    train_limit: int | None = option(None, "use only the first N training people (quick runs)", check=">= 1")
    val_limit: int | None = option(
        None, "use only the images of the first N validation people (whole images: COCO AP scores those)", check=">= 1"
    )
    augment: AugmentConfig = _section("training augmentation", AugmentConfig)


@dataclass
class TrainConfig:
    epochs: int = option(140, "training epochs", check=">= 1")
    batch_size: int = option(128, "global batch size (split across torchrun ranks)", check=">= 1")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = option("adam", "optimizer")
    lr: float = option(1e-3, "initial learning rate", check="> 0")
    weight_decay: float = option(0.0, "weight decay", check=">= 0")
    momentum: float = option(
        0.9, "SGD momentum (RMSprop: its momentum, 0 in the stacked-hourglass code)", check="[0, 1)"
    )
    schedule: Literal["multistep", "cosine"] = option("multistep", "learning-rate schedule")
    milestones: list[int] = option(
        factory=lambda: [90, 120], help="multistep: epochs where lr *= gamma (increasing)", check=">= 0"
    )
    gamma: float = option(0.1, "multistep: decay factor", check="> 0")
    warmup_epochs: float = option(0.0, "linear warm-up length in epochs (fractions allowed)", check=">= 0")
    amp: AmpName = option(
        "auto",
        "mixed precision; auto: bf16 on GPUs of compute capability 8.0+ and on CPUs with native bf16 (AMX, "
        "AVX512-BF16), fp16 on older GPUs, fp32 otherwise (clpose/precision.py)",
    )
    channels_last: bool = option(False, "channels_last memory format")
    grad_clip: float | None = option(None, "clip the gradient norm to this value", check="> 0")
    sync_bn: bool = option(False, "SyncBatchNorm under torchrun")
    seed: int = option(0, "random seed")
    val_every: int = option(1, "validate every N epochs", check=">= 1")
    max_minutes: float | None = option(None, "stop after this many minutes of training (budgeted runs)", check="> 0")


@dataclass
class EvalConfig:
    metric: MetricName = option("auto", "auto: the dataset's (pck for lsp and synthetic, pckh for mpii, oks for coco)")
    alpha: float | None = option(None, "PCK threshold (default 0.2 for pck, 0.5 for pckh)", check=ALPHA_RANGE)
    flip: bool = option(True, "flip test")
    batch_size: int = option(64, "evaluation batch size", check=">= 1")
    # COCO: the person boxes, then the SimpleBaseline/HRNet rescoring and OKS-NMS of the predictions
    boxes: str = option("gt", "COCO person boxes: gt or a COCO results-format detections file")
    oks_nms_thr: float = option(0.9, "OKS-NMS threshold (COCO)", check="[0, 1]")
    kpt_score_thr: float = option(0.2, "keypoint score threshold of the instance rescoring (COCO)", check="[0, 1]")


@dataclass
class Recipe:
    model: Options = _named("models", None, "network (the model's own keys: clpose.models.MODELS)")
    data: DataConfig = _section("dataset and pipeline")
    codec: Options = _named("codecs", "composite", "targets and decoding (the codec's own keys: clpose.codecs.CODECS)")
    loss: Options = _named("losses", "composite", "training loss (the loss's own keys: clpose.losses.LOSSES)")
    train: TrainConfig = _section("optimisation", TrainConfig)
    eval: EvalConfig = _section("evaluation", EvalConfig)
    name: str = option("", "run name (default: the recipe file's name)")


def parse_hw(text: str, what: str = "input size") -> tuple[int, int]:
    """Parse "256x192" (height x width) into (256, 192)."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ClposeError(f"{what} {text!r} is not HxW with positive integers, e.g. 256x192")
    return int(parts[0]), int(parts[1])


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"
