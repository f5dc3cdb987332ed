"""COCO keypoints: instance rescoring, OKS-NMS and scoring with pycocotools' COCOeval (never re-implemented).

A result whose keypoint coordinates are not all finite (NaN or inf) is a miss: its OKS with every ground-truth person
is 0, so it can only be a false positive (pycocotools itself would count a NaN OKS as a match, since `NaN < t` is
False). A result with a non-finite score is refused: the score ranks the results, and NaN has no rank.

Rescoring and OKS-NMS follow the SimpleBaseline/HRNet evaluation: instance score = box score x the mean of the
keypoint scores above 0.2 (0 if none); greedy NMS per image by score, suppressing candidates whose OKS to a kept
instance exceeds 0.9, with OKS computed on the COCO sigmas and the area of the padded crop box.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from clpose.errors import ClposeError
from clpose.evaluation.arrays import is_number, short
from clpose.evaluation.undefined import mark_undefined

COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")  # the first six of COCOeval.stats, in its order
COLUMN_AREAS = {"APM": "medium", "APL": "large"}  # pycocotools' area range of a column (the others: all)
COCO_SIGMAS = 17  # how many sigmas pycocotools' default kpt_oks_sigmas hold: COCO's 17 keypoints
# The smallest area of a person COCOeval scores (not a crowd, num_keypoints > 0), in px^2. COCO's `area` is the area
# of the person's segmentation in pixels^2, and a person with a labelled keypoint is seen in the image, so covers at
# least one pixel. OKS divides squared errors by it (plus machine epsilon): an area of 0 or 1e-300 turns every error,
# however small, into a miss, as undefined as a NaN area.
MIN_PERSON_AREA = 1.0


def rescore(box_scores: np.ndarray, keypoint_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """(N,) instance scores: box score x mean of the keypoint scores above `threshold` (0 where none is)."""
    s = np.asarray(keypoint_scores, dtype=np.float64)
    above = s > threshold  # False for NaN: a non-finite keypoint score adds nothing
    count = above.sum(axis=1)
    mean = np.where(count > 0, np.where(above, s, 0.0).sum(axis=1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean


def oks(a: np.ndarray, others: np.ndarray, area_a: float, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS between instance `a` (K, 2) and `others` (M, K, 2) with the mean of their areas as the scale."""
    variances = (2 * np.asarray(sigmas)) ** 2
    d2 = ((others - a[None]) ** 2).sum(axis=-1)
    scale = (area_a + np.asarray(areas)) / 2 + np.spacing(1)
    return np.exp(-d2 / variances[None] / scale[:, None] / 2).mean(axis=1)


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, threshold: float = 0.9
) -> list[int]:
    """Indices kept by greedy OKS-NMS (highest score first) among the instances of one image."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=np.int64)
        keep.append(int(i))
        if len(rest) == 0:
            break
        overlap = oks(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas)
        order = list(rest[overlap <= threshold])
    return keep


def to_results(
    image_ids: np.ndarray, keypoints: np.ndarray, keypoint_scores: np.ndarray, scores: np.ndarray, category_id: int = 1
) -> list[dict[str, Any]]:
    """COCO results format: one dict per instance with [x, y, score] triplets."""
    results = []
    for img, kp, ks, s in zip(image_ids, keypoints, keypoint_scores, scores, strict=True):
        triplets = np.concatenate([kp, ks[:, None]], axis=1).reshape(-1)
        results.append(
            {
                "image_id": int(img),
                "category_id": category_id,
                "keypoints": [round(float(v), 3) for v in triplets],
                "score": float(s),
            }
        )
    return results


def nms_per_image(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    threshold: float,
) -> np.ndarray:
    """Indices surviving OKS-NMS image by image (all of them when threshold >= 1)."""
    if threshold >= 1:
        return np.arange(len(scores))
    keep = []
    for img in np.unique(image_ids):
        idx = np.flatnonzero(image_ids == img)
        keep.extend(idx[oks_nms(keypoints[idx], scores[idx], areas[idx], sigmas, threshold)])
    return np.sort(np.array(keep, dtype=np.int64))


def load_ground_truth(path: str | Path):
    """pycocotools COCO object of a keypoints annotation file (quietly), with clpose errors."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise ClposeError(f"COCO annotations {path} do not exist")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            gt = COCO(str(path))
        except Exception as e:  # pycocotools asserts or raises KeyError/JSON errors on malformed files
            raise ClposeError(f"{path} is not a COCO annotation file ({type(e).__name__}: {e})") from None
    for key in ("annotations", "categories"):
        if not isinstance(gt.dataset.get(key), list):
            raise ClposeError(f"{path} has no {key} list (a COCO keypoints file has images, annotations, categories)")
    without = [a.get("id", i) for i, a in enumerate(gt.dataset["annotations"]) if "keypoints" not in a]
    if without:
        raise ClposeError(
            f"{path}: {len(without)} annotations have no keypoints (e.g. id {without[0]}): not a person_keypoints file"
        )
    seen: set[Any] = set()
    for ann in gt.dataset["annotations"]:
        check_annotation(ann, path)
        if ann["id"] in seen:  # pycocotools indexes by id: the second would silently replace the first
            raise ClposeError(f"{path}: annotation id {ann['id']} is given twice: each person needs its own id")
        seen.add(ann["id"])
    return gt


