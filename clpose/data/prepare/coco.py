"""COCO keypoints -> records (splits `train` and `val` from annotations/person_keypoints_{train,val}2017.json).

People, as in the SimpleBaseline/HRNet code: person category, not crowd, area > 0, a box that is not empty
once clipped to the image, at least one labelled keypoint (v = 1 or 2). Boxes are clipped to the image
([x, y, w, h] with x2 = min(width - 1, x + w - 1)); centre = box centre, scale = box size / 200 (the data
pipeline fits the input aspect ratio and pads by `box_padding`, 1.25).

With `--detections FILE` (COCO results format, e.g. COCO_val2017_detections_AP_H_56_person.json) the `val`
records are the detected person boxes (category 1, every score, box_score = the detection score) and the
ground-truth-box records are written as `val_gt`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clpose.data.prepare.common import ImageTable, Report, count_outside
from clpose.data.records import Records, new_records
from clpose.data.transforms import box_to_center_scale
from clpose.errors import ClposeError

SPLITS = {"train": "person_keypoints_train2017.json", "val": "person_keypoints_val2017.json"}
IMAGE_DIRS = {"train": "train2017", "val": "val2017"}


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ClposeError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClposeError(f"{what} {path} is not valid JSON ({e})") from None


def clean_box(box: Any, width: int, height: int) -> list[float] | None:
    """The HRNet box sanitation: clip to the image; None if nothing is left."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1 or (x2 - x1) * (y2 - y1) <= 0:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def load_coco(path: Path, num_keypoints: int = 17) -> dict[str, Any]:
    """Read a COCO keypoints file and check the keys clpose needs."""
    data = read_json(path, "COCO annotations")
    if not isinstance(data, dict):
        raise ClposeError(f"{path}: expected a COCO annotation object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ClposeError(f"{path}: missing key {key!r} (is it a COCO keypoints file?)")
    person = [c for c in data["categories"] if c.get("id") == 1]
    if not person or len(person[0].get("keypoints", [])) != num_keypoints:
        raise ClposeError(f"{path}: category 1 must be a person with {num_keypoints} keypoints")
    for i, img in enumerate(data["images"]):
        if not {"id", "file_name", "width", "height"} <= set(img):
            raise ClposeError(f"{path}: images[{i}] needs id, file_name, width, height")
    return data


def _gt_people(data: dict, path: Path, table: ImageTable, split: str, report: Report) -> list[dict]:
    images = {img["id"]: img for img in data["images"]}
    people = []
    for i, ann in enumerate(data["annotations"]):
        if not {"image_id", "bbox", "keypoints", "category_id"} <= set(ann):
            raise ClposeError(f"{path}: annotations[{i}] needs image_id, bbox, keypoints, category_id")
        if ann["category_id"] != 1 or ann.get("iscrowd", 0) or ann.get("area", 1) <= 0:
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float64)
        if kpts.size != 51:
            raise ClposeError(f"{path}: annotations[{i}] has {kpts.size} keypoint values, expected 17 x 3 = 51")
        kpts = kpts.reshape(17, 3)
        if not (kpts[:, 2] > 0).any():
            continue
        img = images.get(ann["image_id"])
        if img is None:
            report.warn(split, "annotations of unknown images (skipped)")
            continue
        box = clean_box(ann["bbox"], img["width"], img["height"])
        if box is None:
            report.warn(split, "empty boxes (skipped)")
            continue
        report.warn(split, "labelled joints outside the image (kept)", count_outside(kpts, img["width"], img["height"]))
        center, scale = box_to_center_scale(np.array(box))
        index = table.add(img["file_name"], img["id"], (img["width"], img["height"]))
        people.append(
            {
                "image_index": index,
                "center": center,
                "scale": scale,
                "keypoints": kpts,
                "box": box,
                "extras": {"annotation_id": ann.get("id"), "area": ann.get("area")},
            }
        )
    return people


def detected_people(path: Path, data: dict, table: ImageTable, report: Report) -> list[dict]:
    dets = read_json(path, "detections")
    if not isinstance(dets, list):
        raise ClposeError(f"{path}: detections must be a list of {{image_id, category_id, bbox, score}}")
    images = {img["id"]: img for img in data["images"]}
    people = []
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or not {"image_id", "bbox", "score"} <= set(det):
            raise ClposeError(f"{path}: detection {i} needs image_id, bbox, score")
        if det.get("category_id", 1) != 1:
            report.warn("val", "detections of other categories (skipped)")
            continue
        img = images.get(det["image_id"])
        if img is None:
            report.warn("val", "detections of images not in the annotations (skipped)")
            continue
        if len(det["bbox"]) != 4:
            raise ClposeError(f"{path}: detection {i} bbox must be [x, y, w, h], got {det['bbox']!r}")
        center, scale = box_to_center_scale(np.array(det["bbox"], dtype=np.float64))
        index = table.add(img["file_name"], img["id"], (img["width"], img["height"]))
        people.append(
            {
                "image_index": index,
                "center": center,
                "scale": scale,
                "keypoints": np.zeros((17, 3)),
                "box": [float(v) for v in det["bbox"]],
                "box_score": float(det["score"]),
            }
        )
    return people


def prepare_coco(
    root: Path, report: Report, annotations: dict[str, Path], image_dirs: dict[str, Path], detections: Path | None
) -> tuple[dict[str, Records], dict[str, ImageTable]]:
    files = dict(annotations) or {s: root / "annotations" / f for s, f in SPLITS.items()}
    files = {s: p for s, p in files.items() if p.is_file() or annotations}
    if not files:
        raise ClposeError(
            f"{root}/annotations holds neither {SPLITS['train']} nor {SPLITS['val']} (or pass --annotations SPLIT=FILE)"
        )
    if detections is not None and "val" not in files:
        raise ClposeError("--detections makes the val records: the val annotations are needed as well")
    splits, tables = {}, {}
    for split, path in files.items():
        image_dir = image_dirs.get(split) or image_dirs.get("*") or root / IMAGE_DIRS.get(split, split)
        data = load_coco(path)
        table = ImageTable(image_dir)
        gt_split = "val_gt" if split == "val" and detections is not None else split
        people = _gt_people(data, path, table, gt_split, report)
        splits[gt_split] = new_records("coco", "coco", gt_split, table.images, people, image_dir, [str(path)])
        tables[gt_split] = table
        if gt_split == "val_gt":
            det_table = ImageTable(image_dir)
            det_people = detected_people(detections, data, det_table, report)
            splits["val"] = new_records(
                "coco", "coco", "val", det_table.images, det_people, image_dir, [str(path), str(detections)]
            )
            tables["val"] = det_table
    return splits, tables
