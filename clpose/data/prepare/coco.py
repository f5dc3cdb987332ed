"""COCO keypoints -> records (splits `train` and `val` from annotations/person_keypoints_{train,val}2017.json).

People, as in the SimpleBaseline/HRNet code: person category, not crowd, area > 0, a box that is not empty
once clipped to the image, at least one labelled keypoint (v = 1 or 2). Boxes are clipped to the image
([x, y, w, h] with x2 = min(width - 1, x + w - 1)); centre = box centre, scale = box size / 200 (the data
pipeline fits the input aspect ratio and pads by `box_padding`, 1.25).

`--annotations SPLIT=FILE` adds a split, or replaces the default file of that split; the default splits whose files
are on disk are prepared as well (the summary names each split's source file).

With `--detections FILE` or `--detections val=FILE` (COCO results format, e.g.
COCO_val2017_detections_AP_H_56_person.json) the `val` records are the detected person boxes (category 1, every
score, box_score = the detection score) and the ground-truth-box records are written as `val_gt`.

With `--detections test-dev=FILE` (e.g. the SimpleBaseline/HRNet release's
COCO_test-dev2017_detections_AP_H_609_person.json) the `test-dev` records are the detected people of the images of
annotations/image_info_test-dev2017.json (or `--annotations test-dev=FILE`), images in test2017/: one person per box
of category 1, with its score and no keypoints (the labels are private: `clpose eval --split test-dev` writes the
results file the evaluation server takes). A detection of an image that is not in the image-info file is an error
there: it means the detections of another split.
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
IMAGE_DIRS = {"train": "train2017", "val": "val2017", "test-dev": "test2017"}
TEST_DEV_INFO = "image_info_test-dev2017.json"  # images and categories only: the test-dev labels are private


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


def load_coco(path: Path, num_keypoints: int = 17, labelled: bool = True) -> dict[str, Any]:
    """Read a COCO keypoints file (or, with `labelled=False`, an image-info file without annotations) and check the
    keys clpose needs."""
    data = read_json(path, "COCO annotations" if labelled else "COCO image info")
    if not isinstance(data, dict):
        raise ClposeError(f"{path}: expected a COCO annotation object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories") if labelled else ("images", "categories"):
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


def detected_people(
    path: Path, data: dict, table: ImageTable, report: Report, split: str = "val", strict: bool = False
) -> list[dict]:
    """One person per detected box of category 1 (COCO results format), with its score and no keypoints. With
    `strict`, a detection of an image that `data` does not list is an error (else it is skipped with a warning)."""
    dets = read_json(path, "detections")
    if not isinstance(dets, list):
        raise ClposeError(f"{path}: detections must be a list of {{image_id, category_id, bbox, score}}")
    images = {img["id"]: img for img in data["images"]}
    people = []
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or not {"image_id", "bbox", "score"} <= set(det):
            raise ClposeError(f"{path}: detection {i} needs image_id, bbox, score")
        if det.get("category_id", 1) != 1:
            report.warn(split, "detections of other categories (skipped)")
            continue
        img = images.get(det["image_id"])
        if img is None and strict:
            raise ClposeError(
                f"{path}: detection {i} is of image_id {det['image_id']}, which the image list of the {split} split "
                "does not hold (detections of another split?)"
            )
        if img is None:
            report.warn(split, "detections of images not in the annotations (skipped)")
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
    root: Path,
    report: Report,
    annotations: dict[str, Path],
    image_dirs: dict[str, Path],
    detections: dict[str, Path] | None = None,
) -> tuple[dict[str, Records], dict[str, ImageTable]]:
    detections = dict(detections or {})
    unknown = set(detections) - {"val", "test-dev"}
    if unknown:
        raise ClposeError(f"--detections {sorted(unknown)[0]}=FILE: detections are for the val or test-dev split")
    # given splits join the default ones found on disk (a given file replaces only its own split): giving a
    # small train file for a quick trial must not drop the val split that scores it
    defaults = {s: root / "annotations" / f for s, f in SPLITS.items()}
    given = {s: p for s, p in annotations.items() if s != "test-dev"}
    files = {s: p for s, p in defaults.items() if p.is_file()} | given
    for path in given.values():  # before the long conversion of the other splits
        if not path.is_file():
            raise ClposeError(f"COCO annotations {path} does not exist")
    if not files and "test-dev" not in detections:
        raise ClposeError(
            f"{root}/annotations holds neither {SPLITS['train']} nor {SPLITS['val']} (or pass --annotations SPLIT=FILE)"
        )
    if "val" in detections and "val" not in files:
        raise ClposeError("--detections makes the val records: the val annotations are needed as well")
    splits, tables = {}, {}
    for split, path in files.items():
        image_dir = _image_dir(root, image_dirs, split)
        data = load_coco(path)
        table = ImageTable(image_dir)
        gt_split = "val_gt" if split == "val" and "val" in detections else split
        people = _gt_people(data, path, table, gt_split, report)
        splits[gt_split] = new_records("coco", "coco", gt_split, table.images, people, image_dir, [str(path)])
        tables[gt_split] = table
        if gt_split == "val_gt":
            splits["val"], tables["val"] = _detected_split(data, path, detections["val"], image_dir, "val", report)
    if "test-dev" in detections:
        info = annotations.get("test-dev") or root / "annotations" / TEST_DEV_INFO
        if not info.is_file():
            raise ClposeError(
                f"the test-dev split needs {info} (COCO's image_info_test-dev2017.json; or --annotations test-dev=FILE)"
            )
        data = load_coco(info, labelled=False)
        image_dir = _image_dir(root, image_dirs, "test-dev")
        splits["test-dev"], tables["test-dev"] = _detected_split(
            data, info, detections["test-dev"], image_dir, "test-dev", report, strict=True
        )
    return splits, tables


def _image_dir(root: Path, image_dirs: dict[str, Path], split: str) -> Path:
    return image_dirs.get(split) or image_dirs.get("*") or root / IMAGE_DIRS.get(split, split)


def _detected_split(
    data: dict, source: Path, detections: Path, image_dir: Path, split: str, report: Report, strict: bool = False
) -> tuple[Records, ImageTable]:
    table = ImageTable(image_dir)
    people = detected_people(detections, data, table, report, split, strict)
    records = new_records("coco", "coco", split, table.images, people, image_dir, [str(source), str(detections)])
    return records, table
