"""Predictor: images and person boxes in, keypoints in image pixels out.

A thin user-facing layer over clpose.engine.posemodel.PoseModel (crop, forward with flip, decode, back to image
pixels): nothing here is a second copy of those steps. Importing it loads neither evaluation nor scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clpose.engine.checkpoint import find_checkpoint
from clpose.engine.distributed import resolve_device
from clpose.engine.posemodel import PoseModel
from clpose.engine.runtimes import RuntimeInfo, use_runtime
from clpose.errors import ClposeError
from clpose.evaluation.coco import rescore
from clpose.precision import Precision
from clpose.skeletons import Skeleton


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
    """Top-down pose estimation with a trained model: images and person boxes in, Poses in image pixels out.

    Args:
        pose: the model ready to run (clpose.engine.posemodel.PoseModel: network, codec, skeleton, crop size,
            box padding, precision, device).
        flip: average with the mirrored crop (slower, slightly more accurate).
    """

    def __init__(self, pose: PoseModel, flip: bool = False, runtime: RuntimeInfo | None = None) -> None:
        self.pose, self.flip, self.runtime = pose, flip, runtime

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        flip: bool = False,
        amp: str = "auto",
        runtime: str = "torch",
        threads: int | None = None,
        compile_: bool = False,
    ) -> Predictor:
        """The model of a clpose checkpoint (or a run folder's best.pt). `amp` is resolved on this machine: the
        precision the model was trained in does not bind it. `runtime` (torch, onnxruntime, openvino or auto) runs
        the network (clpose.engine.runtimes); `threads` sets the CPU threads; `compile_` compiles the torch one."""
        path = Path(path)
        if path.is_dir():
            path = find_checkpoint(path)
        pose = PoseModel.from_checkpoint(path, resolve_device(device), amp)
        info = use_runtime(pose, path, runtime, threads, compile_)
        return cls(pose, flip, info)

    @property
    def skeleton(self) -> Skeleton:
        return self.pose.skeleton

    @property
    def precision(self) -> Precision:
        return self.pose.precision

    @property
    def device(self) -> torch.device:
        return self.pose.device

    def forward(self, crops: torch.Tensor, affines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in image pixels and scores (N, K) of normalised crops made with `affines`."""
        keypoints, scores = self.pose.keypoints(crops, affines, self.flip)
        return keypoints[-1], scores[-1]

    def to_poses(
        self,
        keypoints: np.ndarray,
        scores: np.ndarray,
        boxes: list[np.ndarray],
        box_scores: list[np.ndarray | None],
    ) -> list[list[Pose]]:
        """Image-pixel predictions of every box -> Poses, grouped per image."""
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
        for i, image_boxes in enumerate(boxes):
            bad = ~np.isfinite(image_boxes).all(axis=1) | (image_boxes[:, 2] <= 0) | (image_boxes[:, 3] <= 0)
            if bad.any():
                raise ClposeError(
                    f"image {i}: box {image_boxes[bad][0].tolist()} needs finite [x, y, w, h] with w, h > 0"
                )
        crops, affines = self.pose.crops(images, boxes)
        keypoints, scores = self.forward(crops, affines)
        return self.to_poses(keypoints, scores, boxes, box_scores or [None] * len(images))

    def predict(
        self, image_bgr: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None
    ) -> list[Pose]:
        """Poses of one BGR image; `boxes` (N, 4) as [x, y, w, h], None = the whole image (single person)."""
        return self.predict_batch([image_bgr], [boxes], [box_scores])[0]
