"""Ground truth for PCK / PCKh scoring: LSP's joints.mat, MPII's gt_valid.mat or clpose records, each with the
skeleton it holds; `match_people`, the one place a predictions file meets its ground truth; and `align`, which moves
predictions onto the ground truth's pixel convention.

Coordinate conventions: MATLAB files (.mat) hold 1-based pixels, as the datasets' own files do; clpose records hold
0-based pixels. PCK is unaffected by a common shift, but mixing conventions moves every joint by one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from clpose.data.records import load_records
from clpose.errors import ClposeError
from clpose.evaluation.arrays import is_number, load_mat, numeric_array, one_person, shape_text, short
from clpose.evaluation.prediction_files import PredictionFile
from clpose.skeletons import LSP, MPII, Skeleton, get_skeleton

LSP_PEOPLE = 2000  # LSP's own joints.mat: 1000 training people, then the 1000 of the test set
LSP_TEST = 1000  # the LSP test set: the last 1000 people of joints.mat
GT_VALID_KEYS = ("pos_gt_src", "jnt_missing", "headboxes_src")


@dataclass
class GroundTruth:
    """N people of one skeleton: keypoints (N, K, 2), labelled (N, K), head boxes (N, 4) or None (and why),
    the pixel convention, and where the file names them, each person's image file and image id."""

    keypoints: np.ndarray
    labelled: np.ndarray
    head_boxes: np.ndarray | None
    one_based: bool
    source: str
    skeleton: Skeleton
    no_head_boxes: str = ""  # why head_boxes is None, for the error of a metric that needs them
    images: list[str] | None = None
    image_ids: list[Any] | None = None
    test_people: int | None = None  # predictions of this many people score the last ones (LSP's test set)
    people_scored: str = ""  # which of the file's people are scored, where not all of them (the table says it)

    def last(self, n: int) -> GroundTruth:
        """The last n people (the LSP test set of joints.mat), saying which they are."""
        total = len(self.keypoints)
        boxes = None if self.head_boxes is None else self.head_boxes[-n:]
        said = f"the LSP test set, people {total - n + 1}-{total} of {self.source}"
        images, ids = (None if names is None else names[-n:] for names in (self.images, self.image_ids))
        return replace(self, keypoints=self.keypoints[-n:], labelled=self.labelled[-n:], head_boxes=boxes,
                       images=images, image_ids=ids, people_scored=said)  # fmt: skip

    def subset(self, indices: np.ndarray) -> GroundTruth:
        boxes = None if self.head_boxes is None else self.head_boxes[indices]
        return replace(self, keypoints=self.keypoints[indices], labelled=self.labelled[indices], head_boxes=boxes)


def records_ground_truth(records: Any, skeleton: Skeleton) -> GroundTruth:
    """The ground truth of clpose records (0-based; head boxes from extras.head_box where every person has one)."""
    boxes, why = _head_boxes(records.extras, records.path)
    kpts = np.asarray(records.keypoints, dtype=np.float64)
    return GroundTruth(kpts[..., :2], kpts[..., 2] > 0, boxes, False, str(records.path), skeleton, why)


def _from_records(path: Path) -> GroundTruth:
    records = load_records(path)
    gt = records_ground_truth(records, get_skeleton(records.skeleton))
    gt.images = [records.images[j]["file"] for j in records.image_index]
    gt.image_ids = [records.images[j]["id"] for j in records.image_index]
    return gt


def _head_boxes(extras: list[Any], path: Any) -> tuple[np.ndarray | None, str]:
    """(N, 4) extras.head_box of every person (None, and why, where one has none); a hand-edited box that is not 4
    numbers is an error (cast, "12" would pass and a ragged list would crash)."""
    boxes = [e.get("head_box") if isinstance(e, dict) else None for e in extras]
    if any(b is None for b in boxes):
        return None, f"{path} has people without extras.head_box"
    for i, box in enumerate(boxes):
        if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) for v in box):
            raise ClposeError(f"{path}: people[{i}] extras.head_box is {short(box)}, expected [x1, y1, x2, y2] numbers")
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), ""


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Records (.json, any skeleton), MPII's gt_valid.mat or LSP's joints.mat, told apart by what they hold."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _from_records(path)
    mat = load_mat(path)
    if any(key in mat for key in GT_VALID_KEYS):
        return _gt_valid(path, mat)
    if "joints" in mat:
        return _lsp_joints(path, mat)
    raise ClposeError(
        f"{path}: expected LSP joints.mat (joints 3x14xN), MPII gt_valid.mat ({', '.join(GT_VALID_KEYS)}) or clpose "
        "records (.json)"
    )


def _lsp_joints(path: Path, mat: dict) -> GroundTruth:
    """LSP joints.mat (3 x 14 x N, every joint labelled, 1-based). Only LSP's own file, of 2000 people, has a test
    set (its last 1000): in a joints array of any other size, the last 1000 people are no set of anyone's."""
    arr = one_person(numeric_array(mat["joints"], path, "joints"), 3)
    if arr.ndim != 3 or arr.shape[:2] != (3, LSP.num_keypoints):
        raise ClposeError(f"{path}: expected LSP joints.mat with joints 3x14xN, got joints {shape_text(arr)}")
    kpts = arr[:2].transpose(2, 1, 0)
    why = f"{path} is LSP's joints.mat, which has no head boxes"
    test = LSP_TEST if len(kpts) == LSP_PEOPLE else None
    return GroundTruth(kpts, np.ones(kpts.shape[:2], dtype=bool), None, True, str(path), LSP, why, test_people=test)


