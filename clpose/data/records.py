"""Records: the one file format that `clpose prepare` writes for every dataset (docs/datasets.md).

One JSON file per split, `DATA_DIR/SPLIT.json`:

    {"format": "clpose-records", "version": 1, "dataset": "mpii", "skeleton": "mpii", "split": "valid",
     "image_root": "images",                      # relative to DATA_DIR, or absolute
     "sources": ["annot/valid.json", "annot/gt_valid.mat"],
     "images": [{"id": 0, "file": "005808361.jpg", "width": 1280, "height": 720}, ...],
     "people": [{"image_id": 0, "center": [x, y], "scale": [w / 200, h / 200], "box_score": 1.0,
                 "keypoints": [[x, y, v], ...], "box": [x, y, w, h] or null, "extras": {...}}, ...]}

Coordinates are 0-based pixel coordinates of the original image (pixel centres at integers). `v` is 0 for an
unlabelled keypoint, 1 for labelled but occluded, 2 for labelled and visible (the COCO convention). `center`
and `scale` describe the person box (scale x 200 = box width and height in pixels) before any padding: the
recipe's `data.box_padding` and input aspect ratio are applied by the data pipeline. `extras` holds what
evaluation needs (MPII `head_box` [x1, y1, x2, y2], COCO `annotation_id`, ...).

In memory the people are columns (numpy arrays), which keeps a 150k-person COCO split small and fast to
share with data-loader workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clpose.errors import ClposeError
from clpose.io import write_json
from clpose.skeletons import get_skeleton

FORMAT = "clpose-records"
VERSION = 1


@dataclass
class Records:
    """The people of one split, as columns.

    Attributes:
        keypoints: (N, K, 3) x, y, v.
        centers: (N, 2) box centres; scales: (N, 2) box size / 200.
        image_index: (N,) index into `images`.
        box_scores: (N,) detection scores (1 for ground-truth boxes).
        boxes: (N, 4) x, y, w, h, NaN where the source has no box.
        extras: per-person dicts.
        images: list of {"id", "file", "width", "height"}.
        image_dir: the folder the image files are relative to (resolved, absolute).
    """

    dataset: str
    skeleton: str
    split: str
    images: list[dict[str, Any]]
    image_index: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    keypoints: np.ndarray
    box_scores: np.ndarray
    boxes: np.ndarray
    extras: list[dict[str, Any]]
    image_dir: Path = Path(".")
    sources: list[str] = field(default_factory=list)
    path: Path | None = None
    partial: bool = False  # the people of some images only (data.val_limit): COCO AP is scored on those images

    def __len__(self) -> int:
        return len(self.image_index)

    def image_path(self, i: int) -> Path:
        """The image file of person i."""
        return self.image_dir / self.images[self.image_index[i]]["file"]

    def image_id(self, i: int) -> int:
        return int(self.images[self.image_index[i]]["id"])

    def subset(self, indices: np.ndarray | list[int]) -> Records:
        """The people at `indices` (e.g. the first N for a quick run), sharing the image table."""
        idx = np.asarray(indices, dtype=np.int64)
        return Records(
            self.dataset,
            self.skeleton,
            self.split,
            self.images,
            self.image_index[idx],
            self.centers[idx],
            self.scales[idx],
            self.keypoints[idx],
            self.box_scores[idx],
            self.boxes[idx],
            [self.extras[i] for i in idx],
            self.image_dir,
            self.sources,
            self.path,
        )

    def to_json(self, image_root: str) -> dict[str, Any]:
        people = []
        for i in range(len(self)):
            box = self.boxes[i]
            people.append(
                {
                    "image_id": self.image_id(i),
                    "center": _floats(self.centers[i]),
                    "scale": _floats(self.scales[i]),
                    "box_score": float(self.box_scores[i]),
                    "keypoints": [[float(x), float(y), int(v)] for x, y, v in self.keypoints[i]],
                    "box": None if np.isnan(box).any() else _floats(box),
                    "extras": self.extras[i],
                }
            )
        return {
            "format": FORMAT,
            "version": VERSION,
            "dataset": self.dataset,
            "skeleton": self.skeleton,
            "split": self.split,
            "image_root": image_root,
            "sources": self.sources,
            "images": self.images,
            "people": people,
        }


def _floats(values: np.ndarray) -> list[float]:
    """Exact: Python writes the shortest repr that reads back to the same float (evaluation needs exactness)."""
    return [float(v) for v in values]


def records_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.json"


def new_records(
    dataset: str,
    skeleton: str,
    split: str,
    images: list[dict[str, Any]],
    people: list[dict[str, Any]],
    image_dir: Path,
    sources: list[str],
) -> Records:
    """Build Records from converter output: `people` are dicts with image_index, center, scale, keypoints and
    optionally box_score, box, extras."""
    k = get_skeleton(skeleton).num_keypoints
    n = len(people)
    keypoints = np.zeros((n, k, 3), dtype=np.float64)
    for i, p in enumerate(people):
        keypoints[i] = p["keypoints"]
    return Records(
        dataset=dataset,
        skeleton=skeleton,
        split=split,
        images=images,
        image_index=np.array([p["image_index"] for p in people], dtype=np.int64),
        centers=np.array([p["center"] for p in people], dtype=np.float64).reshape(n, 2),
        scales=np.array([p["scale"] for p in people], dtype=np.float64).reshape(n, 2),
        keypoints=keypoints,
        box_scores=np.array([p.get("box_score", 1.0) for p in people], dtype=np.float64),
        boxes=np.array([p.get("box") or [np.nan] * 4 for p in people], dtype=np.float64).reshape(n, 4),
        extras=[p.get("extras", {}) for p in people],
        image_dir=image_dir,
        sources=sources,
    )


def save_records(path: str | Path, records: Records) -> None:
    """Write atomically; `image_root` is stored relative to the file's folder where possible."""
    path = Path(path)
    try:
        root = str(Path(records.image_dir).resolve().relative_to(path.parent.resolve()))
    except ValueError:
        root = str(Path(records.image_dir).resolve())
    write_json(path, records.to_json(root), indent=None)


