"""Training losses: the composite loss (Eq. 4-6), the two ablation losses of section 4.3, and the Gaussian
heatmap MSE of the baselines.

Every loss takes the network output (one tensor, or a list of tensors for multi-stage models: intermediate
supervision sums the stages) and the batched targets of the codec, and returns a dict with "loss" (the total
to back-propagate) and its parts (summed over stages) for logging. `LOSSES` registers each with the codecs it fits:
adding a loss is one class and one entry (or `LOSSES[name] = LossEntry(...)` from outside the package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from clpose.codecs import Codec
from clpose.codecs.composite import CompositeOptions, split_channels, split_offsets
from clpose.config import Options, option
from clpose.errors import ClposeError

Targets = dict[str, torch.Tensor]
W_H_HELP = "weight of the heatmap term"
W_O_HELP = "weight of the offset terms"


@dataclass
class OffsetLossOptions(Options):
    """The `loss` section of the ablation losses peak_mse and grmi (section 4.3)."""

    w_h: float = option(0.5, W_H_HELP, check=">= 0")
    w_o: float = option(2.0, W_O_HELP, check=">= 0")


@dataclass
class CompositeLossOptions(OffsetLossOptions):
    """The `loss` section for `name: composite` (Eq. 6)."""

    name: str = "composite"
    region: Literal["pred", "gt", "union"] = option("pred", "cells where the offsets are trained (Omega)")


@dataclass
class HeatmapMSEOptions(Options):
    """The `loss` section for `name: heatmap_mse` (the baselines)."""

    name: str = "heatmap_mse"
    w_h: float = option(0.5, f"{W_H_HELP} (HRNet's 0.5)", check=">= 0")


def _stages(output: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return list(output) if isinstance(output, (list, tuple)) else [output]


def _split_composite(out: torch.Tensor, targets: Targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(heatmaps, y-offsets, x-offsets) of a composite output, checked against the targets' shape; the channel layout
    is the codec's (clpose.codecs.composite.split_channels)."""
    gt = targets["heatmaps"]
    n, k, hp, wp = gt.shape
    if tuple(out.shape) != (n, 3 * k, hp, wp):
        raise ClposeError(
            f"composite output has shape {tuple(out.shape)}, expected {(n, 3 * k, hp, wp)} "
            f"for targets of shape {tuple(gt.shape)}"
        )
    return split_channels(out.float())


def weighted_heatmap_mse(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/K) sum_k MSE(H_k, H^_k), averaged over the batch; keypoints of weight 0 contribute 0 (Eq. 4)."""
    w = weights[:, :, None, None]
    return ((pred - gt) ** 2 * w).mean()


def region_smooth_l1(pred: torch.Tensor, gt: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(1/K) sum_k (1/N_Omega) sum_{p in Omega} smoothL1, averaged over the batch (Eq. 5).

    An empty region contributes 0 (never NaN, even where the prediction outside the region is not finite).
    """
    per_cell = torch.where(region, F.smooth_l1_loss(pred, gt, reduction="none"), torch.zeros_like(pred))
    count = region.sum(dim=(2, 3))
    per_keypoint = per_cell.sum(dim=(2, 3)) / count.clamp_min(1)
    return per_keypoint.mean()


