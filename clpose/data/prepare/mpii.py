"""MPII -> records, from either annotation layout users download.

1. The widely used JSON files of the SimpleBaseline/HRNet release (`annot/train.json`, `annot/valid.json`, and
   `trainval.json` / `test.json` when present): lists of {image, joints 16x2, joints_vis 16, center, scale};
   missing joints are (-1, -1). Head boxes for PCKh come from `annot/gt_valid.mat` (`headboxes_src`), matched
   to each valid person by its joints.
2. The official `mpii_human_pose_v1_u12_1.mat` (struct RELEASE): every annotated person of the training
   images goes to `trainval`, the single persons of the test images to `test`; with `gt_valid.mat` beside it,
   `valid` = the trainval people whose joints match gt_valid.mat and `train` = the rest. Quirks handled:
   `annorect` / `point` as a single struct or an array, missing or string `is_visible` (missing = visible),
   people without points.

Conversion as in the SimpleBaseline/HRNet code: centre y += 15 x scale, then 1-based MATLAB to 0-based pixels
(subtract 1) for the centre, the joints and the head box. Records keep `scale` unpadded (box = 200 x scale);
the data pipeline applies `box_padding` (1.25 in that code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clpose.data.prepare.common import ImageTable, Report, count_outside, load_mat, mat_array
from clpose.data.records import new_records
from clpose.errors import ClposeError

RELEASE_FILE = "mpii_human_pose_v1_u12_1.mat"
JSON_SPLITS = ("train", "valid", "trainval", "test")


def _find(root: Path, name: str) -> Path | None:
    for folder in (root / "annot", root / "annotations", root):
        if (folder / name).is_file():
            return folder / name
    return None


def center_scale(center: Any, scale: float) -> tuple[list[float], list[float]]:
    """The SimpleBaseline/HRNet conversion of an MPII centre and scale (scale stays unpadded)."""
    c = np.asarray(center, dtype=np.float64).copy()
    if c[0] != -1:
        c[1] += 15 * scale
    return list(c - 1.0), [float(scale), float(scale)]


class HeadBoxes:
    """gt_valid.mat: head boxes (0-based x1, y1, x2, y2) looked up by a person's 1-based joints."""

    def __init__(self, path: Path) -> None:
        mat = load_mat(path)
        self.path = path
        self.joints = mat_array(mat, "pos_gt_src", path, (16, 2, None)).transpose(2, 0, 1)  # (N, 16, 2)
        self.missing = mat_array(mat, "jnt_missing", path, (16, None)).T > 0  # (N, 16)
        boxes = mat_array(mat, "headboxes_src", path, (2, 2, None)).transpose(2, 0, 1)  # (N, corner, xy)
        self.boxes = boxes.reshape(-1, 4) - 1.0

    def match(self, joints_1based: np.ndarray, labelled: np.ndarray) -> int | None:
        """Index of the gt_valid person with the same labelled joints (within 1 px), or None."""
        if not labelled.any():
            return None
        use = labelled[None] & ~self.missing
        diff = np.abs(self.joints - joints_1based[None]).max(axis=2)
        err = np.where(use, diff, 0.0).max(axis=1)
        agree = (use.sum(axis=1) == labelled.sum()) & (err < 1.0)
        hits = np.flatnonzero(agree)
        return int(hits[0]) if len(hits) else None


def _json_person(path: Path, i: int, p: Any, split: str) -> tuple[str, np.ndarray, list[float], list[float]]:
    if not isinstance(p, dict) or not {"image", "center", "scale"} <= set(p):
        raise ClposeError(f"{path}: person {i} needs the keys image, center, scale (got {sorted(p)[:6]})")
    keypoints = np.zeros((16, 3))
    if "joints" in p:
        joints = np.asarray(p["joints"], dtype=np.float64)
        vis = np.asarray(p.get("joints_vis", np.ones(16)), dtype=np.float64)
        if joints.shape != (16, 2) or vis.shape != (16,):
            raise ClposeError(
                f"{path}: person {i}: joints must be 16x2 and joints_vis 16, got {joints.shape} and {vis.shape}"
            )
        labelled = (vis > 0) & (joints[:, 0] >= 0)
        keypoints[labelled, :2] = joints[labelled] - 1.0
        keypoints[labelled, 2] = 2.0  # the JSON does not say which joints are occluded
    elif split != "test":
        raise ClposeError(f"{path}: person {i} has no joints")
    center, scale = center_scale(p["center"], float(p["scale"]))
    return str(p["image"]), keypoints, center, scale