def check_annotation(ann: dict[str, Any], path: Path) -> None:
    """One ground-truth person as COCOeval reads it, or an error naming the file and the annotation id: an area,
    box or keypoint that is not a finite number (NaN or negative areas turned whole tables into -1 or let perfect
    predictions miss), iscrowd and num_keypoints (which decide whether a person is scored) not what COCO writes, and
    a scored person (not a crowd, labelled keypoints) of an area below MIN_PERSON_AREA (OKS divides by it)."""
    where = f"{path}: annotation id {ann.get('id')}"
    area = ann.get("area")
    if not is_number(area) or not math.isfinite(area) or area < 0:
        raise ClposeError(f"{where} has area {short(area)}: expected a finite number >= 0 (pixels^2)")
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) and math.isfinite(v) for v in box):
        raise ClposeError(f"{where} has bbox {short(box)}: expected [x, y, w, h], finite numbers")
    if box[2] < 0 or box[3] < 0:
        raise ClposeError(f"{where} has bbox {short(box)}: its width and height must be >= 0")
    values = ann["keypoints"]
    if not isinstance(values, list) or len(values) % 3 or not all(is_number(v) for v in values):
        raise ClposeError(f"{where} has keypoints {short(values)}: expected [x1, y1, v1, ...] numbers")
    if not all(math.isfinite(v) for v in values):
        raise ClposeError(f"{where} has keypoints that are not finite numbers (NaN or inf)")
    count = ann.get("num_keypoints")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ClposeError(f"{where} has num_keypoints {short(count)}: expected an integer >= 0")
    if ann.get("iscrowd") not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
        raise ClposeError(f"{where} has iscrowd {short(ann.get('iscrowd'))}: expected 0 or 1")
    if count > 0 and not ann["iscrowd"] and area < MIN_PERSON_AREA:
        raise ClposeError(
            f"{where} has area {short(area)}: a person with labelled keypoints (num_keypoints {count}, not a crowd) "
            f"needs an area of at least {MIN_PERSON_AREA:g} px^2 (OKS divides by it)"
        )


def nonfinite_results(results: list[dict[str, Any]]) -> list[int]:
    """Indices of the results whose keypoint coordinates (x, y of each triplet) are not all finite."""
    bad = []
    for i, r in enumerate(results):
        xy = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        if not np.isfinite(xy).all():
            bad.append(i)
    return bad


def _finite_cocoeval():
    """COCOeval whose OKS of a non-finite prediction is 0 (a miss) instead of NaN (which it matches)."""
    from pycocotools.cocoeval import COCOeval

    class FiniteCOCOeval(COCOeval):
        def computeOks(self, imgId: int, catId: int):  # pycocotools' name and signature
            ious = super().computeOks(imgId, catId)
            if isinstance(ious, np.ndarray):
                ious = np.where(np.isfinite(ious), ious, 0.0)
            return ious

    return FiniteCOCOeval


