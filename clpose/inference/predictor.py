"""Predictor: images and person boxes in, keypoints in image pixels out.

A thin user-facing layer over clpose.engine.posemodel.PoseModel (crop, forward with flip, decode, back to image
pixels): nothing here is a second copy of those steps. Importing it loads neither evaluation nor scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from clpose.engine.int8 import CalibrationSource


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


# A person at a corner of the frame, half out of it both ways, keeps 25% of the box's area in the image; with under 1%
# the crop is 99% black border and the "person" is the network's guess about nothing.
MIN_AREA_INSIDE = 0.01


def box_problem(box: np.ndarray, image_hw: tuple[int, int]) -> str | None:
    """Why a person box [x, y, w, h] (image pixels) cannot be a person of an image of `image_hw` (H, W), or None.

    The one rule for every box, whatever its source (a boxes file, a detector, a caller of the Predictor): finite
    numbers, w and h > 0, at least one pixel of overlap with the image each way and at least MIN_AREA_INSIDE of its
    area inside the image. A box that reaches past the image is kept as it is (the crop pads it with black, as
    training and evaluation crop), so a huge box is refused by its share inside, never turned into infinities."""
    x, y, w, h = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return "needs finite [x, y, w, h] with w, h > 0"
    height, width = image_hw
    # each difference is of two finite numbers or inf, never NaN: x + w may overflow to inf, min() then takes the edge
    inside_w = min(x + w, float(width)) - max(x, 0.0)
    inside_h = min(y + h, float(height)) - max(y, 0.0)
    if inside_w < 1 or inside_h < 1:
        return f"lies outside the {width}x{height} image (less than a pixel of it inside)"
    share = (inside_w / w) * (inside_h / h)  # as two ratios: w * h overflows for huge boxes
    if share < MIN_AREA_INSIDE:
        return (
            f"has {100 * share:.2g}% of its area inside the {width}x{height} image (at least "
            f"{100 * MIN_AREA_INSIDE:g}% is needed)"
        )
    return None


def box_text(box: np.ndarray) -> str:
    """A box as the user wrote it, compactly: [5000, 5000, 100, 200]."""
    return "[" + ", ".join(f"{float(v):g}" for v in np.asarray(box).reshape(-1)) + "]"


@dataclass(frozen=True)
class SkippedBox:
    """A person box that was not used, and why (`box_problem`)."""

    box: np.ndarray
    why: str

    def to_json(self) -> dict:
        return {"box": [float(v) for v in self.box], "why": self.why}

    def __str__(self) -> str:
        return f"{box_text(self.box)} {self.why}"


def usable_boxes(
    image_hw: tuple[int, int], boxes: np.ndarray, scores: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, list[SkippedBox]]:
    """The boxes (N, 4) of one image that `box_problem` accepts, their scores, and the ones it refused."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    problems = [box_problem(box, image_hw) for box in boxes]
    keep = np.array([p is None for p in problems], dtype=bool)
    skipped = [SkippedBox(box, why) for box, why in zip(boxes, problems, strict=True) if why is not None]
    kept_scores = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)[keep]
    return boxes[keep], kept_scores, skipped


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
        int8: bool = False,
        calibration: CalibrationSource | None = None,
    ) -> Predictor:
        """The model of a clpose checkpoint (or a run folder's best.pt). `amp` is resolved on this machine: the
        precision the model was trained in does not bind it. `runtime` (torch, onnxruntime, openvino or auto) runs
        the network (clpose.engine.runtimes); `threads` sets the CPU threads; `compile_` compiles the torch one;
        `int8` runs its int8 graph (clpose.engine.int8), calibrated on `calibration`'s crops (default: the recipe's
        own data)."""
        path = Path(path)
        if path.is_dir():
            path = find_checkpoint(path)
        pose = PoseModel.from_checkpoint(path, resolve_device(device), amp)
        info = use_runtime(pose, path, runtime, threads, compile_, int8=int8, calibration=calibration)
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
        for i, (image, image_boxes) in enumerate(zip(images, boxes, strict=True)):
            # a caller's boxes and poses pair up by position, so a box that cannot be a person is an error, not a skip
            _, _, skipped = usable_boxes(image.shape[:2], image_boxes, None)
            if skipped:
                raise ClposeError(f"image {i}: box {skipped[0]}")
        crops, affines = self.pose.crops(images, boxes)
        keypoints, scores = self.forward(crops, affines)
        return self.to_poses(keypoints, scores, boxes, box_scores or [None] * len(images))

    def predict(
        self, image_bgr: np.ndarray, boxes: np.ndarray | None = None, box_scores: np.ndarray | None = None
    ) -> list[Pose]:
        """Poses of one BGR image; `boxes` (N, 4) as [x, y, w, h], None = the whole image (single person)."""
        return self.predict_batch([image_bgr], [boxes], [box_scores])[0]