def _from_json(files: dict[str, Path], head: HeadBoxes | None, image_dir: Path, report: Report):
    splits, tables = {}, {}
    for split, path in files.items():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ClposeError(f"{path} could not be read as JSON ({e})") from None
        if not isinstance(data, list):
            raise ClposeError(f"{path}: expected a list of people, got {type(data).__name__}")
        table = ImageTable(image_dir)
        people = []
        for i, p in enumerate(data):
            image, keypoints, center, scale = _json_person(path, i, p, split)
            index = table.add(image)
            img = table.images[index]
            report.warn(
                split, "labelled joints outside the image (kept)", count_outside(keypoints, img["width"], img["height"])
            )
            extras = {}
            if split == "valid" and head is not None:
                hit = head.match(keypoints[:, :2] + 1.0, keypoints[:, 2] > 0)
                if hit is None:
                    report.warn(split, f"people not found in {head.path.name} (no head box)")
                else:
                    extras = {"head_box": [float(v) for v in head.boxes[hit]], "gt_valid_index": hit}
            people.append(
                {"image_index": index, "center": center, "scale": scale, "keypoints": keypoints, "extras": extras}
            )
        sources = [str(path)] + ([str(head.path)] if head is not None and split == "valid" else [])
        splits[split] = new_records("mpii", "mpii", split, table.images, people, image_dir, sources)
        tables[split] = table
    return splits, tables


