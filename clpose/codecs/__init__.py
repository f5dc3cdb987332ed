"""Codecs: keypoints -> training targets (encode) and network outputs -> keypoints (decode).

A codec is built once from the recipe and used in two places: the dataset encodes, inference decodes.
"""

from __future__ import annotations

from clpose.codecs.composite import CompositeCodec
from clpose.codecs.heatmap import HeatmapCodec
from clpose.config import CodecConfig
from clpose.errors import ClposeError

Codec = CompositeCodec | HeatmapCodec
CODECS: dict[str, type[CompositeCodec] | type[HeatmapCodec]] = {
    "composite": CompositeCodec,
    "heatmap": HeatmapCodec,
}


def build_codec(cfg: CodecConfig, input_size: tuple[int, int], stride: int) -> Codec:
    """Build the recipe's codec for an input size (W, H) and the model's output stride."""
    if cfg.name == "composite":
        return CompositeCodec(
            input_size,
            stride=stride,
            sigma=cfg.sigma or 16.0,
            tau=cfg.tau,
            target=cfg.target,
            disk_radius=cfg.disk_radius,
        )
    if cfg.name == "heatmap":
        return HeatmapCodec(input_size, stride=stride, sigma=cfg.sigma or 2.0, dark=cfg.dark)
    raise ClposeError(f"unknown codec {cfg.name!r}; valid: {', '.join(CODECS)}")


__all__ = ["CODECS", "Codec", "CompositeCodec", "HeatmapCodec", "build_codec"]
