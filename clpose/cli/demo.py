"""`clpose demo`: the whole toolkit on built-in synthetic data, on a CPU, in about ten minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for everything the demo makes (under runs/ so that `clpose infer` finds its checkpoint)."
        ),
    ] = Path("runs/demo"),
    minutes: Annotated[float, typer.Option(help="Training budget in minutes (the data scales down below 10).")] = 10.0,
    fresh: Annotated[
        bool,
        typer.Option(help="Start over: first remove what an earlier demo wrote in --out (only that: its manifest)."),
    ] = False,
) -> None:
    """Generate synthetic data, train CLNet-ResNet-18, evaluate, render pictures and a video, and summarise.

    Everything goes through the same code as the individual commands; re-running reuses what exists.
    """
    from clpose.demo import run_demo
    from clpose.demo_report import print_summary

    print_summary(run_demo(out, minutes, fresh))
