"""Person boxes: from a detections file (COCO results format) or torchvision's Faster R-CNN with weights from a
local file (never downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from clpose.errors import ClposeError, first_line
from clpose.safeload import load_tensors

PERSON = 1  # COCO category id (also torchvision's detection label) of a person


class BoxesFile:
    """Detections in COCO results format ([{image_id, category_id, bbox, score}]), looked up by frame index
    (an integer image_id) or by image file name (a string image_id or a `file_name` key)."""

    def __init__(self, path: Path, threshold: float = 0.0, num_keypoints: int | None = None) -> None:
        if not Path(path).is_file():
            raise ClposeError(f"boxes file {path} does not exist")
        try:
            entries = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ClposeError(f"boxes file {path} is not valid JSON ({e})") from None
        if not isinstance(entries, list):
            raise ClposeError(f"boxes file {path}: expected a list of {{image_id, bbox, score}}")
        self.by_key: dict[int | str, list[tuple[list[float], float]]] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "bbox" not in e or not ({"image_id", "file_name"} & set(e)):
                raise ClposeError(f"boxes file {path}: entry {i} needs bbox and image_id (or file_name)")
            if e.get("category_id", PERSON) != PERSON:
                raise ClposeError(
                    f"boxes file {path}: entry {i} is category {e['category_id']}, not a person (1): "
                    "pose models need person boxes"
                )
            if num_keypoints is not None and "keypoints" in e and len(e["keypoints"]) != 3 * num_keypoints:
                raise ClposeError(
                    f"boxes file {path}: entry {i} carries {len(e['keypoints']) // 3} keypoints but the "
                    f"checkpoint's skeleton has {num_keypoints}: boxes from another skeleton"
                )
            if not isinstance(e["bbox"], list) or len(e["bbox"]) != 4:
                raise ClposeError(f"boxes file {path}: entry {i} bbox must be [x, y, w, h]")
            try:
                box = np.asarray(e["bbox"], dtype=np.float64)
            except (TypeError, ValueError):
                raise ClposeError(f"boxes file {path}: entry {i} bbox must be 4 numbers, got {e['bbox']!r}") from None
            if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
                # a NaN or empty box would crop nothing and write NaN tokens (not JSON) into the output
                raise ClposeError(
                    f"boxes file {path}: entry {i} bbox {e['bbox']!r} needs finite numbers and a positive width "
                    "and height"
                )
            score = float(e.get("score", 1.0))
            if score >= threshold:
                key = e.get("file_name", e.get("image_id"))
                self.by_key.setdefault(key, []).append(([float(v) for v in e["bbox"]], score))

    def boxes(self, index: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        found = self.by_key.get(name) or self.by_key.get(Path(name).stem) or self.by_key.get(index) or []
        if not found:
            return np.zeros((0, 4)), np.zeros(0)
        return np.array([b for b, _ in found]), np.array([s for _, s in found])


class FasterRCNN:
    """torchvision's fasterrcnn_resnet50_fpn, person boxes only."""

    def __init__(self, weights: Path | None, device: torch.device, threshold: float = 0.5) -> None:
        if weights is None:
            raise ClposeError(
                "--detector torchvision-fasterrcnn needs --detector-weights FILE (a local copy of "
                "torchvision's fasterrcnn_resnet50_fpn state dict; clpose never downloads weights)"
            )
        if not Path(weights).is_file():
            raise ClposeError(f"detector weights {weights} do not exist (clpose never downloads weights)")
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        self.model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        state = load_tensors(weights, "detector weights")
        try:
            self.model.load_state_dict(state)
        except Exception as e:  # a corrupt file, or a state dict of another network
            raise ClposeError(
                f"detector weights {weights} do not fit fasterrcnn_resnet50_fpn ({type(e).__name__}: {first_line(e)})"
            ) from None
        self.model.to(device).eval()
        self.device, self.threshold = device, threshold

    @torch.inference_mode()
    def boxes(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
        out = self.model([rgb.to(self.device)])[0]
        keep = (out["labels"] == PERSON) & (out["scores"] >= self.threshold)
        xyxy = out["boxes"][keep].cpu().numpy()
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1) if len(xyxy) else np.zeros((0, 4))
        return xywh, out["scores"][keep].cpu().numpy()
