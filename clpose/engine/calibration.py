"""Calibration and check crops of an int8 graph from the recipe's own data: people of the training split, cropped as
evaluation crops them (the PoseModel's crop maths: the box padded by data.box_padding, no augmentation), and
held-out labelled people (the validation split; else training people not used to calibrate), scored with the
recipe's metric. `clpose infer --calibration PATH` makes them from images or a video instead
(clpose.inference.calibration)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from clpose.config import Recipe
from clpose.data import dataset_from_records, whole_images
from clpose.data.records import Records, load_records, records_path
from clpose.engine.int8 import CALIBRATION_CROPS, CHECK_PEOPLE, Calibration, CheckSet
from clpose.engine.posemodel import PoseModel
from clpose.evaluation.metrics import ScoreOptions, dataset_metric
from clpose.io import sha256


def spread(n: int, count: int, offset: float = 0.0) -> np.ndarray:
    """`count` indices of `n` spread evenly (all of them where n <= count); `offset` in [0, 1) shifts them by that
    share of a step (another, disjoint set where the step is above 1)."""
    if n <= count:
        return np.arange(n)
    step = n / count
    return np.unique(np.minimum(n - 1, (np.arange(count) * step + offset * step).astype(np.int64)))


def records_calibration(
    recipe: Recipe, pose: PoseModel, count: int = CALIBRATION_CROPS, check: int = CHECK_PEOPLE
) -> Calibration | None:
    """Calibration from the recipe's training split (None where it is not on this machine)."""
    train = records_path(recipe.data.root, recipe.data.train_split)
    if not train.is_file():
        return None
    valid = records_path(recipe.data.root, recipe.data.val_split)
    sources = [train, *([valid] if valid.is_file() else [])]
    fingerprint = hashlib.sha256(
        "\n".join(
            [*(f"{p} {sha256(p)}" for p in sources), f"{count} {check}", repr(pose.input_hw), f"{pose.box_padding}"]
        ).encode()
    ).hexdigest()

    def make() -> tuple[torch.Tensor, CheckSet]:
        records = load_records(train)
        people = spread(len(records), count)
        crops = _crops(recipe, pose, records.subset(people))
        if valid.is_file():
            held, where = load_records(valid), valid
            chosen = spread(len(held), check)
        else:  # training people between those that calibrate
            held, where = records, train
            chosen = np.setdiff1d(spread(len(records), check, offset=0.5), people)
        subset = whole_images(held, chosen)
        dataset = dataset_from_records(recipe, subset, False, pose.codec)
        metric = dataset_metric(recipe.data.dataset, recipe.eval.metric)
        options = ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval)
        return crops, CheckSet(f"{len(subset)} people of {where}", dataset, metric, options)

    return Calibration(f"people of {train}, cropped as evaluation does", fingerprint, count, make)


def _crops(recipe: Recipe, pose: PoseModel, records: Records) -> torch.Tensor:
    dataset = dataset_from_records(recipe, records, False, pose.codec)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def default_calibration(pose: PoseModel) -> Calibration | None:
    """The recipe's own data, where it is on this machine (None otherwise, or for a PoseModel without a recipe)."""
    return records_calibration(pose.recipe, pose) if pose.recipe is not None else None
