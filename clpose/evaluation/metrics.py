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
from clpose.evaluation.undefined import column_value


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
    # the command-line options its scorers read (of OPTIONS); None: not said, every option is passed on
    reads: tuple[str, ...] | None = None
    oks_nms: bool = False  # its scorer applies the recipe's OKS-NMS (eval.oks_nms_thr, recorded with the result)

    def improves(self, value: float, best: float) -> bool:
        """Whether `value` beats `best` (NaN: no best yet), in this metric's direction; an undefined value (NaN)
        never does."""
        if math.isnan(value):
            return False
        if math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best

    def alpha(self, options: ScoreOptions) -> float | None:
        return options.alpha if options.alpha is not None else self.default_alpha

    def value(self, table: Table) -> float:
        """The headline as a float: NaN where undefined (clpose.evaluation.undefined), so it never becomes a best."""
        return column_value(table, self.headline)

    def check_options(self, given: list[str]) -> None:
        """A ClposeError naming the option and the metric where an option given on the command line (a key of
        OPTIONS) is one this metric does not read: it would be ignored in silence."""
        for option in given:
            if self.reads is not None and option not in self.reads:
                readers = [m.name for m in METRICS.values() if m.reads is None or option in m.reads]
                raise ClposeError(
                    f"{OPTIONS[option]} does not apply to --metric {self.name} (it applies to "
                    f"{', '.join(readers) or 'no registered metric'})"
                )


PCK_COLUMNS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")  # the papers' PCK tables
# what a metric may read: --annotations with a checkpoint (a file's ground truth is always read), the others anywhere
OPTIONS = {"alpha": "--alpha", "head": "--head official", "sigmas": "--sigmas", "annotations": "--annotations"}


def _keypoints(kind: scoring.PckKind) -> Callable[[TopDownDataset, Predictions, ScoreOptions], tuple[Table, None]]:
    """PCK with the skeleton's normaliser (torso for LSP, the head box for MPII, the box for COCO-like data), or
    PCKh (head boxes, Mean@0.1), of a model's predictions."""

    def score(dataset: TopDownDataset, preds: Predictions, o: ScoreOptions) -> tuple[Table, None]:
        alpha = METRICS[kind.name].alpha(o)
        return scoring.score_keypoints_records(kind, dataset, preds, alpha, o.head_official, o.stage), None

    return score


def _keypoints_file(kind: scoring.PckKind) -> Callable[[Path, Path, ScoreOptions], Table]:
    def score(predictions: Path, annotations: Path, o: ScoreOptions) -> Table:
        alpha = METRICS[kind.name].alpha(o)
        return scoring.score_keypoints_file(kind, predictions, annotations, alpha, o.head_official)

    return score


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
        _keypoints(scoring.PCK),
        _keypoints_file(scoring.PCK),
        reads=("alpha",),
    ),
    "pckh": Metric(
        "pckh",
        "PCKh@{alpha}",
        (*PCK_COLUMNS, "Mean@0.1"),
        "Mean",
        0.5,
        1.0,
        _keypoints(scoring.PCKH),
        _keypoints_file(scoring.PCKH),
        reads=("alpha", "head"),
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
        reads=("sigmas", "annotations"),
        oks_nms=True,
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
