"""`clpose train`: train a model from a recipe (single process or under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.common import not_available


def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/mpii_resnet50.yaml.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=0.002 (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/RECIPE_NAME, numbered -2, -3 if it exists).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue from a checkpoint file, or 'auto' for RUN_DIR/last.pt.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Train a model: checkpoints, metrics.jsonl and a training curve go to the run folder."""
    not_available("train", 5)
