"""CLNet-ResNet (paper Fig. 2(a)): ResNet stem + layer1-3 (stride 16), then a DetNet-style head; and the same
head on light torchvision trunks (CLNetLight), for CPUs.

Head: two dilated bottlenecks (dilation 2, stride 1; the first with DetNet's 1x1 projection shortcut), one
plain bottleneck, one 3x3 convolution producing 3K maps (K heatmaps, K y-offsets, K x-offsets), no activation.
The paper states that the composite head can follow any backbone; CLNetLight puts it on the stride-16 stage of
RegNetX-400MF, ShuffleNetV2 or MobileNetV3 (docs/method.md).

Stride ablation (Table 5): S=32 adds layer4 (2048 channels; the first head block projects them to 1024);
S=8 and S=4 keep the stride-16 trunk and add one or two residual up-sampling blocks before the head.
docs/method.md states the design and the measured parameter counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clpose.config import option
from clpose.errors import ClposeError
from clpose.models.backbones import LightTrunk, ResNetTrunk, TrunkOptions, load_pretrained


@dataclass
class CLNetResNetOptions(TrunkOptions):
    """The recipe's `model` section of a CLNet-ResNet."""

    stride: int | None = option(16, "output stride (null: the default)", check="{4, 8, 16, 32}")


def _conv_bn(cin: int, cout: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    pad = dilation * (kernel - 1) // 2
    return [nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (optionally dilated), 1x1 expand, plus a shortcut (DetNet blocks A and B).

    Args:
        cin, mid, cout: input, middle and output channels.
        dilation: dilation of the 3x3 convolution (stride is always 1).
        project: use a 1x1 conv + BN shortcut (DetNet block B); required when cin != cout.
    """

    def __init__(self, cin: int, mid: int, cout: int, dilation: int = 1, project: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, mid, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, mid, 3, dilation),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, cout, 1),
        )
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1)) if project or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class UpBlock(nn.Module):
    """x2 up-sampling bottleneck: 1x1 reduce, 4x4 stride-2 transposed conv, 1x1 expand; nearest-neighbour
    up-sampled shortcut, so the block starts close to an up-sampling of the trunk's features."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, channels, 1),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + F.interpolate(x, scale_factor=2.0, mode="nearest"))


def composite_head(cin: int, mid: int, width: int) -> nn.Sequential:
    """The paper's head: two dilated bottlenecks (the first projects cin -> width) and a plain one."""
    return nn.Sequential(
        Bottleneck(cin, mid, width, dilation=2, project=True),
        Bottleneck(width, mid, width, dilation=2),
        Bottleneck(width, mid, width),
    )


def init_prediction_conv(conv: nn.Conv2d) -> None:
    """Small weights and zero bias for a layer that outputs maps: predictions start near 0 (no false cells)."""
    nn.init.normal_(conv.weight, std=0.001)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class CLNetResNet(nn.Module):
    """CLNet-ResNet-{18,34,50,101,152}.

    Args:
        depth: ResNet depth.
        num_keypoints: K.
        stride: output stride S of the maps: 4, 8, 16 (the paper's CLNet) or 32.
        pretrained: the trunk's torchvision ImageNet weights: `imagenet`, a weights name or a local file.

    forward: images (N, 3, H, W) -> maps (N, 3K, H/S, W/S).
    """

    num_stages = 1

    def __init__(
        self,
        depth: int,
        num_keypoints: int,
        stride: int = CLNetResNetOptions.stride,  # type: ignore[assignment]
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if stride not in (4, 8, 16, 32):
            raise ClposeError(f"CLNet-ResNet stride must be 4, 8, 16 or 32, got {stride}")
        self.num_keypoints = num_keypoints
        self.trunk = ResNetTrunk(depth, num_layers=4 if stride == 32 else 3)
        self.pretrained_weights = load_pretrained(self.trunk, pretrained) if pretrained else None
        cin = self.trunk.out_channels
        width = cin if stride != 32 else cin // 2  # stride 32: 2048 -> 1024 in the first head block
        mid = width // 4
        steps = int(math.log2(16 // stride)) if stride < 16 else 0
        self.upsample = nn.Sequential(*[UpBlock(cin, mid) for _ in range(steps)])
        self.head = composite_head(cin, mid, width)
        self.predict = nn.Conv2d(width, 3 * num_keypoints, 3, padding=1)
        init_prediction_conv(self.predict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.head(self.upsample(self.trunk(x))))


class CLNetLight(nn.Module):
    """The CLNet head on the stride-16 stage of a light torchvision trunk (LIGHT_TRUNKS).

    The head is CLNet-ResNet-18's (width 256, bottleneck width 64) unless the trunk is wider: the light trunks
    end with 112-232 channels, and the head's first block projects them to its width as in DetNet.

    Args:
        arch: a key of clpose.models.backbones.LIGHT_TRUNKS, e.g. "regnet_x_400mf".
        num_keypoints: K.
        pretrained: that classifier's torchvision ImageNet weights: `imagenet`, a weights name or a local file.

    forward: images (N, 3, H, W) -> maps (N, 3K, H/16, W/16).
    """

    num_stages = 1

    def __init__(self, arch: str, num_keypoints: int, pretrained: str | None = None) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.trunk = LightTrunk(arch)
        self.pretrained_weights = load_pretrained(self.trunk, pretrained) if pretrained else None
        width = max(256, self.trunk.out_channels)
        self.head = composite_head(self.trunk.out_channels, width // 4, width)
        self.predict = nn.Conv2d(width, 3 * num_keypoints, 3, padding=1)
        init_prediction_conv(self.predict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.head(self.trunk(x)))
