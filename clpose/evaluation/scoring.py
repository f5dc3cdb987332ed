"""What `clpose eval` computes: result tables from files (no model) or from a checkpoint's predictions.

Every table's keys are the column names of the paper's tables (Head, Shoulder, ..., Mean and Mean@0.1 for
PCK/PCKh; AP, AP50, AP75, APM, APL, AR for COCO); `report` adds the metric, alpha, counts and the settings used.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from clpose import __version__
from clpose.console import warn
from clpose.errors import ClposeError
from clpose.evaluation import coco as coco_metric
from clpose.evaluation.ground_truth import align, read_lsp_ground_truth, read_mpii_ground_truth
from clpose.evaluation.pck import head_size, pck_correct, pck_table, torso_size
from clpose.evaluation.prediction_files import read_coco_results, read_predictions
from clpose.skeletons import COCO, LSP, MPII

LSP_TEST = 1000  # the LSP test set: the last 1000 people of joints.mat


def versions() -> dict[str, str]:
    out = {"clpose": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "pycocotools", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def score_pck_file(predictions: Path, annotations: Path, alpha: float = 0.2) -> dict[str, Any]:
    """LSP PCK@alpha (torso = left shoulder to right hip of the ground truth, all labelled joints count)."""
    gt = read_lsp_ground_truth(annotations)
    pred, one_based = read_predictions(predictions, LSP.num_keypoints)
    n, m = len(gt.keypoints), len(pred)
    if m != n:
        if annotations.suffix.lower() == ".mat" and m == LSP_TEST and n > LSP_TEST:
            gt = replace(gt, keypoints=gt.keypoints[-LSP_TEST:], labelled=gt.labelled[-LSP_TEST:])
        else:
            raise ClposeError(
                f"{predictions} holds {m} people but {annotations} has {n}; expected {n}"
                + (f" or {LSP_TEST} (the LSP test set, its last 1000)" if n > LSP_TEST else "")
            )
    norm = torso_size(gt.keypoints, gt.labelled, LSP.torso_joints)
    correct, counted = pck_correct(align(pred, one_based, gt), gt.keypoints, gt.labelled, norm, alpha)
    table = {**pck_table(correct, counted, LSP), "metric": "pck", "alpha": alpha, "people": len(gt.keypoints)}
    table["joints_counted"] = int(counted.sum())
    return {**table, "nonfinite": nonfinite_joints(pred, counted, str(predictions))}


def score_pckh_file(
    predictions: Path, annotations: Path, alpha: float = 0.5, head_official: bool = False
) -> dict[str, Any]:
    """MPII PCKh@alpha (head size = 0.6 x head box diagonal; missing joints excluded) and Mean@0.1."""
    gt = read_mpii_ground_truth(annotations)
    pred, one_based = read_predictions(predictions, MPII.num_keypoints)
    if len(pred) != len(gt.keypoints):
        raise ClposeError(f"{predictions} holds {len(pred)} people but {annotations} has {len(gt.keypoints)}")
    table = pckh_table(align(pred, one_based, gt), gt.keypoints, gt.labelled, gt.head_boxes, alpha, head_official)
    return {**table, "nonfinite": nonfinite_joints(pred, gt.labelled, str(predictions))}


def nonfinite_joints(pred: np.ndarray, counted: np.ndarray, source: str) -> int:
    """How many counted joints of `pred` (M, K, 2) are not finite; they score as misses (an error compared with a
    threshold is False for NaN), and a warning says so."""
    bad = ~np.isfinite(pred).all(axis=-1) & np.asarray(counted, dtype=bool)
    if bad.any():
        warn(
            f"{source}: {int(bad.sum())} of {int(np.sum(counted))} scored joints are not finite (NaN or inf) and count "
            "as misses"
        )
    return int(bad.sum())


def warn_nonfinite_results(table: dict[str, Any], count: int, source: str) -> None:
    """The warning for COCO results scored as misses because their keypoints are not finite."""
    if table.get("nonfinite"):
        warn(
            f"{source}: {table['nonfinite']} of {count} results have keypoints that are not finite (NaN or inf) and "
            "count as misses"
        )


def pckh_table(
    pred: np.ndarray,
    gt: np.ndarray,
    labelled: np.ndarray,
    head_boxes: np.ndarray,
    alpha: float,
    head_official: bool = False,
    skeleton=MPII,
) -> dict[str, Any]:
    norm = head_size(head_boxes)
    correct, counted = pck_correct(pred, gt, labelled, norm, alpha)
    table = pck_table(correct, counted, skeleton, head_official)
    table["Mean@0.1"] = pck_table(*pck_correct(pred, gt, labelled, norm, 0.1), skeleton, head_official)["Mean"]
    return {
        **table,
        "metric": "pckh",
        "alpha": alpha,
        "head": "official" if head_official else "top",
        "people": len(gt),
        "joints_counted": int(counted.sum()),
    }


def score_oks_file(predictions: Path, annotations: Path, sigmas: list[float] | None = None) -> dict[str, Any]:
    """COCO keypoint AP of a results file, by pycocotools' COCOeval."""
    gt = coco_metric.load_ground_truth(annotations)
    results = read_coco_results(predictions, len(sigmas) if sigmas else COCO.num_keypoints)
    table = coco_metric.evaluate_oks(gt, results, np.array(sigmas) if sigmas else None, str(predictions))
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
    gt = coco_metric.load_ground_truth(coco_annotations(records, annotations))
    scope = sorted({records.image_id(i) for i in range(len(records))}) if records.partial else None
    table = coco_metric.evaluate_oks(gt, results, sigmas, "the model's predictions", image_ids=scope)
    warn_nonfinite_results(table, len(results), "the model's predictions")
    return {**table, "metric": "oks", "instances": len(results), "people": len(idx)}, results
