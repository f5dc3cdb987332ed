"""Predict over a dataset (batched, flip test, every stage on request); clpose.evaluation.metrics scores the result.

The forward pass, flip test and decode are the PoseModel's (clpose.engine.posemodel); predictions are mapped
back to image pixels through the inverse of each sample's affine matrix, the same matrix that cropped it. Under
torchrun each rank predicts every world-th sample and the ranks' results are gathered and put back in dataset
order, so the metric equals the single-process one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import Subset

from clpose.data.dataset import TopDownDataset, WorkerLoader, worker_init
from clpose.engine.distributed import Dist, gather
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Predictions


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
