"""`clpose export`: ONNX or TorchScript export with a parity check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.common import not_available


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to export (best.pt or last.pt).")],
    format_: Annotated[Literal["onnx", "torchscript"], typer.Option("--format", help="Export format.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file (default: next to the checkpoint).")] = None,
    input_size: Annotated[str | None, typer.Option(help="Input size HxW (default: the recipe's).")] = None,
    dynamic_batch: Annotated[bool, typer.Option(help="Allow any batch size in the exported model.")] = False,
    with_decode: Annotated[bool, typer.Option(help="Include the decode: the model returns keypoints.")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
) -> None:
    """Export the network (optionally with the decode) and check it against PyTorch."""
    not_available("export", 7)
