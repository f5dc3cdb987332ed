"""Models: a plain registry of builders, `build_model(name, num_keypoints, **options)`.

What a model's outputs are (its codec), its output stride and the size its input must divide by are its
`ModelEntry`'s (known without building it); a model has the attribute `num_stages`. Single-stage models return one
tensor, multi-stage models (hourglasses) a list with every stage's output (`final_output` picks the last). Decoding
is not part of forward, so an exported graph is just the network.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from clpose.config import Options, format_hw
from clpose.errors import ClposeError
from clpose.models.backbones import LIGHT_TRUNKS, TrunkOptions, load_pretrained
from clpose.models.clnet import CLNetLight, CLNetResNet, CLNetResNetOptions
from clpose.models.hourglass import CLNetHourglass, HourglassOptions, StackedHourglass
from clpose.models.simplebaseline import SimpleBaseline
from clpose.weights import Resolved


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder (num_keypoints and its options as keywords), its options (the recipe's
    `model` section: an `Options` dataclass whose fields the builder takes; null leaves the builder's default), and
    what it outputs, known without building it: its codec, its output stride and the input size divisor (each a
    function of the options set)."""

    build: Callable[..., nn.Module]
    options: type[Options]
    codec: str
    stride: Callable[[dict[str, Any]], int]
    size_divisor: Callable[[dict[str, Any]], int]


def _clnet_resnet(depth: int) -> ModelEntry:
    return ModelEntry(
        build=partial(CLNetResNet, depth),
        options=CLNetResNetOptions,
        codec="composite",
        stride=lambda o: o.get("stride", CLNetResNetOptions.stride),
        size_divisor=lambda o: 32 if o.get("stride", CLNetResNetOptions.stride) == 32 else 16,
    )


def _simplebaseline(depth: int) -> ModelEntry:
    return ModelEntry(partial(SimpleBaseline, depth), TrunkOptions, "heatmap", lambda o: 4, lambda o: 32)


def _clnet_light(arch: str) -> ModelEntry:
    return ModelEntry(partial(CLNetLight, arch), TrunkOptions, "composite", lambda o: 16, lambda o: 16)


MODELS: dict[str, ModelEntry] = {
    **{f"clnet_resnet{d}": _clnet_resnet(d) for d in (10, 18, 34, 50, 101, 152)},
    **{f"clnet_{arch}": _clnet_light(arch) for arch in LIGHT_TRUNKS},
    # stride 4 stem x 2^4 hourglass levels: 64
    "clnet_hourglass": ModelEntry(CLNetHourglass, HourglassOptions, "composite", lambda o: 16, lambda o: 64),
    **{f"simplebaseline_resnet{d}": _simplebaseline(d) for d in (18, 34, 50, 101, 152)},
    "hourglass": ModelEntry(StackedHourglass, HourglassOptions, "heatmap", lambda o: 4, lambda o: 64),
}


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ClposeError(f"unknown model {name!r}{hint}; valid: {', '.join(MODELS)}")
    return MODELS[name]


def option_names(entry: ModelEntry) -> list[str]:
    """The keys of the model's section besides its name."""
    return [f.name for f in dataclasses.fields(entry.options) if f.name != "name"]


def _check_options(name: str, entry: ModelEntry, options: dict[str, Any]) -> None:
    for key in options:
        if key not in option_names(entry):
            raise ClposeError(f"model {name} has no option {key!r}; its options: {', '.join(option_names(entry))}")


def model_options(cfg: Options, pretrained: bool = True) -> dict[str, Any]:
    """The options a recipe's model section sets (null ones are the builder's defaults); without `pretrained` the
    trunk's weights file is left out (a checkpoint brings its own weights)."""
    keys = [k for k in option_names(get_entry(cfg.name)) if pretrained or k != "pretrained"]
    return {k: v for k in keys if (v := getattr(cfg, k)) is not None}


def output_stride(name: str, **options: Any) -> int:
    """The model's output stride, without building it (the data pipeline needs it for the codec)."""
    entry = get_entry(name)
    _check_options(name, entry, options)
    return entry.stride(options)


def check_input_size(name: str, input_size_hw: tuple[int, int], **options: Any) -> None:
    """A ClposeError saying which sizes work when the input does not fit the model's strides."""
    divisor = get_entry(name).size_divisor(options)
    h, w = input_size_hw
    if h % divisor or w % divisor:
        down = (max(divisor, h // divisor * divisor), max(divisor, w // divisor * divisor))
        up = (-(-h // divisor) * divisor, -(-w // divisor) * divisor)
        raise ClposeError(
            f"input size {format_hw(input_size_hw)} does not fit {name}: height and width must be "
            f"multiples of {divisor} (nearest: {format_hw(down)} or {format_hw(up)})"
        )


def build_model(name: str, num_keypoints: int, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a key of MODELS, e.g. "clnet_resnet50".
        num_keypoints: K.
        **options: the fields of the entry's options class (CLNet-ResNet: stride and pretrained; SimpleBaseline and
            the light CLNets: pretrained; the hourglasses: stacks).
    """
    entry = get_entry(name)
    _check_options(name, entry, options)
    if num_keypoints < 1:
        raise ClposeError(f"num_keypoints must be >= 1, got {num_keypoints}")
    model = entry.build(num_keypoints=num_keypoints, **options)
    model.name = name
    return model


def load_trunk_weights(model: nn.Module, spec: str) -> Resolved:
    """Load a trunk's torchvision ImageNet weights into a built model (`imagenet`, a weights name or a local file:
    clpose.models.backbones.load_pretrained); what was loaded is returned and kept as `model.pretrained_weights`."""
    name = getattr(model, "name", type(model).__name__)
    if "pretrained" not in option_names(get_entry(name)) or not hasattr(model, "trunk"):
        raise ClposeError(f"model {name} has no ImageNet trunk: model.pretrained must be null for it")
    resolved = load_pretrained(model.trunk, spec)
    model.pretrained_weights = resolved.to_json()
    return resolved


def final_output(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The last stage's output of a (possibly multi-stage) model."""
    return output[-1] if isinstance(output, (list, tuple)) else output


__all__ = [
    "MODELS",
    "ModelEntry",
    "build_model",
    "check_input_size",
    "final_output",
    "get_entry",
    "load_trunk_weights",
    "model_options",
    "output_stride",
]
