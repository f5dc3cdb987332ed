"""Ground truth for PCK / PCKh scoring: LSP's joints.mat, MPII's gt_valid.mat or clpose records, and `align`, which
moves predictions onto the ground truth's pixel convention.

Coordinate conventions: MATLAB files (.mat) hold 1-based pixels, as the datasets' own files do; clpose records hold
0-based pixels. PCK is unaffected by a common shift, but mixing conventions moves every joint by one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clpose.data.records import load_records
from clpose.errors import ClposeError
from clpose.evaluation.arrays import is_number, load_mat, numeric_array, one_person, shape_text, short
from clpose.skeletons import LSP, MPII


@dataclass
class GroundTruth:
    """N people: keypoints (N, K, 2), labelled (N, K), head boxes (N, 4) or None, one_based convention."""

    keypoints: np.ndarray
    labelled: np.ndarray
    head_boxes: np.ndarray | None
    one_based: bool
    source: str


def _from_records(path: Path, k: int) -> GroundTruth:
    records = load_records(path)
    if records.keypoints.shape[1] != k:
        raise ClposeError(f"{path} holds {records.keypoints.shape[1]} keypoints per person, expected {k}")
    return GroundTruth(
        records.keypoints[..., :2], records.keypoints[..., 2] > 0, _head_boxes(records.extras, path), False, str(path)
    )


def _head_boxes(extras: list[Any], path: Path) -> np.ndarray | None:
    """(N, 4) extras.head_box of every person, None where one has none; a hand-edited box that is not 4 numbers
    is an error (cast, "12" would pass and a ragged list would crash)."""
    boxes = [e.get("head_box") if isinstance(e, dict) else None for e in extras]
    if any(b is None for b in boxes):
        return None
    for i, box in enumerate(boxes):
        if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) for v in box):
            raise ClposeError(f"{path}: people[{i}] extras.head_box is {short(box)}, expected [x1, y1, x2, y2] numbers")
    return np.array(boxes, dtype=np.float64)


def read_lsp_ground_truth(path: str | Path) -> GroundTruth:
    """LSP joints.mat (3 x 14 x N, every joint labelled, 1-based) or clpose test records."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _from_records(path, LSP.num_keypoints)
    arr = load_mat(path).get("joints")
    if arr is None:
        raise ClposeError(f"{path}: expected LSP joints.mat with joints 3x14xN, got no 'joints' array")
    arr = one_person(numeric_array(arr, path, "joints"), 3)
    if arr.ndim != 3 or arr.shape[:2] != (3, LSP.num_keypoints):
        raise ClposeError(f"{path}: expected LSP joints.mat with joints 3x14xN, got joints {shape_text(arr)}")
    kpts = arr[:2].transpose(2, 1, 0)
    return GroundTruth(kpts, np.ones(kpts.shape[:2], dtype=bool), None, True, str(path))


def read_mpii_ground_truth(path: str | Path) -> GroundTruth:
    """gt_valid.mat (pos_gt_src 16x2xN, jnt_missing 16xN, headboxes_src 2x2xN; 1-based) or valid records."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        gt = _from_records(path, MPII.num_keypoints)
        if gt.head_boxes is None:
            raise ClposeError(f"{path}: PCKh needs extras.head_box for every person (prepare MPII with gt_valid.mat)")
        return gt
    mat = load_mat(path)
    arrays = {}
    k = MPII.num_keypoints
    for key, shape in (("pos_gt_src", (k, 2)), ("jnt_missing", (k,)), ("headboxes_src", (2, 2))):
        if key not in mat:
            raise ClposeError(f"{path} has no {key} (expected gt_valid.mat: pos_gt_src, jnt_missing, headboxes_src)")
        arr = arrays[key] = one_person(numeric_array(mat[key], path, key), len(shape) + 1)
        if arr.ndim != len(shape) + 1 or arr.shape[: len(shape)] != shape:
            raise ClposeError(f"{path}: {key} has shape {shape_text(arr)}, expected {'x'.join(map(str, shape))}xN")
    pos = arrays["pos_gt_src"].transpose(2, 0, 1)
    missing = arrays["jnt_missing"].T > 0
    boxes = arrays["headboxes_src"].transpose(2, 0, 1).reshape(-1, 4)
    if not (len(pos) == len(missing) == len(boxes)):
        raise ClposeError(f"{path}: pos_gt_src, jnt_missing and headboxes_src disagree on the number of people")
    return GroundTruth(pos, ~missing, boxes, True, str(path))


def align(pred: np.ndarray, pred_one_based: bool, gt: GroundTruth) -> np.ndarray:
    """Predictions moved onto the ground truth's pixel convention."""
    return pred + (float(gt.one_based) - float(pred_one_based))
