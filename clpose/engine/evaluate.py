"""Evaluate a checkpoint: rebuild its model and codec from the recipe it holds, predict the split, score it.

Used by `clpose eval RUN_DIR_OR_CHECKPOINT` (also under torchrun: prediction is sharded and gathered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clpose.console import console
from clpose.data import check_images, dataset_from_records, load_split
from clpose.data.records import Records, new_records
from clpose.engine import distributed
from clpose.engine.posemodel import PoseModel, checkpoint_skeleton, load_trained
from clpose.engine.predict import predict
from clpose.errors import ClposeError
from clpose.evaluation.metrics import ScoreOptions, dataset_metric
from clpose.evaluation.scoring import coco_annotations, coco_results, sha256
from clpose.evaluation.submission import choose_format, write_predictions
from clpose.outputs import check_outputs
from clpose.precision import resolve_precision

_SUBMISSION_HINT = {
    "coco": "person_keypoints_test-dev2017_NAME_results.json for the evaluation server",
    "mpii": "pred_keypoints_mpii.mat for the MPII authors",
    "lsp": "a .mat in the joints.mat layout",
}


@dataclass
class EvalRun:
    tables: list[dict[str, Any]]  # one per stage (one unless every stage was asked for)
    settings: dict[str, Any] = field(default_factory=dict)


def detection_records(base: Records, path: Path, annotations: Path) -> Records:
    """Records of COCO detections (results format) for the images of `annotations` (--boxes FILE)."""
    from clpose.data.prepare.coco import detected_people, load_coco
    from clpose.data.prepare.common import ImageTable, Report

    data = load_coco(annotations)
    table = ImageTable(base.image_dir)
    people = detected_people(path, data, table, Report())
    records = new_records(
        base.dataset, base.skeleton, base.split, table.images, people, base.image_dir, [str(annotations), str(path)]
    )
    records.path = path
    return records


def evaluate_checkpoint(
    checkpoint: Path,
    recipe_path: Path | None = None,
    split: str | None = None,
    flip: bool | None = None,
    boxes: str | None = None,
    batch: int | None = None,
    stages: str = "last",
    device: str = "auto",
    metric: str | None = None,
    alpha: float | None = None,
    head_official: bool = False,
    annotations: Path | None = None,
    save_predictions: Path | None = None,
    amp: str = "auto",
    save_format: str = "auto",
    json_out: Path | None = None,
) -> EvalRun:
    """Predict a split with a checkpoint and score it with the dataset's metric.

    `amp` is resolved on this machine (auto: clpose.precision); the recipe's train.amp is how it was trained,
    not how it must run."""
    state, recipe = load_trained(checkpoint, recipe_path)
    cfg = recipe.eval
    split = split or recipe.data.val_split
    flip = cfg.flip if flip is None else flip
    boxes = boxes or cfg.boxes
    d, dev = distributed.setup(device)
    try:
        precision = resolve_precision(amp, dev)
        if d.main:
            console.print(f"precision: {precision.describe()}")
        pose = PoseModel.from_recipe(
            recipe,
            checkpoint_skeleton(state, recipe, checkpoint),
            state,
            dev,
            precision,
            source=f"checkpoint {checkpoint}",
        )
        records = load_split(recipe, split)
        if boxes != "gt":
            records = detection_records(records, Path(boxes), coco_annotations(records, annotations))
        check_outputs(
            {"--save-predictions": save_predictions, "--json": json_out},
            {
                "the checkpoint": checkpoint,
                "--recipe": recipe_path,
                "--annotations": annotations,
                "--boxes": None if boxes == "gt" else boxes,
                f"the {split} records": records.path,
                f"a source of the {split} records": [s for s in records.sources if Path(s).is_file()],
            },
        )
        dataset = dataset_from_records(recipe, records, train=False, codec=pose.codec)
        if records.skeleton != pose.skeleton.name:
            raise ClposeError(
                f"{records.path} holds {records.skeleton} people but {checkpoint} predicts "
                f"{pose.skeleton.name} keypoints"
            )
        # COCO people from detections carry no keypoints but are scored against the annotation file: only test-dev
        # (image info, no annotations) is unlabelled there
        labelled = bool((records.keypoints[..., 2] > 0).any()) or (
            records.dataset == "coco" and records.split != "test-dev"
        )
        fmt = "none"
        if save_predictions is not None:
            fmt = choose_format(Path(save_predictions), save_format, records.dataset, split, labelled)
        elif not labelled:
            raise ClposeError(
                f"the {split} split of {records.path} has no labels, so nothing can be scored: write its predictions "
                f"with --save-predictions FILE ({_SUBMISSION_HINT.get(records.dataset, 'e.g. predictions.json')})"
            )
        check_images(dataset.records)
        scorer = dataset_metric(recipe.data.dataset, metric or cfg.metric)
        preds = predict(
            pose,
            dataset,
            batch or cfg.batch_size,
            flip,
            stages == "all",
            num_workers=min(4, recipe.data.num_workers),
            d=d,
        )
        tables, results = [], None
        if labelled:
            for s in range(preds.keypoints.shape[0]):
                options = ScoreOptions(alpha if alpha is not None else cfg.alpha, s, head_official, cfg, annotations)
                table, results = scorer.score_predictions(dataset, preds, options)
                tables.append(table)
        elif fmt == "coco":
            results = coco_results(dataset, preds, cfg)
        if save_predictions is not None and d.main:
            write_predictions(Path(save_predictions), fmt, dataset, preds, results, annotations)
    finally:
        distributed.teardown(d)
    settings = {
        "labelled": labelled,
        "predictions": None if save_predictions is None else str(save_predictions),
        "predictions_format": None if save_predictions is None else fmt,
        "checkpoint": str(checkpoint),
        "split": split,
        "records": str(dataset.records.path),
        "flip": flip,
        "precision": precision.name,
        "boxes": boxes,
        "oks_nms_thr": cfg.oks_nms_thr if scorer.name == "oks" else None,
    }
    if boxes != "gt":
        settings["boxes_sha256"] = sha256(boxes)
    return EvalRun(tables, settings)
