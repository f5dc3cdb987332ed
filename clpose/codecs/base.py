"""What every codec offers (the `Codec` protocol) and the checks they share.

Sizes are (H, W), as everywhere inside clpose; keypoints are (x, y) in crop pixels.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from clpose.errors import ClposeError


class Codec(Protocol):
    """Keypoints -> training targets (encode) and network outputs -> keypoints (decode).

    Attributes:
        input_hw: crop size (H, W) in pixels.
        heatmap_hw: map size (H', W') = input_hw // stride.
        stride: down-sampling stride S of the maps.
        channels_per_keypoint: output channels per keypoint (the network predicts K x this many maps).
        tau: the activation threshold shared by the loss's region and the decode, or None where the codec has
            none (the loss then needs none).
    """

    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    stride: int
    tau: float | None

    @property
    def channels_per_keypoint(self) -> int: ...

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
        """Targets of one person ((K, 2) keypoints, (K,) labelled flags): "heatmaps", "keypoint_weights" and
        whatever else the codec's loss needs."""
        ...

    def encode_batch(self, keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
        """`encode` for (B, K, 2) keypoints and (B, K) flags on any device (the GPU data pipeline): the same
        targets as `encode`, stacked. Two forms of one formula: NumPy per sample in the CPU workers (torch's
        per-op overhead made a demo sample slower there: docs/benchmarks.md, "Data pipeline"), torch for a batch on
        the device;
        tests/test_codecs.py holds them bit-identical."""
        ...

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A raw network output (N, C K, H', W') -> the maps `decode` takes."""
        ...

    def decode(self, *maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints (N, K, 2) in crop pixels and scores (N, K)."""
        ...

    def decode_output(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`decode(*split(output))`."""
        ...

    def decode_targets(self, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one sample's encoded targets (what `encode` returned, as tensors): (1, K, 2) and (1, K)."""
        ...

    def flip_back(self, output: torch.Tensor, flip_index: list[int]) -> torch.Tensor:
        """The output for horizontally flipped crops mapped back onto the original crops' grid."""
        ...

    def decision_margin(self, output: torch.Tensor) -> torch.Tensor:
        """(N, K): for a raw output (N, C K, H', W'), how much the maps may change before one of the decode's
        discrete choices (a cell crossing tau, another arg-max) changes and moves the keypoint by a jump rather than
        smoothly. Two implementations whose maps differ by less than this decode the keypoint alike; where they
        differ by more, a jump of up to a cell is expected, not an error (the export's parity check)."""
        ...

    def target_map(self, targets: dict[str, torch.Tensor], k: int) -> np.ndarray:
        """For pictures: the (H', W') map `clpose vis targets` colours for keypoint k of one sample's targets."""
        ...

    def votes(self, targets: dict[str, torch.Tensor], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For pictures: (cell centre, where the cell points) in crop pixels for every cell that votes for
        keypoint k in `targets`; empty for codecs whose cells do not vote."""
        ...


def check_size(input_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """(H, W) as ints, checked against the stride."""
    if len(input_hw) != 2 or any(int(v) != v or v <= 0 for v in input_hw):
        raise ClposeError(f"input size must be (H, W) with positive integers, got {tuple(input_hw)}")
    if int(stride) != stride or stride <= 0:
        raise ClposeError(f"stride must be a positive integer, got {stride}")
    h, w = int(input_hw[0]), int(input_hw[1])
    if w < stride or h < stride:
        raise ClposeError(f"input size {h}x{w} (HxW) is smaller than the stride {stride}: the map would be empty")
    return h, w


def check_keypoints(keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate one person's (K, 2) keypoints and (K,) visibility; return float64 / bool arrays."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visible)
    if kpts.ndim != 2 or kpts.shape[1] != 2:
        raise ClposeError(f"keypoints must have shape (K, 2), got {kpts.shape}")
    if vis.shape != (kpts.shape[0],):
        raise ClposeError(f"visible must have shape ({kpts.shape[0]},) to match keypoints, got {vis.shape}")
    return kpts, vis > 0


def check_heatmaps(heatmaps: torch.Tensor, heatmap_hw: tuple[int, int], made_by: str) -> tuple[int, int, int, int]:
    """(N, K, H', W') of maps a codec decodes, checked against the maps it makes (`made_by` says which codec)."""
    if heatmaps.ndim != 4:
        raise ClposeError(f"heatmaps must be (N, K, H', W'), got shape {tuple(heatmaps.shape)}")
    n, k, hp, wp = heatmaps.shape
    if (hp, wp) != tuple(heatmap_hw):
        raise ClposeError(f"heatmaps are {hp}x{wp} (H'xW') but {made_by} makes {heatmap_hw[0]}x{heatmap_hw[1]} maps")
    return n, k, hp, wp
