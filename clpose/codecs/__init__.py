"""Codecs: keypoints -> training targets (encode) and network outputs -> keypoints (decode).

A codec is built once from the recipe and used in two places: the dataset encodes, inference decodes. Every codec
follows the `Codec` protocol (clpose.codecs.base; its `votes` is how `clpose vis` draws a codec's cells). `CODECS`
holds one `CodecEntry` per recipe codec.name with everything the rest of clpose needs to know about the codec:
adding a codec is one class, its options and one entry (`CODECS[name] = CodecEntry(...)`, also from outside the
package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clpose.codecs.base import Codec
from clpose.codecs.composite import CompositeCodec, CompositeOptions
from clpose.codecs.heatmap import HeatmapCodec, HeatmapOptions
from clpose.config import Options
from clpose.errors import ClposeError


@dataclass(frozen=True)
class CodecEntry:
    """A registered codec.

    Attributes:
        options: its recipe section's class (an `Options` dataclass: each key's default, help and range): a recipe
            with `codec.name` this entry holds exactly these keys, and docs/recipes.md lists them.
        build: (those options, crop size (H, W), the model's output stride) -> the codec.
        channels_per_keypoint: what a network must output per keypoint for it (a model fits the codec when its own
            codec has as many).
        target_keys: what `encode` produces and the loss reads: the trainer moves exactly these to the device.
        default_loss: the loss a recipe of this codec trains with unless it says otherwise (bench, `model_recipe`).
        check: a further rule on the recipe, returning what is wrong or None.
    """

    options: type[Options]
    build: Callable[[Any, tuple[int, int], int], Codec]
    channels_per_keypoint: int
    target_keys: tuple[str, ...]
    default_loss: str
    check: Callable[[Any], str | None] | None = None


def _composite(cfg: CompositeOptions, input_hw: tuple[int, int], stride: int) -> Codec:
    sigma = cfg.sigma
    if cfg.sigma_rule == "stride":  # the Gaussian keeps its size in cells: sigma 16 px at S = 16, 32 px at S = 32
        sigma = sigma * stride / 16
    return CompositeCodec(
        input_hw,
        stride=stride,
        sigma=sigma,
        tau=cfg.tau,
        target=cfg.target,
        disk_radius=cfg.disk_radius,
        decode=cfg.decode,
    )


def _heatmap(cfg: HeatmapOptions, input_hw: tuple[int, int], stride: int) -> Codec:
    return HeatmapCodec(input_hw, stride=stride, sigma=cfg.sigma, dark=cfg.dark)


def _disk_goes_with_grmi(recipe: Any) -> str | None:
    """G-RMI's loss classifies a disk; every other composite loss regresses a Gaussian (one rule, both ways)."""
    if (recipe.codec.target == "disk") != (recipe.loss.name == "grmi"):
        return (
            "loss.name grmi and codec.target disk go together "
            f"(got loss.name {recipe.loss.name!r}, codec.target {recipe.codec.target!r})"
        )
    return None


CODECS: dict[str, CodecEntry] = {
    "composite": CodecEntry(
        CompositeOptions, _composite, 3, ("heatmaps", "offsets", "keypoint_weights"), "composite", _disk_goes_with_grmi
    ),
    "heatmap": CodecEntry(HeatmapOptions, _heatmap, 1, ("heatmaps", "keypoint_weights"), "heatmap_mse"),
}


def get_codec(name: str) -> CodecEntry:
    if name not in CODECS:
        raise ClposeError(f"unknown codec {name!r}; valid: {', '.join(CODECS)}")
    return CODECS[name]


def build_codec(cfg: Options, input_hw: tuple[int, int], stride: int) -> Codec:
    """Build the recipe's codec (its `codec` section) for a crop size (H, W) and the model's output stride."""
    return get_codec(cfg.name).build(cfg, input_hw, stride)


__all__ = [
    "CODECS",
    "Codec",
    "CodecEntry",
    "CompositeCodec",
    "CompositeOptions",
    "HeatmapCodec",
    "HeatmapOptions",
    "build_codec",
    "get_codec",
]
