"""Gaussian heatmap codec of SimpleBaseline / HRNet (the baselines), with optional DARK.

Heatmap coordinates follow those code bases: a crop pixel x maps to heatmap coordinate u = x / S (no
half-pixel shift). Encoding puts the Gaussian (sigma in heatmap pixels) at round(u) (or at u exactly with
`dark=True`, the unbiased encoding). Decoding: arg-max, then a quarter heatmap pixel towards the higher
neighbour in x and y; or with `dark=True` one Newton step on the log of the blurred heatmap (Zhang et al.,
Distribution-Aware coordinate Representation, CVPR 2020). The round trip is not exact (quantisation):
benchmarks/bench_codec.py measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clpose.codecs.base import check_heatmaps, check_keypoints, check_size
from clpose.config import Options, option
from clpose.errors import ClposeError


@dataclass
class HeatmapOptions(Options):
    """The recipe's `codec` section for `name: heatmap` (each default written here once)."""

    name: str = "heatmap"
    sigma: float = option(2.0, "Gaussian sigma in heatmap px (SimpleBaseline's and HRNet's 2)", check="> 0")
    dark: bool = option(False, "unbiased encoding and DARK decoding")


class HeatmapCodec:
    """Dense Gaussian heatmaps at stride S.

    Args:
        input_hw: crop size (H, W).
        stride: heatmap stride S (4 for SimpleBaseline and the stacked hourglass).
        sigma: Gaussian sigma in heatmap pixels.
        dark: unbiased encoding and DARK decoding.
    """

    def __init__(
        self,
        input_hw: tuple[int, int],
        stride: int = 4,
        sigma: float = HeatmapOptions.sigma,
        dark: bool = HeatmapOptions.dark,
    ) -> None:
        self.input_hw = check_size(input_hw, stride)
        self.stride = int(stride)
        if not sigma > 0:
            raise ClposeError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)
        self.dark = bool(dark)
        h, w = self.input_hw
        self.heatmap_hw = (h // self.stride, w // self.stride)  # (H', W')

    tau = None  # no activation threshold: the loss is a plain MSE

    @property
    def channels_per_keypoint(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"HeatmapCodec(input_hw={self.input_hw}, stride={self.stride}, sigma={self.sigma}, dark={self.dark})"

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
        """Targets for one person: heatmaps (K, H', W') and keypoint_weights (K,).

        The rule of HRNet's `JointsDataset.generate_target` (leoxiaobin/deep-high-resolution-net.pytorch,
        lib/dataset/JointsDataset.py at commit 2ad80f22b5b37fb296152bf5f6341885e8d9087c, lines 233-289):
        tmp_size = 3 sigma, mu_x = int(x / stride + 0.5) (Python's int(): truncation towards zero, so
        x / stride in (-1.5, -0.5) gives 0, not -1), ul = int(mu - tmp_size), br = int(mu + tmp_size + 1),
        and the weight is 0 only when `ul[0] >= W' or ul[1] >= H' or br[0] < 0 or br[1] < 0`: a keypoint
        outside the crop whose 3-sigma window still reaches the heatmap keeps weight 1 and the part of its
        Gaussian inside the map (which may be no cell at all: at mu_x = -7 for sigma 2, br[0] = 0, weight 1,
        a zero map, as there). The Gaussian is HRNet's window too: the cells within 3 sigma of mu on each
        axis (2 tmp_size + 1 of them for an integer sigma), cut at the map's border. Unlabelled and non-finite
        keypoints get weight 0 and a zero map.

        With `dark=True` mu is not rounded (x / stride exactly, the unbiased encoding): the same window rule
        is applied to the unrounded mu (a clpose choice, not HRNet's code, which has no DARK encoding).
        """
        kpts, vis = check_keypoints(keypoints, visible)
        heatmaps, weights = self._gaussians(np, kpts, vis, np.arange)
        return {"heatmaps": heatmaps.astype(np.float32), "keypoint_weights": weights.astype(np.float32)}

    def encode_batch(self, keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
        """`encode` for a batch on the tensors' device: (B, K, 2) keypoints and (B, K) labelled flags -> float32
        targets with a leading batch axis, bit-identical to `encode` (Codec.encode_batch says why two forms)."""
        kpts = keypoints.to(torch.float64)
        arange = lambda n: torch.arange(n, dtype=torch.float64, device=kpts.device)  # noqa: E731
        heatmaps, weights = self._gaussians(torch, kpts, visible > 0, arange)
        return {"heatmaps": heatmaps.to(torch.float32), "keypoint_weights": weights.to(torch.float32)}

    def _gaussians(self, xp: Any, kpts: Any, labelled: Any, arange: Any) -> tuple[Any, Any]:
        """The rule of `encode` for (..., K, 2) float64 keypoints and (..., K) labelled flags, written once for
        NumPy (`encode`, in the workers) and torch (`encode_batch`, on the device): `xp` is the array module and
        `arange(n)` its float64 0..n-1. Returns the float64 maps (..., K, H', W') and the boolean weights."""
        finite = xp.isfinite(kpts).all(-1)
        x = xp.where(finite, kpts[..., 0], 0.0)
        y = xp.where(finite, kpts[..., 1], 0.0)
        mu_x, mu_y = x / self.stride, y / self.stride
        if not self.dark:
            mu_x, mu_y = xp.trunc(mu_x + 0.5), xp.trunc(mu_y + 0.5)  # int(joints / feat_stride + 0.5)
        radius = 3 * self.sigma  # tmp_size
        hp, wp = self.heatmap_hw
        ul_x, ul_y = xp.trunc(mu_x - radius), xp.trunc(mu_y - radius)
        br_x, br_y = xp.trunc(mu_x + radius + 1), xp.trunc(mu_y + radius + 1)
        outside = (ul_x >= wp) | (ul_y >= hp) | (br_x < 0) | (br_y < 0)
        weights = labelled & finite & ~outside
        dx = arange(wp) - mu_x[..., None]
        dy = arange(hp) - mu_y[..., None]
        gx = xp.exp(-(dx**2) / (2 * self.sigma**2)) * (abs(dx) <= radius)
        gy = xp.exp(-(dy**2) / (2 * self.sigma**2)) * (abs(dy) <= radius)
        return gy[..., :, None] * gx[..., None, :] * weights[..., None, None], weights

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor]:
        if output.ndim != 4:
            raise ClposeError(f"heatmap output must be (N, K, H', W'), got {tuple(output.shape)}")
        return (output,)

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps (N, K, H', W') -> keypoints (N, K, 2) (x, y) in crop pixels, scores (N, K) (peak value)."""
        n, k, _, wp = check_heatmaps(heatmaps, self.heatmap_hw, "this codec")
        hm = heatmaps.float()
        scores, idx = hm.reshape(n, k, -1).max(-1)
        px = (idx % wp).float()
        py = torch.div(idx, wp, rounding_mode="floor").float()
        if self.dark:
            dx, dy = self._dark_shift(hm, idx)
        else:
            dx, dy = self._quarter_shift(hm, idx)
        return torch.stack([(px + dx) * self.stride, (py + dy) * self.stride], dim=-1), scores

    def decode_output(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(output)

    def decision_margin(self, output: torch.Tensor) -> torch.Tensor:
        """The gap between the two highest cells (which is the arg-max) and, without DARK, the differences of the
        arg-max's neighbours whose sign picks the quarter-cell shift."""
        hm = output.float()
        flat = hm.flatten(2)
        top2 = flat.topk(min(2, flat.shape[-1]), dim=-1).values
        margin = top2[..., 0] - top2[..., -1] if top2.shape[-1] == 2 else torch.full_like(top2[..., 0], math.inf)
        if not self.dark:
            left, right, up, down = self._neighbours(hm, flat.argmax(-1), 1, [(0, -1), (0, 1), (-1, 0), (1, 0)])
            margin = torch.minimum(margin, torch.minimum((right - left).abs(), (down - up).abs()))
        return margin

    def decode_targets(self, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one sample's targets ("heatmaps" (K, H', W'))."""
        return self.decode(targets["heatmaps"][None])

    def target_map(self, targets: dict[str, torch.Tensor], k: int) -> np.ndarray:
        return targets["heatmaps"][k].numpy()

    def votes(self, targets: dict[str, torch.Tensor], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return []  # one Gaussian per keypoint: no cell points anywhere

    @staticmethod
    def _neighbours(maps: torch.Tensor, idx: torch.Tensor, pad: int, offsets: list[tuple[int, int]]) -> list:
        """Values at arg-max + (dy, dx) for each offset, reading a replicate-padded copy of the maps."""
        n, k, hp, wp = maps.shape
        padded = F.pad(maps.reshape(n * k, 1, hp, wp), (pad, pad, pad, pad), mode="replicate")
        flat = padded.reshape(n, k, -1)
        row = torch.div(idx, wp, rounding_mode="floor") + pad
        col = idx % wp + pad
        width = wp + 2 * pad
        return [flat.gather(-1, ((row + dy) * width + col + dx)[..., None]).squeeze(-1) for dy, dx in offsets]

    def _quarter_shift(self, hm: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A quarter pixel towards the higher neighbour, where 1 < x < W'-1 and 1 < y < H'-1 (as HRNet)."""
        _, _, hp, wp = hm.shape
        left, right, up, down = self._neighbours(hm, idx, 1, [(0, -1), (0, 1), (-1, 0), (1, 0)])
        px, py = idx % wp, torch.div(idx, wp, rounding_mode="floor")
        inner = (px > 1) & (px < wp - 1) & (py > 1) & (py < hp - 1)
        dx = torch.sign(right - left) * 0.25 * inner
        dy = torch.sign(down - up) * 0.25 * inner
        return dx, dy

    def _dark_shift(self, hm: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DARK: blur (keeping each map's peak), log, one Newton step x -= H^-1 grad at the arg-max."""
        n, k, hp, wp = hm.shape
        size = round(4 * self.sigma + 3) | 1  # 11 for sigma 2, as in the reference implementation
        ax = torch.arange(size, device=hm.device, dtype=torch.float32) - size // 2
        g = torch.exp(-(ax**2) / (2 * self.sigma**2))
        g = g / g.sum()
        flat = hm.reshape(n * k, 1, hp, wp)
        blurred = F.conv2d(
            F.conv2d(flat, g.view(1, 1, 1, -1), padding=(0, size // 2)), g.view(1, 1, -1, 1), padding=(size // 2, 0)
        ).reshape(n, k, hp, wp)
        peak_before = hm.amax(dim=(2, 3), keepdim=True)
        peak_after = blurred.amax(dim=(2, 3), keepdim=True).clamp_min(1e-10)
        logs = torch.log((blurred * peak_before / peak_after).clamp_min(1e-10))
        # fmt: off
        offs = [(0, 0), (0, 1), (0, -1), (0, 2), (0, -2), (1, 0), (-1, 0), (2, 0), (-2, 0),
                (1, 1), (-1, -1), (-1, 1), (1, -1)]
        # fmt: on
        c, xp1, xm1, xp2, xm2, yp1, ym1, yp2, ym2, pp, mm, mp, pm = self._neighbours(logs, idx, 2, offs)
        gx = 0.5 * (xp1 - xm1)
        gy = 0.5 * (yp1 - ym1)
        hxx = 0.25 * (xp2 - 2 * c + xm2)
        hyy = 0.25 * (yp2 - 2 * c + ym2)
        hxy = 0.25 * (pp - pm - mp + mm)
        det = hxx * hyy - hxy * hxy
        px, py = idx % wp, torch.div(idx, wp, rounding_mode="floor")
        inner = (px > 1) & (px < wp - 2) & (py > 1) & (py < hp - 2)  # the reference skips the border
        ok = (det.abs() > 1e-12) & inner
        safe = torch.where(ok, det, torch.ones_like(det))
        dx = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
        dy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
        return dx, dy

    def flip_back(self, output: torch.Tensor, flip_index: list[int]) -> torch.Tensor:
        """Mirror the maps of a flipped crop, swap flip pairs, and shift one column right (the usual alignment
        of the reference implementations for x' = W - 1 - x with u = x / S)."""
        if output.ndim != 4 or output.shape[1] != len(flip_index):
            raise ClposeError(f"flip_back needs (N, {len(flip_index)}, H', W'), got {tuple(output.shape)}")
        back = output.flip(-1)[:, torch.as_tensor(flip_index, device=output.device)]
        shifted = back.clone()
        shifted[..., 1:] = back[..., :-1]
        return shifted
