"""`clpose bench`: parameters, MACs, FPS and decode time of models, measured in one interleaved run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.common import not_available


def bench(
    model: Annotated[
        list[str] | None, typer.Option(help="Model name (repeatable; default CLNet-ResNet-50 vs SimpleBaseline-50).")
    ] = None,
    input_size: Annotated[str, typer.Option(help="Input size HxW, e.g. 256x192.")] = "256x256",
    keypoints: Annotated[int, typer.Option(help="Number of keypoints K.")] = 16,
    batch: Annotated[
        list[str] | None, typer.Option(help="Batch size (repeatable); 'max' searches the largest on CUDA.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    amp: Annotated[bool, typer.Option(help="Autocast: bf16 on CPU, fp16 on CUDA.")] = False,
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    fps: Annotated[bool, typer.Option(help="Measure speed (FPS, latency, decode time).")] = False,
    flops: Annotated[bool, typer.Option(help="Count parameters and MACs.")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per model and batch (median reported).")] = 30,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as a JSON list.")] = None,
    precision: Annotated[Literal["fp32", "bf16", "fp16"] | None, typer.Option(hidden=True)] = None,
) -> None:
    """Measure params, MACs, FPS, latency and decode time of models in one run.

    FPS is at batch 1 (the paper's FPS), FPS' at the largest batch given (the paper's FPS'). With neither
    --fps nor --flops both are measured.
    """
    not_available("bench", 3)
