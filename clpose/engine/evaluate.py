"""Evaluate a checkpoint: rebuild its model and codec from the recipe it holds, predict the split, score it.

Used by `clpose eval RUN_DIR_OR_CHECKPOINT` (also under torchrun: prediction is sharded and gathered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clpose.config import Recipe
from clpose.console import console
from clpose.data import check_images, dataset_from_records, load_split
from clpose.data.dataset import TopDownDataset
from clpose.data.prepare import DATASETS
from clpose.data.records import Records, new_records
from clpose.engine import distributed
from clpose.engine.checkpoint import find_checkpoint
from clpose.engine.posemodel import PoseModel, checkpoint_skeleton, load_trained
from clpose.engine.predict import predict
from clpose.engine.runtimes import use_runtime
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Metric, ScoreOptions, dataset_metric
from clpose.evaluation.scoring import coco_annotations, coco_results
from clpose.evaluation.submission import SAVE_FORMATS, choose_format, write_predictions
from clpose.io import sha256
from clpose.outputs import check_outputs
from clpose.precision import resolve_precision

if TYPE_CHECKING:
    from clpose.engine.int8 import CalibrationSource


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


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate a checkpoint: what `clpose eval RUN` takes (None: the recipe's own setting)."""

    recipe: Path | None = None  # a recipe file to use instead of the checkpoint's own
    split: str | None = None  # default: the recipe's data.val_split
    flip: bool | None = None
    boxes: str | None = None  # COCO: "gt" or a detections file
    batch: int | None = None
    stages: str = "last"  # "last" or "all" (a table per stage of a multi-stage model)
    device: str = "auto"
    amp: str = "auto"  # resolved on this machine (clpose.precision), not the recipe's train.amp
    runtime: str = "torch"  # what runs the network (clpose.engine.runtimes): torch, onnxruntime, openvino or auto
    threads: int | None = None  # CPU threads (default: torch's)
    compile_: bool = False  # torch.compile the torch runtime
    int8: bool = False  # run the int8 graph (clpose.engine.int8), checked against fp32 when made
    calibration: CalibrationSource | None = None  # its crops (None: the recipe's own data)
    metric: str | None = None  # default: eval.metric, else the dataset's
    alpha: float | None = None
    head_official: bool = False  # PCKh's Head column as the official toolkit computes it
    annotations: Path | None = None  # the COCO annotation file (or MPII RELEASE file) if not where the records say
    save_predictions: Path | None = None
    save_format: str = "auto"
    json_out: Path | None = None  # only checked here (an output must not replace an input); the CLI writes it


@dataclass
class _Split:
    """The split being evaluated: its dataset (crops of its people), whether it has labels, and the format its
    predictions are saved in (a name in SAVE_FORMATS; None where they are not saved)."""

    name: str
    dataset: TopDownDataset
    labelled: bool
    fmt: str | None


def evaluate_checkpoint(checkpoint: Path, options: EvalOptions | None = None) -> EvalRun:
    """Predict a split with a checkpoint and score it with its metric (a table per stage); write the predictions
    when asked, also of a split without labels (a benchmark's test set)."""
    o = options or EvalOptions()
    state, recipe, digest = load_trained(checkpoint, o.recipe)
    cfg = recipe.eval
    flip = cfg.flip if o.flip is None else o.flip
    boxes = o.boxes or cfg.boxes
    d, dev = distributed.setup(o.device)
    try:
        precision = resolve_precision(o.amp, dev)
        skeleton = checkpoint_skeleton(state, recipe, checkpoint)
        pose = PoseModel.from_recipe(recipe, skeleton, state, dev, precision, source=f"checkpoint {checkpoint}")
        pose.checkpoint_sha256 = digest
        file = find_checkpoint(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint)
        runtime = use_runtime(
            pose, file, o.runtime, o.threads, o.compile_, channels_last=False, int8=o.int8, calibration=o.calibration
        )
        if d.main:
            console.print(runtime.describe())
        scorer = dataset_metric(recipe.data.dataset, o.metric or cfg.metric)
        scorer.check_options([n for n, v in (("alpha", o.alpha), ("head", o.head_official or None)) if v is not None])
        split = _split(checkpoint, recipe, pose, o, boxes)
        _check_annotations_apply(o, scorer, split, boxes)
        workers = min(4, recipe.data.num_workers)
        batch = o.batch or cfg.batch_size
        preds = predict(pose, split.dataset, batch, flip, o.stages == "all", num_workers=workers, d=d)
        tables, results = [], None
        if split.labelled:
            for stage in range(preds.keypoints.shape[0]):
                alpha = o.alpha if o.alpha is not None else cfg.alpha
                score = ScoreOptions(alpha, stage, o.head_official, cfg, o.annotations)
                table, results = scorer.score_predictions(split.dataset, preds, score)
                tables.append(table)
        elif split.fmt is not None and SAVE_FORMATS[split.fmt].coco_results:
            results = coco_results(split.dataset, preds, cfg)
        if o.save_predictions is not None and d.main:
            assert split.fmt is not None  # _split chose it
            write_predictions(Path(o.save_predictions), split.fmt, split.dataset, preds, results, o.annotations)
    finally:
        distributed.teardown(d)
    settings = {
        "labelled": split.labelled,
        "predictions": None if o.save_predictions is None else str(o.save_predictions),
        "predictions_format": None if o.save_predictions is None else split.fmt,
        "checkpoint": str(checkpoint),
        "split": split.name,
        "records": str(split.dataset.records.path),
        "flip": flip,
        "precision": runtime.precision.name,
        "runtime": runtime.to_json(),
        "boxes": boxes,
        "oks_nms_thr": cfg.oks_nms_thr if scorer.oks_nms else None,
    }
    if boxes != "gt":
        settings["boxes_sha256"] = sha256(boxes)
    return EvalRun(tables, settings)


