"""What `clpose eval` computes: result tables from files (no model) or from a checkpoint's predictions.

Every table's keys are the column names of the paper's tables (Head, Shoulder, ..., Mean and Mean@0.1 for
PCK/PCKh; AP, AP50, AP75, APM, APL, AR for COCO); `report` adds the metric, alpha, counts and the settings used.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from clpose import __version__
from clpose.console import warn
from clpose.errors import ClposeError
from clpose.evaluation import coco as coco_metric
from clpose.evaluation.ground_truth import GroundTruth, align, match_people, read_ground_truth, records_ground_truth
from clpose.evaluation.pck import pck_report
from clpose.evaluation.prediction_files import read_coco_results, read_prediction_file
from clpose.skeletons import COCO, PckNorm


def versions() -> dict[str, str]:
    out = {"clpose": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "pycocotools", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class PckKind:
    """What makes PCK or PCKh: its name, its normaliser (None: the skeleton's own, the torso for LSP, the head box
    for MPII, the box for COCO-like people), a second Mean at a fixed alpha, and whether the Head column may be the
    official toolkit's. The metric registry (clpose.evaluation.metrics) holds one per metric."""

    name: str
    norm: PckNorm | None
    mean_at: float | None = None
    head_column: bool = False


PCK = PckKind("pck", None)
PCKH = PckKind("pckh", "head_box", 0.1, True)


def keypoint_table(
    kind: PckKind, pred: np.ndarray, gt: GroundTruth, alpha: float, head_official: bool, source: str
) -> dict[str, Any]:
    """The PCK / PCKh table of predictions (N, K, 2) already in the order and pixel convention of `gt`: the one
    table both a checkpoint's predictions and a predictions file get (clpose.evaluation.pck.pck_report)."""
    norm = kind.norm or gt.skeleton.pck_norm
    if norm == "head_box" and gt.head_boxes is None:
        raise ClposeError(f"{gt.no_head_boxes or gt.source + ' has no head boxes'}: PCKh needs head boxes")
    official = head_official and kind.head_column
    table = pck_report(pred, gt.keypoints, gt.labelled, gt.skeleton, alpha, norm, gt.head_boxes, official,
                       kind.mean_at, gt.source)  # fmt: skip
    table.update(metric=kind.name, alpha=alpha)
    if gt.people_scored:  # a part of the file (LSP's test set): the table says which, the count alone does not
        table["people_scored"] = gt.people_scored
    if kind.head_column:
        table["head"] = "official" if official else "top"
    if table["nonfinite"]:
        warn(
            f"{source}: {table['nonfinite']} of {table['joints_counted']} scored joints are not finite (NaN or inf) "
            "and count as misses"
        )
    return table


def score_keypoints_file(
    kind: PckKind, predictions: Path, annotations: Path, alpha: float, head_official: bool = False
) -> dict[str, Any]:
    """PCK / PCKh of a predictions file against LSP's joints.mat, MPII's gt_valid.mat or clpose records, with the
    skeleton the ground truth holds (and the file, where it says one), the people matched by what the file says
    (clpose.evaluation.ground_truth.match_people)."""
    gt = read_ground_truth(annotations)
    found = read_prediction_file(predictions, gt.skeleton.num_keypoints, gt.skeleton.name, gt.source)
    pred, gt = match_people(found, gt)
    return keypoint_table(kind, align(pred, found.one_based, gt), gt, alpha, head_official, str(predictions))


def score_pck_file(
    predictions: Path, annotations: Path, alpha: float = 0.2, head_official: bool = False
) -> dict[str, Any]:
    """PCK@alpha with the skeleton's normaliser (LSP: torso = left shoulder to right hip of the ground truth)."""
    return score_keypoints_file(PCK, Path(predictions), Path(annotations), alpha, head_official)


def score_pckh_file(
    predictions: Path, annotations: Path, alpha: float = 0.5, head_official: bool = False
) -> dict[str, Any]:
    """PCKh@alpha (head size = 0.6 x head box diagonal; missing joints excluded) and Mean@0.1."""
    return score_keypoints_file(PCKH, Path(predictions), Path(annotations), alpha, head_official)


