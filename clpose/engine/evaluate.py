"""Predict over a dataset (batched, flip test, every stage on request) and score the result.

The forward pass, flip test and decode are the PoseModel's (clpose.engine.posemodel); predictions are mapped
back to image pixels through the inverse of each sample's affine matrix, the same matrix that cropped it. Under
torchrun each rank predicts every world-th sample and the ranks' results are gathered and put back in dataset
order, so the metric equals the single-process one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Subset

from clpose.data.dataset import TopDownDataset, WorkerLoader, worker_init
from clpose.engine.distributed import Dist, gather
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.metrics.pck import pck_from_records, pck_table


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


def predict(
    pose: PoseModel,
    dataset: TopDownDataset,
    batch_size: int = 64,
    flip: bool = True,
    stages: bool = False,
    num_workers: int = 0,
    d: Dist | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Predictions:
    """Keypoints of every sample of `dataset` (evaluation mode, no augmentation), in image pixels: the dataset's
    crops through `pose` (clpose.engine.posemodel), mapped back with each crop's own affine."""
    d = d or Dist()
    if tuple(dataset.input_hw) != pose.input_hw:
        raise ClposeError(f"the dataset makes {dataset.input_hw} (HxW) crops but the model runs {pose.input_hw}")
    shard = list(range(d.rank, len(dataset), d.world))
    loader = WorkerLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=worker_init,
        pin_memory=pose.device.type == "cuda",
    )
    idx, kpts, scores = [], [], []
    for batch in loader:
        k, s = pose.keypoints(batch["image"], batch["meta"]["affine"].numpy(), flip, stages)
        kpts.append(k)
        scores.append(s)
        idx.append(batch["meta"]["index"].numpy())
        if on_batch is not None:
            on_batch(len(batch["image"]))
    local = (np.concatenate(idx), np.concatenate(kpts, axis=1), np.concatenate(scores, axis=1)) if idx else (None,) * 3
    parts = [p for p in gather(local, d) if p[0] is not None]
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    return Predictions(
        indices[order],
        np.concatenate([p[1] for p in parts], axis=1)[:, order],
        np.concatenate([p[2] for p in parts], axis=1)[:, order],
    )


def metric_name(dataset_name: str, choice: str = "auto") -> str:
    """The dataset's metric: pckh for MPII, oks for COCO, pck otherwise (LSP, synthetic)."""
    if choice != "auto":
        return choice
    return {"mpii": "pckh", "coco": "oks"}.get(dataset_name, "pck")


def score_pck(
    dataset: TopDownDataset,
    preds: Predictions,
    metric: str,
    alpha: float | None = None,
    stage: int = -1,
    head_official: bool = False,
) -> dict[str, float]:
    """PCK (the skeleton's normaliser) or PCKh (head boxes) table of the predictions against the records."""
    records, skeleton = dataset.records, dataset.skeleton
    gt = records.keypoints[preds.indices]
    kp = preds.keypoints[stage]
    if metric == "pckh":
        from clpose.engine.scoring import pckh_table

        boxes = [records.extras[i].get("head_box") for i in preds.indices]
        if any(b is None for b in boxes):
            raise ClposeError(f"PCKh needs head boxes: {records.path} has people without extras.head_box")
        head = np.array(boxes, dtype=np.float64)
        table = pckh_table(kp, gt[..., :2], gt[..., 2] > 0, head, alpha or 0.5, head_official, skeleton)
        return {k: v for k, v in table.items() if k not in ("metric", "alpha", "head", "people", "joints_counted")}
    return pck_table(*pck_from_records(kp, gt, skeleton, alpha or 0.2), skeleton)


def score(
    dataset: TopDownDataset,
    preds: Predictions,
    metric: str,
    alpha: float | None = None,
    stage: int = -1,
    eval_cfg=None,
    annotations=None,
) -> dict[str, float]:
    """The metric's result table for the predictions of `dataset` (the keys are the table's columns)."""
    if metric in ("pck", "pckh"):
        return score_pck(dataset, preds, metric, alpha, stage)
    if metric == "oks":
        from clpose.config import EvalConfig
        from clpose.engine.scoring import score_oks_records

        return score_oks_records(dataset, preds, eval_cfg or EvalConfig(), annotations, stage)[0]
    raise ClposeError(f"unknown metric {metric!r}; valid: pck, pckh, oks")


def headline(table: dict[str, float], metric: str) -> float:
    """The one number a run is judged by: Mean for PCK/PCKh, AP for OKS."""
    return table["AP"] if metric == "oks" else table["Mean"]
