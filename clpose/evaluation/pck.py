"""PCK (LSP, torso-normalised), PCKh (MPII, head-normalised) and their tables: pure functions on arrays.

Protocol (docs/evaluation.md, the MPII toolkit and the SimpleBaseline/HRNet evaluation code):
- a joint is correct when its error <= alpha x the person's normaliser (an error equal to the threshold counts);
- joints that are not labelled are excluded, occluded-but-labelled joints count;
- a table column is the mean of its joints' rates (Shoulder = mean of left and right, ...);
- "Mean" is pooled over the skeleton's `mean_joints`: correct / labelled summed over those joints, i.e. the
  per-joint rates weighted by how often each joint is labelled;
- MPII's Mean@0.1 uses alpha = 0.1 exactly.
"""

from __future__ import annotations

import numpy as np

from clpose.errors import ClposeError
from clpose.skeletons import Skeleton

HEAD_SCALE = 0.6  # PCKh: head size = 0.6 x the head box diagonal (SC_BIAS of the MPII toolkit)


def torso_size(gt: np.ndarray, labelled: np.ndarray, joints: tuple[int, int]) -> np.ndarray:
    """(N,) distance between the two torso joints; 0 where either is unlabelled (the person is then skipped)."""
    a, b = joints
    size = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    return np.where(labelled[:, a] & labelled[:, b], size, 0.0)


def head_size(head_boxes: np.ndarray) -> np.ndarray:
    """(N,) 0.6 x the diagonal of head boxes given as (N, 4) x1, y1, x2, y2."""
    boxes = np.asarray(head_boxes, dtype=np.float64)
    return HEAD_SCALE * np.linalg.norm(boxes[:, 2:4] - boxes[:, 0:2], axis=-1)


def bbox_size(gt: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """(N,) larger side of the labelled joints' bounding box (a PCK normaliser for skeletons without a torso)."""
    lo = np.where(labelled[..., None], gt, np.inf).min(axis=1)
    hi = np.where(labelled[..., None], gt, -np.inf).max(axis=1)
    side = (hi - lo).max(axis=-1)
    return np.where(labelled.sum(axis=1) >= 2, side, 0.0)


def pck_correct(
    pred: np.ndarray, gt: np.ndarray, labelled: np.ndarray, norm: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per joint: (correct (N, K) bool, counted (N, K) bool).

    Args:
        pred, gt: (N, K, 2) in the same pixel convention.
        labelled: (N, K) ground-truth joints that count.
        norm: (N,) normaliser (torso or head size); people with norm <= 0 are skipped.
        alpha: threshold as a fraction of the normaliser.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ClposeError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (N, K, 2)")
    counted = np.asarray(labelled, dtype=bool) & (np.asarray(norm)[:, None] > 0)
    err = np.linalg.norm(pred - gt, axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (err <= alpha * np.asarray(norm, dtype=np.float64)[:, None]) & counted
    return correct, counted


def pck_table(
    correct: np.ndarray, counted: np.ndarray, skeleton: Skeleton, head_official: bool = False
) -> dict[str, float]:
    """Percentages per table column and the pooled Mean, from per-joint correct/counted (N, K) arrays."""
    hits = correct.sum(axis=0).astype(np.float64)
    totals = counted.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = 100.0 * hits / totals  # NaN for joints never labelled
    columns = dict(skeleton.pck_columns)
    if head_official and skeleton.official_head is not None:
        columns["Head"] = skeleton.official_head
    table = {name: _nanmean(rate[list(joints)]) for name, joints in columns.items()}
    mean = list(skeleton.mean_joints)
    table["Mean"] = float(100.0 * hits[mean].sum() / totals[mean].sum()) if totals[mean].sum() else float("nan")
    return table


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def pck_from_records(
    pred: np.ndarray, keypoints: np.ndarray, skeleton: Skeleton, alpha: float, head_boxes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PCK (torso or bbox) or PCKh (head boxes) for records-style ground truth (N, K, 3)."""
    gt, labelled = keypoints[..., :2], keypoints[..., 2] > 0
    if skeleton.pck_norm == "head_box":
        if head_boxes is None:
            raise ClposeError(f"PCKh on {skeleton.name} needs head boxes (extras.head_box of the records)")
        norm = head_size(head_boxes)
    elif skeleton.pck_norm == "torso":
        norm = torso_size(gt, labelled, skeleton.torso_joints)
    else:
        norm = bbox_size(gt, labelled)
    return pck_correct(pred, gt, labelled, norm, alpha)
