"""The metric registry: what each metric is called, which columns its table has, the one number a run is judged by,
its default threshold and printed scale, and how it scores a model's predictions or a predictions file; and the types
its scorers take (Predictions, ScoreOptions).

Checkpoint evaluation (clpose.engine.evaluate), file scoring (`clpose eval --predictions`), training's validation,
the recipe's eval.metric, the CLI's --metric and the table printer all read `METRICS`: adding a metric is one entry
(`METRICS[name] = Metric(...)`, also from outside the package).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clpose.config import EvalConfig
from clpose.data.dataset import TopDownDataset
from clpose.errors import ClposeError
from clpose.evaluation import coco as coco_metric
from clpose.evaluation import scoring
from clpose.evaluation.pck import pck_from_records, pck_table


@dataclass
class Predictions:
    """Keypoints of every person of a dataset, in image pixels (0-based).

    Attributes:
        indices: (N,) record indices.
        keypoints: (S, N, K, 2) per stage (S = 1 unless every stage was asked for).
        scores: (S, N, K).
    """

    indices: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ScoreOptions:
    """What a scorer may need beyond predictions and ground truth (each metric reads its own)."""

    alpha: float | None = None  # PCK / PCKh threshold (None: the metric's default)
    stage: int = -1  # which stage of a multi-stage prediction
    head_official: bool = False  # PCKh Head column as the official toolkit computes it
    eval_cfg: EvalConfig | None = None  # OKS: rescoring and OKS-NMS settings
    annotations: Path | None = None  # OKS: the COCO annotation file, if not where the records say
    sigmas: list[float] | None = None  # OKS of a predictions file: a custom skeleton's sigmas


Table = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """A registered metric: everything the CLI, the recipes, training and the table printer need to know about it."""

    name: str
    title: str  # the printed table's title; "{alpha}" is filled in
    columns: tuple[str, ...]
    headline: str  # the column a run is judged by (best.pt, the demo's summary)
    default_alpha: float | None
    scale: float  # printed value = table value x scale (COCO's AP is stored in [0, 1])
    score_predictions: Callable[[TopDownDataset, Predictions, ScoreOptions], tuple[Table, list[dict] | None]]
    # a predictions file against an annotations file (`clpose eval --predictions`); None: the metric scores a
    # model's predictions only
    score_file: Callable[[Path, Path, ScoreOptions], Table] | None = None
    higher_is_better: bool = True  # PCK and AP; an error in pixels would be lower-is-better

    def improves(self, value: float, best: float) -> bool:
        """Whether `value` beats `best` (NaN: no best yet), in this metric's direction."""
        if math.isnan(best):
            return not math.isnan(value)
        return value > best if self.higher_is_better else value < best

    def alpha(self, options: ScoreOptions) -> float | None:
        return options.alpha if options.alpha is not None else self.default_alpha

    def value(self, table: Table) -> float:
        return float(table[self.headline])


PCK_COLUMNS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")  # the papers' PCK tables


def _head_boxes(dataset: TopDownDataset, indices: np.ndarray) -> np.ndarray:
    records = dataset.records
    boxes = [records.extras[i].get("head_box") for i in indices]
    if any(b is None for b in boxes):
        raise ClposeError(f"{records.path} has people without extras.head_box: PCKh needs head boxes")
    return np.array(boxes, dtype=np.float64)


def _pck_predictions(dataset: TopDownDataset, preds: Predictions, o: ScoreOptions) -> tuple[Table, None]:
    """PCK with the skeleton's normaliser (torso for LSP, the head box for MPII, the box for COCO-like data)."""
    skeleton, alpha = dataset.skeleton, METRICS["pck"].alpha(o)
    gt = dataset.records.keypoints[preds.indices]
    head = _head_boxes(dataset, preds.indices) if skeleton.pck_norm == "head_box" else None
    correct, counted = pck_from_records(preds.keypoints[o.stage], gt, skeleton, alpha, head)
    table = pck_table(correct, counted, skeleton)
    return {**table, "metric": "pck", "alpha": alpha, "people": len(gt), "joints_counted": int(counted.sum())}, None


def _pckh_predictions(dataset: TopDownDataset, preds: Predictions, o: ScoreOptions) -> tuple[Table, None]:
    gt = dataset.records.keypoints[preds.indices]
    head = _head_boxes(dataset, preds.indices)
    alpha = METRICS["pckh"].alpha(o)
    kp = preds.keypoints[o.stage]
    return scoring.pckh_table(kp, gt[..., :2], gt[..., 2] > 0, head, alpha, o.head_official, dataset.skeleton), None


def _oks_predictions(dataset: TopDownDataset, preds: Predictions, o: ScoreOptions) -> tuple[Table, list[dict]]:
    return scoring.score_oks_records(dataset, preds, o.eval_cfg or EvalConfig(), o.annotations, o.stage)


METRICS: dict[str, Metric] = {
    "pck": Metric(
        "pck",
        "PCK@{alpha}",
        PCK_COLUMNS,
        "Mean",
        0.2,
        1.0,
        _pck_predictions,
        lambda p, a, o: scoring.score_pck_file(p, a, METRICS["pck"].alpha(o)),
    ),
    "pckh": Metric(
        "pckh",
        "PCKh@{alpha}",
        (*PCK_COLUMNS, "Mean@0.1"),
        "Mean",
        0.5,
        1.0,
        _pckh_predictions,
        lambda p, a, o: scoring.score_pckh_file(p, a, METRICS["pckh"].alpha(o), o.head_official),
    ),
    "oks": Metric(
        "oks",
        "COCO keypoints (OKS), AP x 100",
        coco_metric.COLUMNS,
        "AP",
        None,
        100.0,
        _oks_predictions,
        lambda p, a, o: scoring.score_oks_file(p, a, o.sigmas),
    ),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ClposeError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
    return METRICS[name]


def dataset_metric(dataset_name: str, choice: str | None = "auto") -> Metric:
    """The metric asked for, or with "auto"/None the dataset's (clpose.data.prepare.DATASETS: PCKh for MPII, OKS for
    COCO, PCK for LSP and synthetic); PCK for records of a dataset clpose does not prepare."""
    from clpose.data.prepare import DATASETS

    if choice and choice != "auto":
        return get_metric(choice)
    entry = DATASETS.get(dataset_name)
    return get_metric(entry.metric if entry is not None else "pck")