def evaluate_oks(
    gt,
    results: list[dict[str, Any]],
    sigmas: np.ndarray | None = None,
    source: str = "the predictions",
    image_ids: list[int] | None = None,
    annotations: str = "the annotations",
) -> dict[str, Any]:
    """COCOeval(gt, results, 'keypoints'): AP, AP50, AP75, APM, APL, AR (0..1, as pycocotools gives them), and
    "nonfinite": how many results were scored as misses because their keypoints are not finite. `image_ids` limits
    the evaluation to those images (a part of the split, e.g. data.val_limit); None scores every image of `gt`.

    pycocotools' -1 ("no ground truth in this area range") is an undefined column (None, with its reason:
    clpose.evaluation.undefined); ground truth of which no person can be scored is a ClposeError naming
    `annotations`, not a table of -1."""
    if not results:
        raise ClposeError("there are no predictions to score")
    known = set(gt.getImgIds())
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise ClposeError(f"{len(unknown)} predicted image ids are not in the annotations (e.g. {sorted(unknown)[:3]})")
    for i, r in enumerate(results):
        if not np.isfinite(float(r["score"])):
            raise ClposeError(f"{source}: result {i} has score {r['score']}: a COCO result needs a finite score")
    if sigmas is not None:
        sigmas = check_sigmas(sigmas, "sigmas")
    _check_keypoint_count(gt, len(sigmas) if sigmas is not None else COCO_SIGMAS, annotations)
    areas = scorable_areas(gt, image_ids, annotations)
    nonfinite = nonfinite_results(results)
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore"):
        dt = gt.loadRes(results)
        ev = _finite_cocoeval()(gt, dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = sigmas
        ev.params.useSegm = None
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    table: dict[str, Any] = {"nonfinite": len(nonfinite)}
    ranges = dict(zip(ev.params.areaRngLbl, ev.params.areaRng, strict=True))
    for column, value in zip(COLUMNS, ev.stats[:6], strict=True):  # COCOeval.summarize's order
        if value != -1:
            table[column] = float(value)
            continue
        label = COLUMN_AREAS.get(column, "all")
        lo, hi = ranges[label]
        if any(lo <= a <= hi for a in areas):  # pycocotools' -1 for a reason clpose does not know
            mark_undefined(table, column, "pycocotools gives -1 (undefined)")
        else:
            mark_undefined(table, column, f"no ground truth of {label} area ({_area_range(lo, hi)})")
    return {**{c: table[c] for c in COLUMNS}, **table}


def _area_range(lo: float, hi: float) -> str:
    """pycocotools' area range in words: "32^2 to 96^2 px^2", "above 96^2 px^2"."""

    def side(area: float) -> str:
        root = math.sqrt(area)
        return f"{root:g}^2" if root.is_integer() else f"{area:g}"

    return f"above {side(lo)} px^2" if hi >= 1e9 else f"{side(lo)} to {side(hi)} px^2"


def _check_keypoint_count(gt, k: int, annotations: str) -> None:
    for ann in gt.dataset["annotations"]:
        if len(ann["keypoints"]) != 3 * k:
            raise ClposeError(
                f"{annotations}: annotation id {ann['id']} has {len(ann['keypoints']) // 3} keypoints, but the "
                f"predictions and sigmas have {k}"
            )


def scorable_areas(gt, image_ids: list[int] | None, annotations: str) -> list[float]:
    """The areas of the ground-truth people COCOeval scores (not a crowd, num_keypoints > 0) in the scored images;
    none is a ClposeError saying why."""
    ids = set(gt.getImgIds() if image_ids is None else image_ids)
    cats = set(gt.getCatIds())
    anns = [a for a in gt.dataset["annotations"] if a["image_id"] in ids and a["category_id"] in cats]
    areas = [float(a["area"]) for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0]
    if not areas:
        crowds = sum(1 for a in anns if a["iscrowd"])
        why = (
            f"the {len(anns)} people of the scored images: crowds (iscrowd 1): {crowds}, no labelled keypoint "
            f"(num_keypoints 0): {len(anns) - crowds}"
            if anns
            else "the scored images have no annotated person"
        )
        raise ClposeError(f"{annotations}: no ground truth can be scored ({why})")
    return areas


def check_sigmas(sigmas: Any, what: str = "--sigmas") -> np.ndarray:
    """OKS sigmas as a float array: each finite and > 0 (a zero divides by zero, a negative or NaN one turns every
    OKS into a match or a miss)."""
    values = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if len(bad):
        raise ClposeError(
            f"{what}: every OKS sigma must be a finite number > 0, got {values[bad[0]]:g} (entry {bad[0] + 1})"
        )
    return values
