"""SimpleBaseline (Xiao et al., ECCV 2018): ResNet + three 4x4 stride-2 deconvolutions + 1x1 conv, the
Gaussian heatmap baseline (64x48 heatmaps at 256x192)."""

from __future__ import annotations

import torch
from torch import nn

from clpose.models.backbones import ResNetTrunk, load_pretrained
from clpose.models.clnet import init_prediction_conv


class SimpleBaseline(nn.Module):
    """forward: images (N, 3, H, W) -> heatmaps (N, K, H/4, W/4)."""

    num_stages = 1

    def __init__(self, depth: int, num_keypoints: int, pretrained: str | None = None, deconv_channels: int = 256):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.trunk = ResNetTrunk(depth, num_layers=4)
        self.pretrained_weights = load_pretrained(self.trunk, pretrained) if pretrained else None
        layers: list[nn.Module] = []
        cin = self.trunk.out_channels
        for _ in range(3):
            deconv = nn.ConvTranspose2d(cin, deconv_channels, 4, stride=2, padding=1, bias=False)
            nn.init.normal_(deconv.weight, std=0.001)  # the reference initialisation
            layers += [deconv, nn.BatchNorm2d(deconv_channels), nn.ReLU(inplace=True)]
            cin = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.predict = nn.Conv2d(cin, num_keypoints, 1)
        init_prediction_conv(self.predict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.deconv(self.trunk(x)))