def load_records(path: str | Path) -> Records:
    """Read and check a records file; every problem is a ClposeError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ClposeError(f"records file {path} does not exist (run `clpose prepare` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClposeError(f"records file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ClposeError(f'{path} is not a clpose records file (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise ClposeError(f"{path}: records version {data.get('version')} is not supported (expected {VERSION})")
    for key in ("dataset", "skeleton", "split", "image_root", "images", "people"):
        if key not in data:
            raise ClposeError(f"{path}: missing key {key!r}")
    skeleton = get_skeleton(data["skeleton"])
    for key in ("images", "people"):
        if not isinstance(data[key], list):
            raise ClposeError(f"{path}: {key} must be a list, got {type(data[key]).__name__}")
    ids = {}
    for j, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not {"id", "file", "width", "height"} <= set(img):
            raise ClposeError(f"{path}: images[{j}] needs the keys id, file, width, height")
        if not isinstance(img["id"], (int, str)) or isinstance(img["id"], bool):
            raise ClposeError(f"{path}: images[{j}].id must be a number or a string, got {img['id']!r}")
        ids[img["id"]] = j
    people = []
    for i, p in enumerate(data["people"]):
        people.append(_check_person(path, i, p, ids, skeleton.num_keypoints))
    image_dir = Path(data["image_root"])
    if not image_dir.is_absolute():
        image_dir = path.parent / image_dir
    records = new_records(
        data["dataset"],
        data["skeleton"],
        data["split"],
        data["images"],
        people,
        image_dir,
        list(data.get("sources", [])),
    )
    records.path = path
    return records


def _check_person(path: Path, i: int, p: Any, ids: dict, k: int) -> dict[str, Any]:
    where = f"{path}: people[{i}]"
    if not isinstance(p, dict):
        raise ClposeError(f"{where} is not an object")
    for key in ("image_id", "center", "scale", "keypoints"):
        if key not in p:
            raise ClposeError(f"{where}: missing key {key!r}")
    if not isinstance(p["image_id"], (int, str)) or p["image_id"] not in ids:
        raise ClposeError(f"{where}: image_id {p['image_id']!r} is not in images")
    try:
        kpts = np.asarray(p["keypoints"], dtype=np.float64)
        values = {key: np.asarray(p[key], dtype=np.float64) for key in ("center", "scale")}
    except (TypeError, ValueError):
        raise ClposeError(f"{where}: keypoints, center and scale must be numbers") from None
    if kpts.shape != (k, 3):
        raise ClposeError(f"{where}: keypoints must be {k} x 3 for this skeleton, got shape {kpts.shape}")
    labelled = kpts[:, 2] > 0
    if not np.isfinite(kpts[labelled, :2]).all() or not np.isfinite(kpts[:, 2]).all():
        raise ClposeError(f"{where}: labelled keypoints must be finite numbers (NaN or inf found)")
    for key, value in values.items():
        if value.shape != (2,):
            raise ClposeError(f"{where}: {key} must be [x, y] / [w, h], got {p[key]!r}")
        if not np.isfinite(value).all():
            raise ClposeError(f"{where}: {key} must be finite, got {p[key]!r}")
    if not (values["scale"] > 0).all():
        raise ClposeError(f"{where}: scale must be positive (box size / 200), got {p['scale']!r}")
    return {**p, "image_index": ids[p["image_id"]], "keypoints": kpts}
