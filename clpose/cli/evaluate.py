"""`clpose eval`: score a predictions file, or run a checkpoint over a split and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.common import not_available


def evaluate(
    target: Annotated[
        Path | None, typer.Argument(help="Run folder or checkpoint to evaluate (default: the latest run).")
    ] = None,
    metric: Annotated[
        Literal["pck", "pckh", "oks"] | None, typer.Option(help="pck (LSP), pckh (MPII) or oks (COCO).")
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Predictions file to score (.mat, .npy, COCO results or clpose JSON).")
    ] = None,
    annotations: Annotated[
        Path | None, typer.Option(help="Ground truth: joints.mat, gt_valid.mat, COCO JSON or clpose records.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="PCK threshold (default 0.2 pck, 0.5 pckh).")] = None,
    head: Annotated[
        Literal["top", "official"], typer.Option(help="PCKh Head column: head-top, or the official toolkit's mean.")
    ] = "top",
    sigmas: Annotated[str | None, typer.Option(help="OKS sigmas for a custom skeleton, comma-separated.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe to use instead of the run's recipe.yaml.")] = None,
    split: Annotated[str | None, typer.Option(help="Records split to evaluate (default: the recipe's).")] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Flip test (default: the recipe's).")] = None,
    boxes: Annotated[str | None, typer.Option(help="COCO person boxes: gt or a detections file.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    stages: Annotated[Literal["last", "all"], typer.Option(help="Multi-stage models: score every stage.")] = "last",
    save_predictions: Annotated[Path | None, typer.Option(help="Write the predictions to this file.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result table as JSON.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Score predictions with the official PCK@0.2, PCKh@0.5 or COCO OKS AP protocol."""
    not_available("eval", 6)
