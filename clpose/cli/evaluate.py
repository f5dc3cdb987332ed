"""`clpose eval`: score a predictions file, or run a checkpoint over a split and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from clpose.cli.options import (
    Amp,
    Calibration,
    Compile,
    Device,
    EvalRuntime,
    Int8,
    Threads,
    metric_names,
    registered,
    save_format_names,
)
from clpose.config import ALPHA_RANGE

# Which options belong to which way in (one rule, checked by `_check_mode`): a predictions file (--predictions) or
# a checkpoint (RUN, or the latest run). The options in neither list (--metric, --annotations, --alpha, --head,
# --json) apply to both; --annotations names the ground truth of a file, or with a checkpoint the COCO annotation
# file or the MPII RELEASE file where the records' own is not found.
FILE_ONLY = ("sigmas",)  # a file's OKS sigmas; a checkpoint's are its skeleton's
CHECKPOINT_ONLY = (
    "target", "recipe", "split", "flip", "boxes", "batch", "stages", "save_predictions", "format_", "device", "amp",
    "runtime", "threads", "compile_", "int8", "calibration",
)  # fmt: skip
NEEDS = {  # an option that only shapes another one: (that option, what it does)
    "format_": ("save_predictions", "it says how that file is written"),
    "calibration": ("int8", "it gives the crops an int8 graph is calibrated on"),
}


def evaluate(
    ctx: typer.Context,
    target: Annotated[
        Path | None,
        typer.Argument(help="Run folder or checkpoint to evaluate (default: the latest best.pt under runs/)."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="pck (LSP, PCK@0.2), pckh (MPII, PCKh@0.5), oks (COCO AP) or another metric registered in "
            "clpose.evaluation.metrics.METRICS. Default: the dataset's.",
            callback=registered("--metric", metric_names),
            metavar="METRIC",
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="Predictions to score: .mat (preds / pos_pred_src / joints layout, 1-based), .h5 (preds, "
            "1-based; pip install 'clpose[h5]'), .npy (M x K x 2, 0-based), clpose predictions JSON, or COCO "
            "results JSON (oks)."
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="Ground truth: LSP joints.mat, MPII gt_valid.mat, a COCO keypoints JSON, or clpose "
            "records. With a checkpoint: the COCO annotation file, if not where the records say."
        ),
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="PCK threshold (default 0.2 for pck, 0.5 for pckh).")] = None,
    head: Annotated[
        Literal["top", "official"],
        typer.Option(help="PCKh Head column: head-top (the papers' tables) or the official toolkit's neck/top mean."),
    ] = "top",
    sigmas: Annotated[str | None, typer.Option(help="OKS sigmas of a custom skeleton, comma-separated.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe to use instead of the checkpoint's own.")] = None,
    split: Annotated[
        str | None, typer.Option(help="Records split to evaluate (default: the recipe's val split).")
    ] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Flip test (default: the recipe's).")] = None,
    boxes: Annotated[
        str | None, typer.Option(help="COCO person boxes: gt (the records') or a detections file (results format).")
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (default: the recipe's eval.batch_size).")] = None,
    stages: Annotated[
        Literal["last", "all"], typer.Option(help="Multi-stage models: score the last stage or every stage.")
    ] = "last",
    save_predictions: Annotated[
        Path | None,
        typer.Option(
            help="Write the predictions (also of an unlabelled split such as COCO test-dev or MPII test): "
            "person_keypoints_test-dev2017_NAME_results.json (COCO results), pred_keypoints_mpii.mat (MPII test "
            "submission), .mat (MPII preds / LSP joints layout), .npy, or clpose .json. docs/evaluation.md."
        ),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="Format of --save-predictions: auto (from the file name and the dataset) or a name in "
            "clpose.evaluation.submission.SAVE_FORMATS (docs/evaluation.md lists them; a wrong name is answered "
            "with the valid ones).",
            callback=registered("--format", save_format_names),
        ),
    ] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result table as JSON.")] = None,
    device: Device = "auto",
    amp: Amp = "auto",
    runtime: EvalRuntime = "torch",
    threads: Threads = None,
    compile_: Compile = False,
    int8: Int8 = False,
    calibration: Calibration = None,
) -> None:
    """Score predictions with the official PCK@0.2, PCKh@0.5 or COCO OKS AP protocol.

    Either a predictions file with --predictions and --annotations (no model), or a checkpoint (or run folder)
    run over its recipe's validation split. docs/evaluation.md describes the formats and conventions.
    """
    from clpose.config import check_option
    from clpose.errors import ClposeError
    from clpose.evaluation.scoring import versions
    from clpose.io import sha256
    from clpose.outputs import check_outputs

    _check_mode(ctx, predictions is not None)
    if batch is not None:
        check_option("--batch", batch, ">= 1")
    if alpha is not None:
        check_option("--alpha", alpha, ALPHA_RANGE)

    if predictions is not None:
        if metric is None or annotations is None:
            raise ClposeError("scoring a predictions file needs --metric and --annotations")
        check_outputs({"--json": json_out}, {"--predictions": predictions, "--annotations": annotations})
        _metric_options(metric, alpha, head, sigmas)
        tables = [_score_file(metric, predictions, annotations, alpha, head, sigmas)]
        settings: dict[str, Any] = {
            "predictions": str(predictions),
            "predictions_sha256": sha256(predictions),
            "annotations": str(annotations),
            "annotations_sha256": sha256(annotations),
        }
    else:
        from clpose.console import console
        from clpose.engine.checkpoint import latest_checkpoint
        from clpose.engine.evaluate import EvalOptions, evaluate_checkpoint

        if target is None:
            target = latest_checkpoint()
            console.print(f"evaluating the latest run: {target}")
        if int8 and not _given(ctx, "runtime"):
            runtime = "auto"  # an int8 graph runs in openvino or onnxruntime: not in eval's default, torch
        crops = None
        if calibration is not None:
            from clpose.inference.calibration import path_calibration, whole_frames

            crops = path_calibration(calibration, whole_frames, "each image one person")
        options = EvalOptions(
            recipe=recipe,
            split=split,
            flip=flip,
            boxes=boxes,
            batch=batch,
            stages=stages,
            device=device,
            amp=amp,
            runtime=runtime,
            threads=threads,
            compile_=compile_,
            int8=int8,
            calibration=crops,
            metric=metric,
            alpha=alpha,
            head_official=head == "official",
            annotations=annotations,
            save_predictions=save_predictions,
            save_format=format_,
            json_out=json_out,
        )
        run = evaluate_checkpoint(target, options)
        tables, settings = run.tables, run.settings
        if not tables:  # an unlabelled split: predicted and written, nothing to score
            console.print(
                f"the {settings['split']} split has no labels: nothing was scored; wrote {save_predictions} "
                f"({settings['predictions_format']} format; docs/evaluation.md says how to submit it)"
            )
    from clpose.evaluation.tables import print_tables

    if tables:
        print_tables(tables)
    if json_out is not None:
        from clpose.io import write_json

        final = dict(tables[-1]) if tables else {}
        if len(tables) > 1:
            final["stages"] = tables
        write_json(json_out, {**final, "settings": settings, "versions": versions()})


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave the parameter on the command line (not its default)."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (typer vendors click: compared by name)
    return source is not None and source.name == "COMMANDLINE"


def _shown(ctx: typer.Context, name: str) -> str:
    """A parameter as the user writes it: RUN for the argument, the option's spellings otherwise."""
    param = next(p for p in ctx.command.params if p.name == name)
    return "RUN" if name == "target" else "/".join([*param.opts, *param.secondary_opts])


