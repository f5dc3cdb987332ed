"""Predictor: images and person boxes in, keypoints in image pixels out.

It reuses the pipeline's pieces: the box-to-crop affine (clpose.data.transforms), the normalisation of the
dataset, the codec's decode (on the model's device) and its flip-back; nothing here is a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clpose.codecs import Codec
from clpose.config import Recipe, recipe_from_dict
from clpose.data import recipe_codec
from clpose.data.dataset import normalize
from clpose.data.transforms import apply_affine, box_size, box_to_center_scale, get_affine, invert_affine, warp
from clpose.engine.checkpoint import load_checkpoint
from clpose.engine.distributed import resolve_device
from clpose.engine.eval_checkpoint import model_from_checkpoint
from clpose.errors import ClposeError
from clpose.metrics.coco import rescore
from clpose.models import final_output
from clpose.precision import Precision, resolve_precision
from clpose.skeletons import SKELETONS, Skeleton, get_skeleton


@dataclass
class Pose:
    """One person: keypoints (K, 2) in image pixels (0-based), scores (K,), box [x, y, w, h], box_score, and
    score = box_score x the mean of the keypoint scores above 0.2 (the COCO rescoring)."""

    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    box_score: float
    score: float
    track_id: int | None = None

    def to_json(self) -> dict:
        out = {
            "keypoints": np.round(self.keypoints, 2).tolist(),
            "scores": np.round(self.scores, 4).tolist(),
            "box": np.round(self.box, 2).tolist(),
            "box_score": round(float(self.box_score), 4),
            "score": round(float(self.score), 4),
        }
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


def full_image_box(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.array([0.0, 0.0, float(w), float(h)])


class Predictor:
    """Top-down pose estimation with a trained model.

    Args:
        model: the network (eval mode is set here).
        codec: the codec it was trained with (decodes on the model's device).
        skeleton: keypoint metadata (flip pairs, drawing edges).
        input_size: crop size (W, H).
        box_padding: person box enlargement, as in training.
        device: where the network runs.
        flip: average with the mirrored crop (slower, slightly more accurate).
        precision: "auto" (bf16 where the device runs it natively, fp16 on older GPUs, else fp32), "off",
            "bf16", "fp16", or a resolved Precision.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        codec: Codec,
        skeleton: Skeleton,
        input_size: tuple[int, int],
        box_padding: float = 1.25,
        device: torch.device | str = "cpu",
        flip: bool = False,
        precision: str | Precision = "auto",
        channels_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.codec, self.skeleton = codec, skeleton
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.box_padding, self.flip, self.channels_last = box_padding, flip, channels_last
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(precision, self.device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", flip: bool = False, amp: str = "auto"
    ) -> Predictor:
        """Rebuild model, codec and skeleton from a clpose checkpoint (or a run folder's best.pt).

        `amp` is resolved on this machine: the precision the model was trained in does not bind it."""
        state = load_checkpoint(path)
        recipe: Recipe = recipe_from_dict(state["recipe"], f"{path} (recipe)")
        name = state.get("skeleton") or recipe.data.dataset
        if name not in SKELETONS:
            raise ClposeError(f"checkpoint {path} was trained on skeleton {name!r}, which clpose does not know")
        skeleton = get_skeleton(name)
        if skeleton.num_keypoints != int(state["num_keypoints"]):
            raise ClposeError(
                f"checkpoint {path} predicts {state['num_keypoints']} keypoints, skeleton {name} has "
                f"{skeleton.num_keypoints}"
            )
        h, w = recipe.data.input_size
        model = model_from_checkpoint(state, recipe)
        dev = resolve_device(device)
        return cls(
            model,
            recipe_codec(recipe),
            skeleton,
            (w, h),
            recipe.data.box_padding,
            dev,
            flip,
            amp,
            recipe.train.channels_last,
        )

    def crops(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised crops (N, 3, H, W) of every box of every image, and their affine matrices (N, 2, 3)."""
        tensors, affines = [], []
        for image, image_boxes in zip(images, boxes, strict=True):
            for box in np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4):
                center, scale = box_to_center_scale(box)
                affine = get_affine(center, box_size(scale, self.input_size, self.box_padding), self.input_size)
                tensors.append(normalize(warp(image, affine, self.input_size)))
                affines.append(affine)
        if not tensors:
            return torch.zeros(0, 3, self.input_size[1], self.input_size[0]), np.zeros((0, 2, 3))
        return torch.stack(tensors), np.stack(affines)

    @torch.inference_mode()
    def network(self, crops: torch.Tensor) -> torch.Tensor:
        """The network's maps for a batch of normalised crops (flip-averaged when `flip`), on the device."""
        x = crops.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast(self.device):
            out = final_output(self.model(x)).float()
            if self.flip:
                flipped = final_output(self.model(x.flip(-1))).float()
                out = (out + self.codec.flip_back(flipped, self.skeleton.flip_index)) / 2
        return out

    @torch.inference_mode()
    def decode(self, output: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in crop pixels and scores (N, K): the codec's decode, on the maps' device."""
        keypoints, scores = self.codec.decode_output(output)
        return keypoints.cpu().numpy().astype(np.float64), scores.cpu().numpy().astype(np.float64)

    def forward(self, crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in crop pixels and scores (N, K) of a batch of normalised crops."""
        if len(crops) == 0:
            k = self.skeleton.num_keypoints
            return np.zeros((0, k, 2)), np.zeros((0, k))
        return self.decode(self.network(crops))

    def to_poses(
        self,
        keypoints: np.ndarray,
        scores: np.ndarray,
        affines: np.ndarray,
        boxes: list[np.ndarray],
        box_scores: list[np.ndarray | None],
    ) -> list[list[Pose]]:
        """Crop-pixel predictions -> Poses in image pixels, grouped per image."""
        keypoints = apply_affine(keypoints, invert_affine(affines)) if len(affines) else keypoints
        out, start = [], 0
        for image_boxes, bs in zip(boxes, box_scores, strict=True):
            n = len(image_boxes)
            bs = np.ones(n) if bs is None else np.asarray(bs, dtype=np.float64)
            inst = rescore(bs, scores[start : start + n])
            out.append(
                [
                    Pose(keypoints[start + j], scores[start + j], image_boxes[j], float(bs[j]), float(inst[j]))
                    for j in range(n)
                ]
            )
            start += n
        return out

    def predict_batch(
        self,
        images: list[np.ndarray],
        boxes_per_image: list[np.ndarray | None],
        box_scores: list[np.ndarray | None] | None = None,
    ) -> list[list[Pose]]:
        """Poses of every box of every image (None: the whole image is one box), in one forward pass."""
        for i, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
                shape = getattr(image, "shape", type(image).__name__)
                raise ClposeError(f"image {i} must be a BGR array (H, W, 3), got {shape}")
        boxes = [
            full_image_box(im)[None] if b is None else np.asarray(b, dtype=np.float64).reshape(-1, 4)
            for im, b in zip(images, boxes_per_image, strict=True)
        ]
        crops, affines = self.crops(images, boxes)
        keypoints, scores = self.forward(crops)
        return self.to_poses(keypoints, scores, affines, boxes, box_scores or [None] * len(images))

    def predict(
        self, image_bgr: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None
    ) -> list[Pose]:
        """Poses of one BGR image; `boxes` (N, 4) as [x, y, w, h], None = the whole image (single person)."""
        return self.predict_batch([image_bgr], [boxes], [box_scores])[0]
