"""Codecs: keypoints -> training targets (encode) and network outputs -> keypoints (decode).

A codec is built once from the recipe and used in two places: the dataset encodes, inference decodes. Every codec
follows the `Codec` protocol (clpose.codecs.base); `CODECS` maps a recipe's codec.name to its builder, so a new
codec is one class and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from clpose.codecs.base import Codec
from clpose.codecs.composite import CompositeCodec
from clpose.codecs.heatmap import HeatmapCodec
from clpose.config import CodecConfig
from clpose.errors import ClposeError


def _composite(cfg: CodecConfig, input_hw: tuple[int, int], stride: int) -> Codec:
    sigma = cfg.sigma or 16.0
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


def _heatmap(cfg: CodecConfig, input_hw: tuple[int, int], stride: int) -> Codec:
    return HeatmapCodec(input_hw, stride=stride, sigma=cfg.sigma or 2.0, dark=cfg.dark)


CODECS: dict[str, Callable[[CodecConfig, tuple[int, int], int], Codec]] = {
    "composite": _composite,
    "heatmap": _heatmap,
}


def build_codec(cfg: CodecConfig, input_hw: tuple[int, int], stride: int) -> Codec:
    """Build the recipe's codec for a crop size (H, W) and the model's output stride."""
    if cfg.name not in CODECS:
        raise ClposeError(f"unknown codec {cfg.name!r}; valid: {', '.join(CODECS)}")
    return CODECS[cfg.name](cfg, input_hw, stride)


__all__ = ["CODECS", "Codec", "CompositeCodec", "HeatmapCodec", "build_codec"]