def _check_mode(ctx: typer.Context, scoring_a_file: bool) -> None:
    """The one rule of which options go together: an option of the other way in than the one taken (a file with
    --predictions, else a checkpoint), or one whose partner is missing, is refused naming both (it would be
    ignored in silence)."""
    from clpose.errors import ClposeError

    for name in CHECKPOINT_ONLY if scoring_a_file else FILE_ONLY:
        if not _given(ctx, name):
            continue
        if scoring_a_file:
            raise ClposeError(
                f"{_shown(ctx, name)} cannot be used with --predictions: a predictions file is scored as it is, no "
                "checkpoint is run (use one or the other)"
            )
        raise ClposeError(
            f"{_shown(ctx, name)} applies to --predictions (a file) only: a checkpoint (RUN) is scored with its "
            "skeleton's sigmas"
        )
    for name, (partner, what) in NEEDS.items():
        if _given(ctx, name) and not _given(ctx, partner):
            raise ClposeError(f"{_shown(ctx, name)} needs {_shown(ctx, partner)}: {what}")


def _metric_options(metric: str, alpha: float | None, head: str, sigmas: str | None) -> None:
    """Options the metric does not read are refused, naming both (Metric.reads)."""
    from clpose.evaluation.metrics import get_metric

    given = [name for name, value in (("alpha", alpha), ("head", head == "official" or None), ("sigmas", sigmas))
             if value is not None]  # fmt: skip
    get_metric(metric).check_options(given)


def _score_file(
    metric: str, predictions: Path, annotations: Path, alpha: float | None, head: str, sigmas: str | None
) -> dict[str, Any]:
    from clpose.errors import ClposeError
    from clpose.evaluation.coco import check_sigmas
    from clpose.evaluation.metrics import ScoreOptions, get_metric

    scorer = get_metric(metric).score_file
    if scorer is None:
        raise ClposeError(
            f"--metric {metric} scores a checkpoint's predictions only (clpose eval RUN --metric {metric}); "
            "it reads no --predictions file"
        )
    values = None
    if sigmas:
        try:
            values = [float(v) for v in sigmas.split(",")]
        except ValueError:
            raise ClposeError(f"--sigmas {sigmas!r}: expected comma-separated numbers") from None
        values = check_sigmas(values, "--sigmas").tolist()
    options = ScoreOptions(alpha, head_official=head == "official", sigmas=values)
    return scorer(predictions, annotations, options)