def score_keypoints_records(
    kind: PckKind, dataset, preds, alpha: float, head_official: bool = False, stage: int = -1
) -> dict[str, Any]:
    """PCK / PCKh of a model's predictions (clpose.evaluation.metrics.Predictions) on the dataset's records."""
    gt = records_ground_truth(dataset.records, dataset.skeleton).subset(preds.indices)
    return keypoint_table(kind, preds.keypoints[stage], gt, alpha, head_official, "the model's predictions")


def warn_nonfinite_results(table: dict[str, Any], count: int, source: str) -> None:
    """The warning for COCO results scored as misses because their keypoints are not finite."""
    if table.get("nonfinite"):
        warn(
            f"{source}: {table['nonfinite']} of {count} results have keypoints that are not finite (NaN or inf) and "
            "count as misses"
        )


def score_oks_file(predictions: Path, annotations: Path, sigmas: list[float] | None = None) -> dict[str, Any]:
    """COCO keypoint AP of a results file, by pycocotools' COCOeval."""
    gt = coco_metric.load_ground_truth(annotations)
    results = read_coco_results(predictions, len(sigmas) if sigmas else COCO.num_keypoints)
    table = coco_metric.evaluate_oks(
        gt, results, np.array(sigmas) if sigmas else None, str(predictions), annotations=str(annotations)
    )
    warn_nonfinite_results(table, len(results), str(predictions))
    return {**table, "metric": "oks", "instances": len(results), "images": len({r["image_id"] for r in results})}


def coco_annotations(records, override: Path | None = None) -> Path:
    """The COCO annotation file the records were prepared from (or --annotations)."""
    if override is not None:
        return Path(override)
    for source in records.sources:
        if source.lower().endswith(".json") and Path(source).is_file():
            return Path(source)
    raise ClposeError(
        f"the COCO annotation file named by {records.path} ({records.sources[:1]}) is not there: "
        "pass --annotations person_keypoints_val2017.json"
    )


def coco_results(dataset, preds, cfg, stage: int = -1) -> list[dict]:
    """The COCO results of a model's predictions on COCO records, as the evaluation server takes them: the
    SimpleBaseline/HRNet rescoring (box score x mean keypoint score above eval.kpt_score_thr), OKS-NMS per image
    (eval.oks_nms_thr, areas of the padded crop boxes), then image_id, category_id 1, 51 keypoint numbers, score."""
    from clpose.data.transforms import box_size

    records, skeleton = dataset.records, dataset.skeleton
    if skeleton.sigmas is None:
        raise ClposeError(f"OKS needs per-keypoint sigmas; skeleton {skeleton.name} has none")
    idx = preds.indices
    kpts, kscores = preds.keypoints[stage], preds.scores[stage]
    instance = coco_metric.rescore(records.box_scores[idx], kscores, cfg.kpt_score_thr)
    areas = np.array([np.prod(box_size(records.scales[i], dataset.input_hw, dataset.box_padding)) for i in idx])
    image_ids = np.array([records.image_id(i) for i in idx])
    sigmas = np.array(skeleton.sigmas)
    keep = coco_metric.nms_per_image(image_ids, kpts, instance, areas, sigmas, cfg.oks_nms_thr)
    return coco_metric.to_results(image_ids[keep], kpts[keep], kscores[keep], instance[keep])


def score_oks_records(
    dataset, preds, cfg, annotations: Path | None = None, stage: int = -1
) -> tuple[dict[str, Any], list[dict]]:
    """COCO AP of a model's predictions on COCO records: `coco_results`, then COCOeval.
    Returns the table and the COCO results that were scored."""
    records, skeleton = dataset.records, dataset.skeleton
    idx = preds.indices
    results = coco_results(dataset, preds, cfg, stage)
    sigmas = np.array(skeleton.sigmas)
    path = coco_annotations(records, annotations)
    gt = coco_metric.load_ground_truth(path)
    scope = sorted({records.image_id(i) for i in range(len(records))}) if records.partial else None
    table = coco_metric.evaluate_oks(gt, results, sigmas, "the model's predictions", scope, str(path))
    warn_nonfinite_results(table, len(results), "the model's predictions")
    images = len({r["image_id"] for r in results})
    return {**table, "metric": "oks", "instances": len(results), "images": images, "people": len(idx)}, results
