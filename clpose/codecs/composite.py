"""Composite localization (paper section 3): a sparse heatmap finds the cell, two offset maps the position.

Conventions (docs/method.md derives them):
- Crop coordinates are OpenCV pixel coordinates: pixel (x, y) has its centre at integer (x, y); the crop
  spans [0, W) x [0, H) for the purpose of "inside the crop".
- The map is W' x H' with W' = floor(W / S), H' = floor(H / S). Cell (i, j) (row i, column j) has the centre
  t = ((j + 0.5) S, (i + 0.5) S), the paper's Eq. 2 with 0-based indices.
- Heatmap (Eq. 1): H_k(i, j) = exp(-|t(i, j) - g_k|^2 / (2 sigma^2)), sigma in input pixels.
- Offsets (Eq. 3), in units of S, defined at every cell: O_k = (g_y - t_y) / S (channels 0..K-1),
  O_{K+k} = (g_x - t_x) / S (channels K..2K-1).
- Network output layout: 3K channels = [K heatmaps, K y-offsets, K x-offsets].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from clpose.codecs.base import check_heatmaps, check_keypoints, check_size
from clpose.config import Options, option
from clpose.errors import ClposeError


@dataclass
class CompositeOptions(Options):
    """The recipe's `codec` section for `name: composite` (each default written here once)."""

    name: str = "composite"
    sigma: float = option(16.0, "Gaussian sigma in input px (the paper's 16 at stride 16)", check="> 0")
    tau: float = option(0.6, "activation threshold of the regression region and of decoding", check="(0, 1)")
    target: Literal["gaussian", "disk"] = option("gaussian", "heatmap target; disk goes with the grmi loss")
    disk_radius: float | None = option(
        None, "disk target radius in input px (default: the Gaussian's tau radius)", check="> 0"
    )
    decode: Literal["weighted", "peak"] = option(
        "weighted",
        "weighted (section 3.4: activation-weighted votes of every cell >= tau) or peak (the arg-max cell's centre "
        "plus its offset; for losses that train offsets only at the peak)",
    )
    sigma_rule: Literal["fixed", "stride"] = option(
        "fixed",
        "fixed (sigma as given at every stride, the paper's 16 px) or stride (sigma x S / 16: the same Gaussian in "
        "cells at every stride; the paper does not say which its Table 5 used)",
    )