def _check_annotations_apply(o: EvalOptions, scorer: Metric, split: _Split, boxes: str) -> None:
    """--annotations with a checkpoint names the file a metric scores against (Metric.reads: COCO's annotation
    file), the annotation file of detected boxes, or the MPII RELEASE file of a test submission; otherwise the
    records are the ground truth and it would be ignored in silence."""
    reads = scorer.reads is None or "annotations" in scorer.reads
    release = split.fmt is not None and SAVE_FORMATS[split.fmt].reads_release
    if o.annotations is None or reads or boxes != "gt" or release:
        return
    raise ClposeError(
        f"--annotations cannot be used with RUN and --metric {scorer.name}: the records ({split.dataset.records.path})"
        " are its ground truth; with a checkpoint, --annotations names a COCO annotation file or the MPII RELEASE "
        "file (--save-predictions pred_keypoints_mpii.mat)"
    )


def _split(checkpoint: Path, recipe: Recipe, pose: PoseModel, o: EvalOptions, boxes: str) -> _Split:
    """The records to evaluate (the recipe's split, or detections of its images), checked: no output may replace an
    input, the skeletons must agree, a split without labels needs --save-predictions, and its images must be there."""
    split = o.split or recipe.data.val_split
    records = load_split(recipe, split)
    entry = DATASETS.get(records.dataset)
    if boxes != "gt":
        if entry is None or not entry.annotation_file:  # people found by a detector are scored against one (COCO's)
            raise ClposeError(
                f"--boxes {boxes}: detected person boxes are evaluated on COCO (OKS AP over the annotation file); "
                f"{records.path} holds {records.dataset} records, whose people are scored in their own boxes"
            )
        records = detection_records(records, Path(boxes), coco_annotations(records, o.annotations))
    check_outputs(
        {"--save-predictions": o.save_predictions, "--json": o.json_out},
        {
            "the checkpoint": checkpoint,
            "--recipe": o.recipe,
            "--annotations": o.annotations,
            "--boxes": None if boxes == "gt" else boxes,
            f"the {split} records": records.path,
            f"a source of the {split} records": [s for s in records.sources if Path(s).is_file()],
        },
    )
    dataset = dataset_from_records(recipe, records, train=False, codec=pose.codec)
    if records.skeleton != pose.skeleton.name:
        raise ClposeError(
            f"{records.path} holds {records.skeleton} people but {checkpoint} predicts {pose.skeleton.name} keypoints"
        )
    # COCO people from detections carry no keypoints but are scored against the annotation file: only test-dev
    # (image info, no annotations) is unlabelled there
    labelled = bool((records.keypoints[..., 2] > 0).any()) or (
        entry is not None and entry.annotation_file and records.split not in entry.unlabelled_splits
    )
    fmt = None
    if o.save_predictions is not None:
        fmt = choose_format(Path(o.save_predictions), o.save_format, records.dataset, split, labelled)
    elif not labelled:
        raise ClposeError(
            f"the {split} split of {records.path} has no labels, so nothing can be scored: write its predictions "
            f"with --save-predictions FILE ({entry.submission_hint if entry else 'e.g. predictions.json'})"
        )
    check_images(dataset.records)
    return _Split(split, dataset, labelled, fmt)
