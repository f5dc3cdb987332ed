"""Data: records (one format for every dataset), the affine crop pipeline, and the builders from a recipe.

The codec a dataset encodes with is built by the caller (clpose.engine.posemodel.recipe_codec): the data layer
does not know the models."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from clpose.codecs import Codec
from clpose.config import Recipe
from clpose.data.dataset import TopDownDataset
from clpose.data.records import Records, load_records, records_path
from clpose.errors import ClposeError
from clpose.skeletons import get_skeleton


def load_split(recipe: Recipe, split: str) -> Records:
    """A split's records, cut to data.train_limit / data.val_limit, checked against the recipe's dataset."""
    path = records_path(recipe.data.root, split)
    if not path.is_file():
        raise ClposeError(
            f"data.root {recipe.data.root} has no {split}.json: run `clpose prepare "
            f"{recipe.data.dataset} --out {recipe.data.root}` (or fix data.root / the split name)"
        )
    records = load_records(path)
    if records.dataset != recipe.data.dataset and recipe.data.dataset != records.skeleton:
        raise ClposeError(
            f"{path} holds {records.dataset} records but the recipe says data.dataset: {recipe.data.dataset}"
        )
    if split == recipe.data.train_split:
        if recipe.data.train_limit is not None and recipe.data.train_limit < len(records):
            records = records.subset(range(recipe.data.train_limit))
    elif recipe.data.val_limit is not None and recipe.data.val_limit < len(records):
        records = whole_images(records, np.arange(recipe.data.val_limit))
    return records


def whole_images(records: Records, people: np.ndarray) -> Records:
    """The images of `people` with everyone in them, so that an image-level metric (COCO AP over the annotation
    file's people) counts no person of a kept image as missed; marked partial (scored on those images only)."""
    chosen = np.unique(records.image_index[np.asarray(people, dtype=np.int64)])
    subset = records.subset(np.flatnonzero(np.isin(records.image_index, chosen)))
    subset.partial = True
    return subset


def build_dataset(recipe: Recipe, split: str, train: bool, codec: Codec) -> TopDownDataset:
    return dataset_from_records(recipe, load_split(recipe, split), train, codec)


def dataset_from_records(recipe: Recipe, records: Records, train: bool, codec: Codec) -> TopDownDataset:
    return TopDownDataset(
        records,
        get_skeleton(records.skeleton),
        codec,
        codec.input_hw,
        train=train,
        augment=recipe.data.augment,
        box_padding=recipe.data.box_padding,
        seed=recipe.train.seed,
    )


def check_images(records: Records, limit: int = 3) -> None:
    """A ClposeError, before any work is spent, when image files of the records are missing or empty (an
    interrupted copy): how many, and which. One stat per image; a damaged file that is not empty is found when
    it is decoded (training skips it with a warning, evaluation stops naming it)."""
    used = np.unique(records.image_index)
    bad = [str(p) for i in used if _unusable(p := records.image_dir / records.images[i]["file"])]
    if bad:
        raise ClposeError(
            f"{len(bad)} of {len(used)} images of {records.path} are missing or empty (first: {', '.join(bad[:limit])})"
        )


def _unusable(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return True
    return not stat.S_ISREG(info.st_mode) or info.st_size == 0


__all__ = ["TopDownDataset", "build_dataset", "check_images", "dataset_from_records", "load_split", "whole_images"]
