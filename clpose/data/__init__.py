"""Data: records (one format for every dataset), the affine crop pipeline, and the builders from a recipe."""

from __future__ import annotations

import numpy as np

from clpose.codecs import Codec, build_codec
from clpose.config import Recipe
from clpose.data.dataset import TopDownDataset
from clpose.data.records import Records, load_records, records_path
from clpose.errors import ClposeError
from clpose.models import check_input_size, model_options, output_stride
from clpose.skeletons import get_skeleton


def recipe_codec(recipe: Recipe) -> Codec:
    """The recipe's codec at the model's output stride (known without building the model)."""
    options = model_options(recipe.model)
    options.pop("pretrained", None)
    check_input_size(recipe.model.name, recipe.data.input_size, **options)
    h, w = recipe.data.input_size
    return build_codec(recipe.codec, (w, h), output_stride(recipe.model.name, **options))


def load_split(recipe: Recipe, split: str) -> Records:
    """A split's records, cut to data.train_limit / data.val_limit, checked against the recipe's dataset."""
    path = records_path(recipe.data.root, split)
    if not path.is_file():
        raise ClposeError(f"data.root {recipe.data.root} has no {split}.json: run `clpose prepare "
                          f"{recipe.data.dataset} --out {recipe.data.root}` (or fix data.root / the split name)")
    records = load_records(path)
    if records.dataset != recipe.data.dataset and recipe.data.dataset != records.skeleton:
        raise ClposeError(f"{path} holds {records.dataset} records but the recipe says data.dataset: "
                          f"{recipe.data.dataset}")
    limit = recipe.data.train_limit if split == recipe.data.train_split else recipe.data.val_limit
    if limit is not None and limit < len(records):
        records = records.subset(range(limit))
    return records


def build_dataset(recipe: Recipe, split: str, train: bool, codec: Codec | None = None) -> TopDownDataset:
    return dataset_from_records(recipe, load_split(recipe, split), train, codec)


def dataset_from_records(recipe: Recipe, records: Records, train: bool, codec: Codec | None = None) -> TopDownDataset:
    h, w = recipe.data.input_size
    return TopDownDataset(records, get_skeleton(records.skeleton), codec or recipe_codec(recipe), (w, h),
                          train=train, augment=recipe.data.augment, box_padding=recipe.data.box_padding,
                          seed=recipe.train.seed)


def check_images(records: Records, limit: int = 3) -> None:
    """A ClposeError when image files of the records are missing (say how many and which)."""
    used = np.unique(records.image_index)
    missing = [str(p) for i in used if not (p := records.image_dir / records.images[i]["file"]).is_file()]
    if missing:
        raise ClposeError(f"{len(missing)} of {len(used)} images of {records.path} are missing "
                          f"(first: {', '.join(missing[:limit])})")


__all__ = ["TopDownDataset", "build_dataset", "check_images", "dataset_from_records", "load_split", "recipe_codec"]