class CompositeLoss(nn.Module):
    """L = w_h L_h + w_o (L_oy + L_ox) (Eq. 6).

    Args:
        w_h: weight of the heatmap MSE.
        w_o: weight of the offset terms.
        tau: threshold of the region Omega.
        region: "pred" (the paper: predicted heatmap >= tau), "gt" (target heatmap >= tau) or "union".
    """

    def __init__(
        self,
        w_h: float = CompositeLossOptions.w_h,
        w_o: float = CompositeLossOptions.w_o,
        tau: float = CompositeOptions.tau,
        region: str = CompositeLossOptions.region,
    ) -> None:
        super().__init__()
        if region not in ("pred", "gt", "union"):
            raise ClposeError(f"loss region must be pred, gt or union, got {region!r}")
        self.w_h, self.w_o, self.tau, self.region = w_h, w_o, tau, region

    def forward(self, output: torch.Tensor | list[torch.Tensor], targets: Targets) -> dict[str, torch.Tensor]:
        gt_h, weights = targets["heatmaps"], targets["keypoint_weights"]
        gt_oy, gt_ox = split_offsets(targets["offsets"])
        parts = {"heatmap": 0.0, "offset_y": 0.0, "offset_x": 0.0}
        for out in _stages(output):
            pred_h, pred_oy, pred_ox = _split_composite(out, targets)
            with torch.no_grad():
                if self.region == "gt":
                    omega = gt_h >= self.tau
                elif self.region == "pred":
                    omega = pred_h >= self.tau
                else:
                    omega = (gt_h >= self.tau) | (pred_h >= self.tau)
                omega = omega & (weights[:, :, None, None] > 0)
            parts["heatmap"] = parts["heatmap"] + weighted_heatmap_mse(pred_h, gt_h, weights)
            parts["offset_y"] = parts["offset_y"] + region_smooth_l1(pred_oy, gt_oy, omega)
            parts["offset_x"] = parts["offset_x"] + region_smooth_l1(pred_ox, gt_ox, omega)
        total = self.w_h * parts["heatmap"] + self.w_o * (parts["offset_y"] + parts["offset_x"])
        return {"loss": total, **parts}


class PeakMSELoss(nn.Module):
    """Ablation 1 of section 4.3: the same heatmap MSE, offsets trained with MSE at the target's peak cell."""

    def __init__(self, w_h: float = OffsetLossOptions.w_h, w_o: float = OffsetLossOptions.w_o) -> None:
        super().__init__()
        self.w_h, self.w_o = w_h, w_o

    def forward(self, output: torch.Tensor | list[torch.Tensor], targets: Targets) -> dict[str, torch.Tensor]:
        gt_h, weights = targets["heatmaps"], targets["keypoint_weights"]
        n, k = gt_h.shape[:2]
        peak = gt_h.reshape(n, k, -1).argmax(-1, keepdim=True)
        gt_y, gt_x = (o.reshape(n, k, -1).gather(-1, peak).squeeze(-1) for o in split_offsets(targets["offsets"]))
        parts = {"heatmap": 0.0, "offset_y": 0.0, "offset_x": 0.0}
        for out in _stages(output):
            pred_h, pred_oy, pred_ox = _split_composite(out, targets)
            y = pred_oy.reshape(n, k, -1).gather(-1, peak).squeeze(-1)
            x = pred_ox.reshape(n, k, -1).gather(-1, peak).squeeze(-1)
            parts["heatmap"] = parts["heatmap"] + weighted_heatmap_mse(pred_h, gt_h, weights)
            parts["offset_y"] = parts["offset_y"] + ((y - gt_y) ** 2 * weights).mean()
            parts["offset_x"] = parts["offset_x"] + ((x - gt_x) ** 2 * weights).mean()
        total = self.w_h * parts["heatmap"] + self.w_o * (parts["offset_y"] + parts["offset_x"])
        return {"loss": total, **parts}


class GRMILoss(nn.Module):
    """Ablation 2 of section 4.3 (G-RMI, Papandreou et al.): binary disk classification with BCE on the
    heatmap logits, offsets trained with smooth-L1 at the positive (in-disk) cells. Needs codec target "disk"."""

    def __init__(self, w_h: float = OffsetLossOptions.w_h, w_o: float = OffsetLossOptions.w_o) -> None:
        super().__init__()
        self.w_h, self.w_o = w_h, w_o

    def forward(self, output: torch.Tensor | list[torch.Tensor], targets: Targets) -> dict[str, torch.Tensor]:
        gt_h, weights = targets["heatmaps"], targets["keypoint_weights"]
        gt_oy, gt_ox = split_offsets(targets["offsets"])
        positive = (gt_h > 0.5) & (weights[:, :, None, None] > 0)
        parts = {"heatmap": 0.0, "offset_y": 0.0, "offset_x": 0.0}
        for out in _stages(output):
            logits, pred_oy, pred_ox = _split_composite(out, targets)
            bce = F.binary_cross_entropy_with_logits(logits, gt_h, reduction="none")
            parts["heatmap"] = parts["heatmap"] + (bce * weights[:, :, None, None]).mean()
            parts["offset_y"] = parts["offset_y"] + region_smooth_l1(pred_oy, gt_oy, positive)
            parts["offset_x"] = parts["offset_x"] + region_smooth_l1(pred_ox, gt_ox, positive)
        total = self.w_h * parts["heatmap"] + self.w_o * (parts["offset_y"] + parts["offset_x"])
        return {"loss": total, **parts}