def split_channels(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The composite output layout, (N, 3K, H', W') = [K heatmaps, K y-offsets, K x-offsets] -> the three (N, K, H',
    W') parts. The one place that knows the layout: the codec's decode and the losses both split through here."""
    if output.ndim != 4 or output.shape[1] % 3:
        raise ClposeError(f"composite output must be (N, 3K, H', W'), got {tuple(output.shape)}")
    k = output.shape[1] // 3
    return output[:, :k], output[:, k : 2 * k], output[:, 2 * k :]


def join_channels(heatmaps: torch.Tensor, offsets_y: torch.Tensor, offsets_x: torch.Tensor) -> torch.Tensor:
    """Three (N, K, H', W') parts -> the (N, 3K, H', W') output layout `split_channels` reads."""
    return torch.cat([heatmaps, offsets_y, offsets_x], dim=1)


def split_offsets(offsets: torch.Tensor | np.ndarray) -> tuple[torch.Tensor | np.ndarray, ...]:
    """The offsets target's layout, (..., 2K, H', W') = [K y-offsets, K x-offsets] -> (y, x), each (..., K, H', W').
    The one place that knows the order: the encoders build it with `join_offsets`, the decode and losses read it
    here."""
    k = offsets.shape[-3] // 2
    return offsets[..., :k, :, :], offsets[..., k:, :, :]


def join_offsets(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(..., K, H', W') y- and x-offsets -> the (..., 2K, H', W') target `split_offsets` reads."""
    return torch.cat([y, x], dim=-3)


class CompositeCodec:
    """Encode keypoints into sparse heatmaps + short-distance offsets, and decode them back.

    Args:
        input_hw: crop size (H, W) in pixels.
        stride: down-sampling stride S of the maps.
        sigma: Gaussian sigma of the sparse heatmap, in input pixels.
        tau: activation threshold: cells >= tau form the regression region and vote in decoding.
        target: "gaussian" (the paper) or "disk" (binary disk, for the G-RMI ablation loss; the network's
            heatmap channels are then logits and `split` applies a sigmoid).
        disk_radius: radius of the disk target in input pixels; default: where the Gaussian equals tau.
        decode: "weighted" (section 3.4: the activation-weighted average of every cell >= tau) or "peak" (the
            arg-max cell's centre plus its offset: for a loss that trains offsets only at the peak cell, where the
            weighted average would mix in untrained offsets).
    """

    def __init__(
        self,
        input_hw: tuple[int, int],
        stride: int = 16,
        sigma: float = CompositeOptions.sigma,
        tau: float = CompositeOptions.tau,
        target: Literal["gaussian", "disk"] = CompositeOptions.target,
        disk_radius: float | None = CompositeOptions.disk_radius,
        decode: Literal["weighted", "peak"] = CompositeOptions.decode,
    ) -> None:
        self.input_hw = check_size(input_hw, stride)
        self.stride = int(stride)
        if not sigma > 0:
            raise ClposeError(f"sigma must be positive, got {sigma}")
        if not 0.0 < tau < 1.0:
            raise ClposeError(f"tau must be in (0, 1), got {tau}")
        if target not in ("gaussian", "disk"):
            raise ClposeError(f"target must be 'gaussian' or 'disk', got {target!r}")
        if decode not in ("weighted", "peak"):
            raise ClposeError(f"decode must be 'weighted' or 'peak', got {decode!r}")
        self.decode_mode = decode
        self.sigma = float(sigma)
        self.tau = float(tau)
        self.target = target
        self.disk_radius = float(disk_radius) if disk_radius else sigma * math.sqrt(-2.0 * math.log(tau))
        # the largest float32 below tau: F.threshold keeps v > it, which is v >= tau for float32 activations
        self._below_tau = float(np.nextafter(np.float32(tau), np.float32(-1.0)))
        h, w = self.input_hw
        self.heatmap_hw = (h // self.stride, w // self.stride)  # (H', W')
        self._cy = (np.arange(self.heatmap_hw[0]) + 0.5) * self.stride  # cell centres, crop pixels
        self._cx = (np.arange(self.heatmap_hw[1]) + 0.5) * self.stride

    @property
    def channels_per_keypoint(self) -> int:
        return 3

    def __repr__(self) -> str:
        return (
            f"CompositeCodec(input_hw={self.input_hw}, stride={self.stride}, sigma={self.sigma}, "
            f"tau={self.tau}, target={self.target!r}, decode={self.decode_mode!r})"
        )

    # ---------------------------------------------------------------------------------------------- encode

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
        """Targets for one person.

        Args:
            keypoints: (K, 2) float (x, y) in crop pixels.
            visible: (K,) labelled flags (> 0 = labelled).

        Returns:
            heatmaps (K, H', W'), offsets (2K, H', W') [y-offsets then x-offsets, units of S] and
            keypoint_weights (K,): 0 for unlabelled, non-finite or outside-the-crop keypoints, whose maps are 0.
        """
        kpts, vis = check_keypoints(keypoints, visible)
        h, w = self.input_hw
        finite = np.isfinite(kpts).all(axis=1)
        x = np.where(finite, kpts[:, 0], 0.0)
        y = np.where(finite, kpts[:, 1], 0.0)
        weights = (vis & finite & (x >= 0) & (x < w) & (y >= 0) & (y < h)).astype(np.float32)

        dx = self._cx[None, :] - x[:, None]  # (K, W')
        dy = self._cy[None, :] - y[:, None]  # (K, H')
        if self.target == "gaussian":  # separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dy^2/2s^2) exp(-dx^2/2s^2)
            gx = np.exp(-(dx**2) / (2 * self.sigma**2))
            gy = np.exp(-(dy**2) / (2 * self.sigma**2))
            heatmaps = gy[:, :, None] * gx[:, None, :]
        else:
            heatmaps = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= self.disk_radius**2).astype(np.float64)
        heatmaps *= weights[:, None, None]

        k = kpts.shape[0]
        hp, wp = self.heatmap_hw
        offsets = np.empty((2 * k, hp, wp), dtype=np.float32)
        offsets_y, offsets_x = split_offsets(offsets)  # views: filled in place
        offsets_y[:] = (-dy / self.stride)[:, :, None] * weights[:, None, None]
        offsets_x[:] = (-dx / self.stride)[:, None, :] * weights[:, None, None]
        return {"heatmaps": heatmaps.astype(np.float32), "offsets": offsets, "keypoint_weights": weights}

    def encode_batch(self, keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
        """`encode` for a batch on the tensors' device (the GPU pipeline encodes there): (B, K, 2) keypoints and
        (B, K) labelled flags -> float32 targets with a leading batch axis, bit-identical to `encode` (the same
        float64 arithmetic; Codec.encode_batch says why there are two forms)."""
        kpts = keypoints.to(torch.float64)
        finite = torch.isfinite(kpts).all(dim=-1)
        x = torch.where(finite, kpts[..., 0], 0.0)
        y = torch.where(finite, kpts[..., 1], 0.0)
        h, w = self.input_hw
        weights = (visible > 0) & finite & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        weights = weights.to(torch.float64)
        hp, wp = self.heatmap_hw
        cx = (torch.arange(wp, dtype=torch.float64, device=kpts.device) + 0.5) * self.stride
        cy = (torch.arange(hp, dtype=torch.float64, device=kpts.device) + 0.5) * self.stride
        dx = cx - x[..., None]  # (B, K, W')
        dy = cy - y[..., None]  # (B, K, H')
        if self.target == "gaussian":  # separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dy^2/2s^2) exp(-dx^2/2s^2)
            gx = torch.exp(-(dx**2) / (2 * self.sigma**2))
            gy = torch.exp(-(dy**2) / (2 * self.sigma**2))
            heatmaps = gy[..., :, None] * gx[..., None, :]
        else:
            heatmaps = (dy[..., :, None] ** 2 + dx[..., None, :] ** 2 <= self.disk_radius**2).to(torch.float64)
        heatmaps = heatmaps * weights[..., None, None]
        w4 = weights[..., None, None]
        offsets_y = (-dy / self.stride)[..., :, None].expand(*dy.shape[:-1], hp, wp) * w4
        offsets_x = (-dx / self.stride)[..., None, :].expand(*dx.shape[:-1], hp, wp) * w4
        return {
            "heatmaps": heatmaps.to(torch.float32),
            "offsets": join_offsets(offsets_y, offsets_x).to(torch.float32),
            "keypoint_weights": weights.to(torch.float32),
        }

    # ---------------------------------------------------------------------------------------------- decode

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split a network output (N, 3K, H', W') into heatmaps (N, K, H', W') and offsets (N, 2K, H', W')."""
        heatmaps, _, _ = split_channels(output)
        if self.target == "disk":
            heatmaps = heatmaps.sigmoid()
        return heatmaps, output[:, heatmaps.shape[1] :]  # the offsets target's layout: split_offsets reads both

    def decode(self, heatmaps: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The three steps of section 3.4, batched, on the tensors' device.

        1. cells with activation >= tau; 2. each cell's centre plus its offset x S; 3. the average weighted by
        activation. Where no cell reaches tau, the arg-max cell alone is used; with decode "peak" it always is.

        Args:
            heatmaps: (N, K, H', W').
            offsets: (N, 2K, H', W'), y-offsets then x-offsets.

        Returns:
            keypoints (N, K, 2) as (x, y) in crop pixels, scores (N, K) = the peak activation.
        """
        self._check_maps(heatmaps, offsets)
        n, k, hp, wp = heatmaps.shape
        s = float(self.stride)
        hm = heatmaps.float().reshape(n, k, hp * wp)
        off_y, off_x = (o.reshape(n, k, hp * wp) for o in split_offsets(offsets.float()))  # views, no copies
        cy = ((torch.arange(hp, device=hm.device, dtype=torch.float32) + 0.5) * s).repeat_interleave(wp)
        cx = ((torch.arange(wp, device=hm.device, dtype=torch.float32) + 0.5) * s).repeat(hp)

        scores, peak = hm.max(dim=-1)
        x_peak = cx[peak] + s * off_x.gather(-1, peak[..., None]).squeeze(-1)
        y_peak = cy[peak] + s * off_y.gather(-1, peak[..., None]).squeeze(-1)
        if self.decode_mode == "peak":
            return torch.stack([x_peak, y_peak], dim=-1), scores
        votes = F.threshold(hm, self._below_tau, 0.0)  # v if v > (the float below tau), i.e. v >= tau; else 0
        total = votes.sum(-1)
        # sum_p v_p (c_p + S o_p) = v . c + S sum_p v_p o_p: no (N, K, H'W') candidate tensor is built
        x_sum = votes @ cx + s * (votes * off_x).sum(-1)
        y_sum = votes @ cy + s * (votes * off_y).sum(-1)
        has_votes = total > 0
        denom = torch.where(has_votes, total, torch.ones_like(total))
        x = torch.where(has_votes, x_sum / denom, x_peak)
        y = torch.where(has_votes, y_sum / denom, y_peak)
        return torch.stack([x, y], dim=-1), scores

    def decode_output(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a raw network output (N, 3K, H', W')."""
        return self.decode(*self.split(output))

    def decision_margin(self, output: torch.Tensor) -> torch.Tensor:
        """The distance of the nearest cell to tau (which cells vote) and, where the arg-max cell decides (no cell
        reaches tau, or decode "peak"), the gap between the two highest cells."""
        heatmaps, _ = self.split(output)
        hm = heatmaps.float().flatten(2)
        top2 = hm.topk(min(2, hm.shape[-1]), dim=-1).values
        peak_gap = top2[..., 0] - top2[..., -1] if top2.shape[-1] == 2 else torch.full_like(top2[..., 0], math.inf)
        if self.decode_mode == "peak":
            return peak_gap
        tau_gap = (hm - self.tau).abs().amin(-1)
        voted = top2[..., 0] >= self.tau
        return torch.where(voted, tau_gap, torch.minimum(tau_gap, peak_gap))

    def decode_targets(self, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one sample's targets ("heatmaps" (K, H', W'), "offsets" (2K, H', W'))."""
        return self.decode(targets["heatmaps"][None], targets["offsets"][None])

    def target_map(self, targets: dict[str, torch.Tensor], k: int) -> np.ndarray:
        return targets["heatmaps"][k].numpy()

    def votes(self, targets: dict[str, torch.Tensor], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(cell centre, centre + S x offset) in crop pixels of every cell of keypoint k at or above tau."""
        heat = targets["heatmaps"][k].numpy()
        off_y, off_x = split_offsets(targets["offsets"].numpy())
        s = self.stride
        out = []
        for i, j in zip(*np.nonzero(heat >= self.tau), strict=True):
            centre = np.array([(j + 0.5) * s, (i + 0.5) * s])
            out.append((centre, centre + s * np.array([off_x[k, i, j], off_y[k, i, j]])))
        return out

    def _check_maps(self, heatmaps: torch.Tensor, offsets: torch.Tensor) -> None:
        made_by = f"this codec (input {self.input_hw[0]}x{self.input_hw[1]}, stride {self.stride})"
        n, k, hp, wp = check_heatmaps(heatmaps, self.heatmap_hw, made_by)
        if tuple(offsets.shape) != (n, 2 * k, hp, wp):
            raise ClposeError(
                f"offsets must have shape {(n, 2 * k, hp, wp)} to match heatmaps "
                f"{tuple(heatmaps.shape)}, got {tuple(offsets.shape)}"
            )

    # ------------------------------------------------------------------------------------------- flip test

    def flip_back(self, output: torch.Tensor, flip_index: list[int]) -> torch.Tensor:
        """Map the output for a horizontally flipped crop back onto the original crop's grid.

        The crop flip is x' = W - 1 - x. Column j' of the flipped map becomes column W' - 1 - j', channels are
        permuted by `flip_index`, y-offsets are kept and x-offsets become (W - 1 - W'S) / S - o'. That constant
        makes every cell point at the same keypoint as before (docs/method.md); applying flip_back twice is the
        identity.

        Args:
            output: (N, 3K, H', W') network output for the flipped crops.
            flip_index: permutation of the K keypoints (Skeleton.flip_index).
        """
        k = output.shape[1] // 3
        if output.ndim != 4 or output.shape[1] != 3 * k or len(flip_index) != k:
            raise ClposeError(f"flip_back needs (N, 3K, H', W') with K = {len(flip_index)}, got {tuple(output.shape)}")
        idx = torch.as_tensor(flip_index, device=output.device)
        heat, off_y, off_x = (part[:, idx] for part in split_channels(output.flip(-1)))
        shift = (self.input_hw[1] - 1 - self.heatmap_hw[1] * self.stride) / self.stride
        return join_channels(heat, off_y, shift - off_x)
