"""`clpose vis`: look at the training targets and the augmented samples of a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.common import not_available

app = typer.Typer(help="Render PNGs of training targets and augmented samples.", no_args_is_help=True)


@app.command("targets")
def targets(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (only its data and codec sections are read).")],
    split: Annotated[str, typer.Option(help="Records split to draw from.")] = "train",
    num: Annotated[int, typer.Option(help="Number of samples to render.")] = 8,
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs.")] = Path("vis/targets"),
    seed: Annotated[int, typer.Option(help="Seed of the sample choice and augmentation.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. data.root=x.")] = None,
) -> None:
    """Draw the training targets of a recipe, one PNG per sample.

    Each PNG shows the augmented crop with its keypoints, the stride grid, heatmaps, the region Omega, the
    offsets as arrows, and the decoded keypoints with their error in pixels.
    """
    not_available("vis targets", 4)


@app.command("dataset")
def dataset(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (only its data section is read).")],
    split: Annotated[str, typer.Option(help="Records split to draw from.")] = "train",
    num: Annotated[int, typer.Option(help="Number of augmented samples in the grid.")] = 16,
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs.")] = Path("vis/dataset"),
    seed: Annotated[int, typer.Option(help="Seed of the sample choice and augmentation.")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. data.root=x.")] = None,
) -> None:
    """Grids of augmented samples with their keypoints (check flips, rotation, half-body)."""
    not_available("vis dataset", 4)