def _gt_valid(path: Path, mat: dict) -> GroundTruth:
    """gt_valid.mat (pos_gt_src 16x2xN, jnt_missing 16xN, headboxes_src 2x2xN; 1-based)."""
    arrays = {}
    k = MPII.num_keypoints
    for key, shape in zip(GT_VALID_KEYS, ((k, 2), (k,), (2, 2)), strict=True):
        if key not in mat:
            raise ClposeError(f"{path} has no {key} (expected gt_valid.mat: {', '.join(GT_VALID_KEYS)})")
        arr = arrays[key] = one_person(numeric_array(mat[key], path, key), len(shape) + 1)
        if arr.ndim != len(shape) + 1 or arr.shape[: len(shape)] != shape:
            raise ClposeError(f"{path}: {key} has shape {shape_text(arr)}, expected {'x'.join(map(str, shape))}xN")
    pos = arrays["pos_gt_src"].transpose(2, 0, 1)
    missing = arrays["jnt_missing"].T > 0
    boxes = arrays["headboxes_src"].transpose(2, 0, 1).reshape(-1, 4)
    if not (len(pos) == len(missing) == len(boxes)):
        raise ClposeError(f"{path}: pos_gt_src, jnt_missing and headboxes_src disagree on the number of people")
    return GroundTruth(pos, ~missing, boxes, True, str(path), MPII)


def match_people(pred: PredictionFile, gt: GroundTruth) -> tuple[np.ndarray, GroundTruth]:
    """Predictions (N, K, 2) in the order of the ground truth's people, and the ground truth they score against.

    A file that says which person each prediction is (clpose predictions JSON: `index`, with `image` and
    `image_id`) is matched by what it says: an index given twice, one that is not a person of the ground truth,
    a person left out, or an image that is not that person's is an error naming the file and the index. Arrays
    (.mat, .h5, .npy) and JSON without indices hold the people in the ground truth's order, by the benchmarks'
    definition, and must hold exactly as many; where such a JSON names a person's image, it must be the image of the
    ground truth's person at that place (a shuffled file is refused, never scored by position). LSP's own joints.mat
    (2000 people) is also scored by its last 1000 people (the test set) when the predictions hold 1000.
    """
    m, n = len(pred.keypoints), len(gt.keypoints)
    if gt.test_people is not None and n > gt.test_people == m:
        gt, n = gt.last(m), m
    if pred.indices is None:
        if m != n:
            also = f" or {gt.test_people} (the LSP test set, its last {gt.test_people})" if gt.test_people else ""
            raise ClposeError(f"{pred.path} holds {m} people but {gt.source} has {n}; expected {n}{also}")
        for j in range(m):
            _check_image(pred, gt, j, j)
        return pred.keypoints, gt
    where = {}  # index -> the file's position
    for j, i in enumerate(pred.indices.tolist()):
        if not 0 <= i < n:
            raise ClposeError(f"{pred.path}: people[{j}] index {i} is not a person of {gt.source} (0 to {n - 1})")
        if i in where:
            raise ClposeError(f"{pred.path}: index {i} is given twice (people[{where[i]}] and people[{j}])")
        where[i] = j
        _check_image(pred, gt, j, i)
    if len(where) != n:
        missing = sorted(set(range(n)) - set(where))
        raise ClposeError(
            f"{pred.path}: no prediction for index {missing[0]} ({len(missing)} of the {n} people of {gt.source} "
            "missing): every person must be predicted"
        )
    out = np.empty((n, *pred.keypoints.shape[1:]))
    out[pred.indices] = pred.keypoints
    return out, gt


def _check_image(pred: PredictionFile, gt: GroundTruth, j: int, i: int) -> None:
    """The image the prediction at people[j] names must be the image of person i of the ground truth: the person its
    index names, or without indices the person at its place. Unchecked where either side names no image."""
    for key, said, truth in (("image", pred.images, gt.images), ("image_id", pred.image_ids, gt.image_ids)):
        if said is None or truth is None or said[j] is None or str(said[j]) == str(truth[i]):
            continue
        if pred.indices is None:
            raise ClposeError(
                f"{pred.path}: people[{j}] has {key} {short(said[j])}, but person {i} of {gt.source} is in {key} "
                f"{short(truth[i])}: the file has no index, so its people are scored in the ground truth's order; "
                "give each person its index"
            )
        raise ClposeError(
            f"{pred.path}: people[{j}] index {i} has {key} {short(said[j])}, but person {i} of {gt.source} is in "
            f"{key} {short(truth[i])}"
        )


def align(pred: np.ndarray, pred_one_based: bool, gt: GroundTruth) -> np.ndarray:
    """Predictions moved onto the ground truth's pixel convention."""
    return pred + (float(gt.one_based) - float(pred_one_based))
