"""`clpose train`: train a model from a recipe (single process or under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/mpii_resnet50.yaml.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key: --set train.lr=0.002 (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/RECIPE_NAME, numbered -2, -3 if it exists).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="'auto': continue the run in --out (or the newest runs/RECIPE_NAME[-N]) from its last.pt. A "
            "checkpoint file: continue its own run in its folder; with a new or empty --out, branch it there."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (torchrun sets the rank's GPU).")] = "auto",
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the run already in --out: all its files are deleted together, once the new run's setup has "
            "succeeded."
        ),
    ] = False,
) -> None:
    """Train a model: checkpoints, metrics.jsonl and a training curve go to the run folder.

    Several GPUs or machines: torchrun --nproc_per_node=N -m clpose train RECIPE (the recipe's batch size is the
    global batch). docs/training.md has the details.
    """
    from clpose.console import console
    from clpose.recipes import load_recipe
    from clpose.training.loop import fit

    result = fit(load_recipe(recipe, set_ or []), out=out, resume=resume, device=device, overwrite=overwrite)
    if result.message:  # nothing was trained: say what is there
        console.print(result.message)
    elif result.run_dir.exists():
        console.print(
            f"done: {result.epochs_done} epoch{'' if result.epochs_done == 1 else 's'}, best {result.metric} "
            f"{result.best_metric * result.scale:.1f}; {result.run_dir}/best.pt"
        )
