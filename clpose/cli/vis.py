"""`clpose vis`: look at the training targets and the augmented samples of a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Render PNGs of training targets and augmented samples.", no_args_is_help=True)

SplitOpt = Annotated[str | None, typer.Option(help="Records split (default: the recipe's training split).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sample choice and augmentation.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. data.root=x.")]


def _dataset(recipe_path: Path, split: str | None, seed: int, overrides: list[str] | None):
    from clpose.data import build_dataset
    from clpose.engine.posemodel import recipe_codec
    from clpose.recipes import load_recipe

    recipe = load_recipe(recipe_path, overrides or [])
    recipe.train.seed = seed
    split = split or recipe.data.train_split
    return build_dataset(recipe, split, split == recipe.data.train_split, recipe_codec(recipe)), split


@app.command("targets")
def targets(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (only its data and codec sections are read).")],
    split: SplitOpt = None,
    num: Annotated[int, typer.Option(help="Number of samples to render.")] = 8,
    out: Annotated[Path, typer.Option(help="Output folder for the PNGs.")] = Path("vis/targets"),
    seed: SeedOpt = 0,
    joints: Annotated[int, typer.Option(help="Joint panels per sample.")] = 4,
    set_: SetOpt = None,
) -> None:
    """Draw the training targets of a recipe, one PNG per sample.

    Each PNG shows the augmented crop with its keypoints, the stride grid, heatmaps, the region Omega, the
    offsets as arrows, and the decoded keypoints with their error in pixels.
    """
    from clpose.console import console
    from clpose.vis import available, pick, render_targets, write_png

    dataset, split = _dataset(recipe, split, seed, set_)
    for i in pick(available(dataset.records), num, seed):
        path = out / f"targets_{split}_{i:06d}.png"
        write_png(path, render_targets(dataset, i, joints=joints))
        console.print(f"wrote {path}")


@app.command("dataset")
def dataset(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (only its data section is read).")],
    split: SplitOpt = None,
    num: Annotated[int, typer.Option(help="Number of augmented samples.")] = 16,
    columns: Annotated[int, typer.Option(help="Tiles per row; 16 tiles per PNG sheet.")] = 4,
    out: Annotated[Path, typer.Option(help="Output folder for the PNG sheets.")] = Path("vis/dataset"),
    seed: SeedOpt = 0,
    set_: SetOpt = None,
) -> None:
    """Grids of augmented samples with their keypoints (check flips, rotation, half-body)."""
    from clpose.console import console
    from clpose.vis import available, pick, render_dataset_sheet, write_png

    data, split = _dataset(recipe, split, seed, set_)
    chosen = pick(available(data.records), num, seed)
    for sheet, start in enumerate(range(0, len(chosen), 16)):
        path = out / f"dataset_{split}_{sheet:03d}.png"
        write_png(path, render_dataset_sheet(data, chosen[start : start + 16], columns))
        console.print(f"wrote {path}")