class HeatmapMSELoss(nn.Module):
    """The baselines' loss: w_h x (1/K) sum_k MSE over Gaussian heatmaps (w_h = 0.5 is HRNet's factor)."""

    def __init__(self, w_h: float = HeatmapMSEOptions.w_h) -> None:
        super().__init__()
        self.w_h = w_h

    def forward(self, output: torch.Tensor | list[torch.Tensor], targets: Targets) -> dict[str, torch.Tensor]:
        gt_h, weights = targets["heatmaps"], targets["keypoint_weights"]
        total_mse: torch.Tensor | float = 0.0
        for out in _stages(output):
            if out.shape != gt_h.shape:
                raise ClposeError(f"heatmap output has shape {tuple(out.shape)}, expected {tuple(gt_h.shape)}")
            total_mse = total_mse + weighted_heatmap_mse(out.float(), gt_h, weights)
        return {"loss": self.w_h * total_mse, "heatmap": total_mse}


@dataclass(frozen=True)
class LossPart:
    """A part of a loss's result: the option that weights it (training warns when a weighted part is exactly 0 for a
    whole epoch: it trained nothing; "" for an unweighted part) and its colour in curves.png (BGR, as OpenCV draws)."""

    weight: str = ""
    color: tuple[int, int, int] = (120, 120, 120)


@dataclass(frozen=True)
class LossEntry:
    """A registered loss: everything clpose needs to know about it.

    Attributes:
        options: its recipe section's class (an `Options` dataclass); a recipe with this `loss.name` holds exactly
            these keys.
        build: (those options, the codec) -> the loss module, whose forward takes the network output and the
            batched targets and returns {"loss": total, part: value, ...}.
        codecs: the codecs whose targets it trains on (recipe validation refuses another pairing).
        parts: each part its forward returns besides "loss" (logged per epoch, drawn in curves.png, weighted parts
            watched by the health warnings).
        predicted_region: whether these options train the offsets only where the network's own heatmap reaches the
            codec's tau (none do from random weights: the health warnings name it and the settings that learned).
        check: a further rule on the recipe, returning what is wrong or None.
    """

    options: type[Options]
    build: Callable[[Any, Codec], nn.Module]
    codecs: tuple[str, ...]
    parts: dict[str, LossPart] = field(default_factory=dict)
    predicted_region: Callable[[Any], bool] = lambda options: False
    check: Callable[[Any], str | None] | None = None


def _composite(cfg: CompositeLossOptions, codec: Codec) -> nn.Module:
    if codec.tau is None:
        raise ClposeError("loss.name composite needs a codec with an activation threshold: codec.name composite")
    return CompositeLoss(cfg.w_h, cfg.w_o, codec.tau, cfg.region)


_HEATMAP = LossPart("w_h", (60, 160, 60))
_PARTS = {"heatmap": _HEATMAP, "offset_y": LossPart("w_o", (40, 120, 230)), "offset_x": LossPart("w_o", (170, 60, 200))}
LOSSES: dict[str, LossEntry] = {
    "composite": LossEntry(
        CompositeLossOptions, _composite, ("composite",), _PARTS, lambda options: options.region == "pred"
    ),
    "peak_mse": LossEntry(OffsetLossOptions, lambda cfg, codec: PeakMSELoss(cfg.w_h, cfg.w_o), ("composite",), _PARTS),
    "grmi": LossEntry(OffsetLossOptions, lambda cfg, codec: GRMILoss(cfg.w_h, cfg.w_o), ("composite",), _PARTS),
    "heatmap_mse": LossEntry(
        HeatmapMSEOptions, lambda cfg, codec: HeatmapMSELoss(cfg.w_h), ("heatmap",), {"heatmap": _HEATMAP}
    ),
}


def get_loss(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ClposeError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name]


def build_loss(cfg: Options, codec: Codec) -> nn.Module:
    """The recipe's loss (its `loss` section) for the codec it trains: the loss reads what it needs from the codec
    (the composite loss its tau), so training and decoding share one threshold."""
    return get_loss(cfg.name).build(cfg, codec)
