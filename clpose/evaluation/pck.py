"""PCK (LSP, torso-normalised), PCKh (MPII, head-normalised) and their tables: pure functions on arrays.

Protocol (docs/evaluation.md, the MPII toolkit and the SimpleBaseline/HRNet evaluation code):
- a joint is correct when its error <= alpha x the person's normaliser (an error equal to the threshold counts);
- joints that are not labelled are excluded, occluded-but-labelled joints count;
- a person whose normaliser is zero or undefined (torso joints not labelled, a head box of zero size) cannot be
  scored: the person is excluded, and the table says how many and why (`person_sizes`, the one place normalisers
  are computed); where no one can be scored, there is no table but a one-line error;
- a table column is the mean of its joints' rates (Shoulder = mean of left and right, ...); a column none of whose
  joints is labelled is undefined (None, with its reason: clpose.evaluation.undefined);
- "Mean" is pooled over the skeleton's `mean_joints`: correct / labelled summed over those joints, i.e. the
  per-joint rates weighted by how often each joint is labelled;
- MPII's Mean@0.1 uses alpha = 0.1 exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clpose.errors import ClposeError
from clpose.evaluation.undefined import EXCLUDED, mark_undefined
from clpose.skeletons import PckNorm, Skeleton

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


def person_sizes(
    norm: PckNorm,
    gt: np.ndarray,
    labelled: np.ndarray,
    skeleton: Skeleton,
    head_boxes: np.ndarray | None,
    source: str,
) -> tuple[np.ndarray, dict[str, int]]:
    """The one place PCK and PCKh normalisers are computed: (N,) sizes (NaN where a person cannot be scored) and
    why people were excluded (reason -> how many).

    Ground truth that cannot be true is an error naming `source` and the person: a labelled joint or a head box
    that is not finite (NaN would silently turn into a miss or drop the person).
    """
    gt, labelled = np.asarray(gt, dtype=np.float64), np.asarray(labelled, dtype=bool)
    bad = labelled & ~np.isfinite(gt).all(axis=-1)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        raise ClposeError(
            f"{source}: person {i} joint {k} ({skeleton.keypoints[k]}) is labelled at {gt[i, k].tolist()}: "
            "ground truth must be finite numbers"
        )
    if norm == "head_box":
        if head_boxes is None:
            raise ClposeError(f"{source} has no head boxes: PCKh needs one per person")
        boxes = np.asarray(head_boxes, dtype=np.float64)
        if not np.isfinite(boxes).all():
            i = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
            raise ClposeError(f"{source}: the head box of person {i} is {boxes[i].tolist()}: not finite numbers")
        size = head_size(boxes)
        reasons = {"the head box has zero size": size <= 0}
    elif norm == "torso":
        a, b = skeleton.torso_joints or (0, 0)
        names = f"{skeleton.keypoints[a]}, {skeleton.keypoints[b]}"
        both = labelled[:, a] & labelled[:, b]
        size = torso_size(gt, labelled, (a, b))
        reasons = {
            f"torso joints ({names}) not both labelled": ~both,
            f"torso of zero length ({names})": both & (size <= 0),
        }
    else:
        enough = labelled.sum(axis=1) >= 2
        size = bbox_size(gt, labelled)
        reasons = {"fewer than 2 labelled joints": ~enough, "labelled joints all at one point": enough & (size <= 0)}
    sizes = np.where(np.isfinite(size) & (size > 0), size, np.nan)
    return sizes, {text: int(mask.sum()) for text, mask in reasons.items() if mask.any()}


def pck_correct(
    pred: np.ndarray, gt: np.ndarray, labelled: np.ndarray, norm: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per joint: (correct (N, K) bool, counted (N, K) bool).

    Args:
        pred, gt: (N, K, 2) in the same pixel convention.
        labelled: (N, K) ground-truth joints that count.
        norm: (N,) normaliser (torso or head size); people whose norm is not a number > 0 are skipped.
        alpha: threshold as a fraction of the normaliser.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ClposeError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (N, K, 2)")
    norm = np.asarray(norm, dtype=np.float64)
    counted = np.asarray(labelled, dtype=bool) & (np.isfinite(norm) & (norm > 0))[:, None]
    err = np.linalg.norm(pred - gt, axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (err <= alpha * norm[:, None]) & counted  # NaN error (a NaN prediction): a miss
    return correct, counted


def pck_table(
    correct: np.ndarray, counted: np.ndarray, skeleton: Skeleton, head_official: bool = False
) -> dict[str, Any]:
    """Percentages per table column and the pooled Mean, from per-joint correct/counted (N, K) arrays; a column
    none of whose joints is counted is undefined (None) and `table["undefined"]` says why."""
    hits = correct.sum(axis=0).astype(np.float64)
    totals = counted.sum(axis=0).astype(np.float64)
    columns = dict(skeleton.pck_columns)
    if head_official and skeleton.official_head is not None:
        columns["Head"] = skeleton.official_head
    table: dict[str, Any] = {}
    for name, joints in columns.items():
        seen = [k for k in joints if totals[k] > 0]
        if seen:
            table[name] = float(np.mean([100.0 * hits[k] / totals[k] for k in seen]))
        else:
            names = " or ".join(skeleton.keypoints[k] for k in joints)
            mark_undefined(table, name, f"no {names} is labelled among the people scored")
    mean = list(skeleton.mean_joints)
    if totals[mean].sum():
        table["Mean"] = float(100.0 * hits[mean].sum() / totals[mean].sum())
    else:
        mark_undefined(table, "Mean", "no joint is labelled among the people scored")
    return table


def pck_report(
    pred: np.ndarray,
    gt: np.ndarray,
    labelled: np.ndarray,
    skeleton: Skeleton,
    alpha: float,
    norm: PckNorm,
    head_boxes: np.ndarray | None = None,
    head_official: bool = False,
    mean_at: float | None = None,
    source: str = "the ground truth",
) -> dict[str, Any]:
    """The PCK / PCKh table of predictions (N, K, 2) against ground truth (N, K, 2) in the same order and pixel
    convention: columns, `Mean@{mean_at}` when asked, the counts, the excluded people and the undefined columns.
    Both ways in (a checkpoint's predictions, a predictions file) build their table here, so they agree exactly.
    No person or joint to score is a ClposeError naming `source` (the ground truth), not a table of n/a."""
    sizes, excluded = person_sizes(norm, gt, labelled, skeleton, head_boxes, source)
    correct, counted = pck_correct(pred, gt, labelled, sizes, alpha)
    table = pck_table(correct, counted, skeleton, head_official)
    if table["Mean"] is None:
        why = "; ".join(f"{text}: {count}" for text, count in excluded.items()) or "no joint of theirs is labelled"
        raise ClposeError(f"{source}: none of its {len(gt)} people can be scored ({why})")
    if mean_at is not None:
        table[f"Mean@{mean_at:g}"] = pck_table(*pck_correct(pred, gt, labelled, sizes, mean_at), skeleton)["Mean"]
    table.update(people=len(gt), joints_counted=int(counted.sum()))
    table["nonfinite"] = int((~np.isfinite(np.asarray(pred, dtype=np.float64)).all(axis=-1) & counted).sum())
    if excluded:
        table[EXCLUDED] = excluded
    return table


def pck_from_records(
    pred: np.ndarray, keypoints: np.ndarray, skeleton: Skeleton, alpha: float, head_boxes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PCK (torso or bbox) or PCKh (head boxes) for records-style ground truth (N, K, 3)."""
    gt, labelled = keypoints[..., :2], keypoints[..., 2] > 0
    if skeleton.pck_norm == "head_box" and head_boxes is None:
        raise ClposeError(f"PCKh on {skeleton.name} needs head boxes (extras.head_box of the records)")
    sizes, _ = person_sizes(skeleton.pck_norm, gt, labelled, skeleton, head_boxes, "the records")
    return pck_correct(pred, gt, labelled, sizes, alpha)