def _items(value: Any) -> list[Any]:
    """A MATLAB field that may be one struct, an array of structs, or empty, as a list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _visible(point: Any) -> float:
    """is_visible may be missing, empty, a number or a string: missing/empty = visible (2), 0 = occluded (1)."""
    flag = getattr(point, "is_visible", None)
    if flag is None or (isinstance(flag, np.ndarray) and flag.size == 0):
        return 2.0
    if isinstance(flag, np.ndarray):
        flag = flag.ravel()[0]
    try:
        return 2.0 if int(str(flag).strip() or "1") else 1.0
    except ValueError:
        return 2.0


def _release_person(rect: Any) -> tuple[np.ndarray, list[float], list[float], list[float] | None] | None:
    objpos, scale = getattr(rect, "objpos", None), getattr(rect, "scale", None)
    if objpos is None or scale is None or (isinstance(scale, np.ndarray) and scale.size == 0):
        return None
    try:
        center, scale_xy = center_scale([float(objpos.x), float(objpos.y)], float(scale))
    except (AttributeError, TypeError, ValueError):
        return None
    keypoints = np.zeros((16, 3))
    annopoints = getattr(rect, "annopoints", None)
    for point in _items(getattr(annopoints, "point", None)):
        k = int(point.id)
        if 0 <= k < 16:
            keypoints[k] = [float(point.x) - 1.0, float(point.y) - 1.0, _visible(point)]
    head = None
    if all(hasattr(rect, a) for a in ("x1", "y1", "x2", "y2")):
        head = [float(rect.x1) - 1.0, float(rect.y1) - 1.0, float(rect.x2) - 1.0, float(rect.y2) - 1.0]
    return keypoints, center, scale_xy, head


def _from_release(path: Path, head: HeadBoxes | None, image_dir: Path, report: Report):
    mat = load_mat(path, struct_as_record=False, squeeze_me=True)
    if "RELEASE" not in mat:
        raise ClposeError(f"{path} has no RELEASE struct (is it mpii_human_pose_v1_u12_1.mat?)")
    release = mat["RELEASE"]
    try:
        annolist, img_train = _items(release.annolist), np.atleast_1d(release.img_train).ravel()
        single = _items(release.single_person)
    except AttributeError as e:
        raise ClposeError(f"{path}: RELEASE lacks a field ({e})") from None
    if len(img_train) != len(annolist):
        raise ClposeError(f"{path}: RELEASE.img_train has {len(img_train)} entries for {len(annolist)} images")
    tables = {"trainval": ImageTable(image_dir), "test": ImageTable(image_dir)}
    people: dict[str, list[dict]] = {"trainval": [], "test": []}
    for i, anno in enumerate(annolist):
        name = str(anno.image.name)
        is_train = int(img_train[i]) == 1
        singles = {int(v) for v in np.atleast_1d(single[i]).ravel()} if i < len(single) else set()
        for r, rect in enumerate(_items(getattr(anno, "annorect", None))):
            person = _release_person(rect)
            split = "trainval" if is_train else "test"
            if person is None:
                report.warn(split, "people without a position or scale (skipped)")
                continue
            keypoints, center, scale, head_box = person
            if is_train and not (keypoints[:, 2] > 0).any():
                report.warn(split, "people without points (skipped)")
                continue
            if not is_train and (r + 1) not in singles:
                continue  # the single-person test set only
            index = tables[split].add(name)
            # where the person sits in RELEASE: the MPII test submission (clpose eval --split test) is written
            # into RELEASE.annolist(annolist_index + 1).annorect(rect_index + 1)
            objpos = [float(rect.objpos.x), float(rect.objpos.y)]
            extras = {"annolist_index": i, "rect_index": r, "objpos": objpos, "rect_scale": float(rect.scale)}
            if head_box:
                extras["head_box"] = head_box
            people[split].append(
                {"image_index": index, "center": center, "scale": scale, "keypoints": keypoints, "extras": extras}
            )
    splits = {s: new_records("mpii", "mpii", s, tables[s].images, people[s], image_dir, [str(path)]) for s in people}
    if head is not None:
        splits, tables = _split_valid(splits, tables, head, image_dir, path, report)
    return splits, tables


@dataclass(frozen=True)
class ReleaseImage:
    """A test image of RELEASE (img_train == 0): its annolist index (0-based), name, and each rectangle's objpos
    (1-based MATLAB pixels) and scale, None where the rectangle has none."""

    annolist_index: int
    name: str
    rects: list[tuple[list[float] | None, float | None]]


def release_test_images(path: Path) -> list[ReleaseImage]:
    """The test part of RELEASE.annolist, in order: what an MPII test submission is written into."""
    mat = load_mat(path, struct_as_record=False, squeeze_me=True)
    if "RELEASE" not in mat:
        raise ClposeError(f"{path} has no RELEASE struct (is it mpii_human_pose_v1_u12_1.mat?)")
    try:
        annolist, img_train = _items(mat["RELEASE"].annolist), np.atleast_1d(mat["RELEASE"].img_train).ravel()
    except AttributeError as e:
        raise ClposeError(f"{path}: RELEASE lacks a field ({e})") from None
    out = []
    for i, anno in enumerate(annolist):
        if int(img_train[i]) != 0:
            continue
        rects = []
        for rect in _items(getattr(anno, "annorect", None)):
            objpos, scale = getattr(rect, "objpos", None), getattr(rect, "scale", None)
            try:
                rects.append(([float(objpos.x), float(objpos.y)], float(scale)))
            except (AttributeError, TypeError, ValueError):
                rects.append((None, None))
        out.append(ReleaseImage(i, str(anno.image.name), rects))
    return out


def _split_valid(splits, tables, head: HeadBoxes, image_dir: Path, path: Path, report: Report):
    """valid = trainval people found in gt_valid.mat (in its order), train = the others."""
    trainval = splits["trainval"]
    order = {}
    for i in range(len(trainval)):
        kp = trainval.keypoints[i]
        hit = head.match(kp[:, :2] + 1.0, kp[:, 2] > 0)
        if hit is not None and hit not in order:
            order[hit] = i
    valid_idx = [order[h] for h in sorted(order)]
    missing = len(head.boxes) - len(valid_idx)
    report.warn("valid", f"{head.path.name} people not found in the RELEASE file", missing)
    train_idx = sorted(set(range(len(trainval))) - set(valid_idx))
    valid = trainval.subset(valid_idx)
    valid.split = "valid"
    valid.sources = [str(path), str(head.path)]
    for j, hit in enumerate(sorted(order)):
        valid.extras[j] = {**valid.extras[j], "head_box": [float(v) for v in head.boxes[hit]], "gt_valid_index": hit}
    train = trainval.subset(train_idx)
    train.split = "train"
    return {"train": train, "valid": valid, **splits}, {
        "train": tables["trainval"],
        "valid": tables["trainval"],
        **tables,
    }


def prepare_mpii(root: Path, report: Report, annotations: dict[str, Path], image_dir: Path | None):
    image_dir = image_dir or (root / "images" if (root / "images").is_dir() else root)
    gt_valid = annotations.pop("gt_valid", None) or _find(root, "gt_valid.mat")
    head = HeadBoxes(gt_valid) if gt_valid else None
    release = annotations.pop("release", None)
    json_files = {s: p for s, p in annotations.items()}
    if not json_files and release is None:
        json_files = {s: p for s in JSON_SPLITS if (p := _find(root, f"{s}.json"))}
        release = None if json_files else _find(root, RELEASE_FILE)
    if json_files:
        return _from_json(json_files, head, image_dir, report)
    if release is not None:
        return _from_release(release, head, image_dir, report)
    raise ClposeError(
        f"{root}: found neither annot/train.json / annot/valid.json nor {RELEASE_FILE} "
        "(or pass --annotations SPLIT=FILE)"
    )
