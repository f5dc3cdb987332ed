"""Stacked hourglass (Newell et al., ECCV 2016) and CLNet-Hourglass (paper Fig. 2(b)).

Both use the pre-activation residual module, a stride-4 stem and hourglasses of depth 4 with 256 features.
The baseline predicts K Gaussian heatmaps at stride 4 after every stack. CLNet-Hourglass predicts 3K composite
maps at stride 16 after every stack: its head (three convolutions) reads the hourglass's up-path where it
reaches stride 16, so the last two up-sampling steps are not used for predictions, and in the final stack,
where no later stack needs them, they are removed. Every stage's output is returned (intermediate
supervision; the paper's Fig. 4 evaluates each stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clpose.config import Options, option
from clpose.models.clnet import init_prediction_conv


@dataclass
class HourglassOptions(Options):
    """The recipe's `model` section of a stacked hourglass."""

    stacks: int | None = option(8, "number of hourglass stacks (null: the default)", check=">= 1")


class Residual(nn.Module):
    """Pre-activation bottleneck residual module: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (cout/2 middle)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of `depth` levels, written as loops rather than recursion so its up-path can stop early.

    Level l has resolution input / 2^l. `top` is the highest level the up-path rebuilds (0 = the input
    resolution, as Newell's; 2 = stride x4 coarser, used by CLNet-Hourglass's final stack). forward returns
    the up-path output at every level from `top` to `depth - 1`, as a dict {level: tensor}.
    """

    def __init__(self, depth: int, features: int, top: int = 0) -> None:
        super().__init__()
        self.depth, self.top = depth, top
        self.skips = nn.ModuleList(Residual(features, features) for _ in range(depth))
        self.downs = nn.ModuleList(Residual(features, features) for _ in range(depth))
        self.bottom = Residual(features, features)
        self.ups = nn.ModuleList(Residual(features, features) for _ in range(depth))
        for level in range(top):  # levels above `top` are never rebuilt: drop their skip and up modules
            self.skips[level] = nn.Identity()
            self.ups[level] = nn.Identity()

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        skips: list[torch.Tensor | None] = []
        for level in range(self.depth):
            skips.append(self.skips[level](x) if level >= self.top else None)
            x = self.downs[level](F.max_pool2d(x, 2))
        x = self.bottom(x)
        outputs = {}
        for level in reversed(range(self.top, self.depth)):
            x = skips[level] + F.interpolate(self.ups[level](x), scale_factor=2.0, mode="nearest")
            outputs[level] = x
        return outputs


def _stem(features: int) -> nn.Sequential:
    """7x7 stride-2 conv, residual, max-pool, two residuals: stride 4, `features` channels."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        Residual(64, 128),
        nn.MaxPool2d(2),
        Residual(128, 128),
        Residual(128, features),
    )


def _composite_head(features: int, num_keypoints: int) -> nn.Sequential:
    """The CL head of each stage: three convolutions in series, the last producing 3K maps."""
    return nn.Sequential(
        nn.Conv2d(features, features, 3, padding=1),
        nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
        nn.Conv2d(features, features, 3, padding=1),
        nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
        nn.Conv2d(features, 3 * num_keypoints, 1),
    )


def _lin(features: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(features, features, 1), nn.BatchNorm2d(features), nn.ReLU(inplace=True))


class StackedHourglass(nn.Module):
    """The original stacked hourglass. forward: (N, 3, H, W) -> list of `stacks` heatmaps (N, K, H/4, W/4)."""

    def __init__(
        self,
        num_keypoints: int,
        stacks: int = HourglassOptions.stacks,  # type: ignore[assignment]
        features: int = 256,
        depth: int = 4,
    ) -> None:
        super().__init__()
        self.num_keypoints, self.num_stages = num_keypoints, stacks
        self.stem = _stem(features)
        self.hourglasses = nn.ModuleList(Hourglass(depth, features) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(features, features), _lin(features)) for _ in range(stacks)
        )
        self.predict = nn.ModuleList(nn.Conv2d(features, num_keypoints, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
        self.merge_predictions = nn.ModuleList(nn.Conv2d(num_keypoints, features, 1) for _ in range(stacks - 1))
        for conv in self.predict:
            init_prediction_conv(conv)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for i, hourglass in enumerate(self.hourglasses):
            y = self.features[i](hourglass(x)[0])
            pred = self.predict[i](y)
            outputs.append(pred)
            if i < self.num_stages - 1:
                x = x + self.merge_features[i](y) + self.merge_predictions[i](pred)
        return outputs


class CLNetHourglass(nn.Module):
    """CLNet-Hourglass. forward: (N, 3, H, W) -> list of `stacks` composite maps (N, 3K, H/16, W/16)."""

    def __init__(
        self,
        num_keypoints: int,
        stacks: int = HourglassOptions.stacks,  # type: ignore[assignment]
        features: int = 256,
        depth: int = 4,
    ) -> None:
        super().__init__()
        self.num_keypoints, self.num_stages = num_keypoints, stacks
        self.level = 2  # stride 4 * 2^2 = 16
        self.stem = _stem(features)
        self.hourglasses = nn.ModuleList(
            Hourglass(depth, features, top=self.level if i == stacks - 1 else 0) for i in range(stacks)
        )
        self.heads = nn.ModuleList(_composite_head(features, num_keypoints) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(features, features), _lin(features)) for _ in range(stacks - 1)
        )
        self.merge_features = nn.ModuleList(nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
        self.merge_predictions = nn.ModuleList(nn.Conv2d(3 * num_keypoints, features, 1) for _ in range(stacks - 1))
        for head in self.heads:
            init_prediction_conv(head[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for i, hourglass in enumerate(self.hourglasses):
            levels = hourglass(x)
            pred = self.heads[i](levels[self.level])
            outputs.append(pred)
            if i < self.num_stages - 1:
                y = self.features[i](levels[0])
                back = F.interpolate(self.merge_predictions[i](pred), scale_factor=4.0, mode="nearest")
                x = x + self.merge_features[i](y) + back
        return outputs
