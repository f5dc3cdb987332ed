"""`clpose demo`: the whole toolkit on built-in synthetic data, on a CPU, in about ten minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.common import not_available


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path("runs/demo"),
    minutes: Annotated[float, typer.Option(help="Training budget in minutes.")] = 10.0,
    fresh: Annotated[bool, typer.Option(help="Start over instead of reusing what exists.")] = False,
) -> None:
    """Generate synthetic data, train CLNet-ResNet-18, evaluate, render pictures and a video, and summarise."""
    not_available("demo", 8)
