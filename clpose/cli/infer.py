"""`clpose infer`: run a trained model on images, folders, videos or a camera."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.common import not_available


def infer(
    source: Annotated[str, typer.Argument(help="Image, folder of images, video file or camera index (0).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint (default: the latest best.pt under runs/).")
    ] = None,
    boxes: Annotated[str, typer.Option(help="full (whole frame) or a COCO results-format detections file.")] = "full",
    detector: Annotated[
        Literal["torchvision-fasterrcnn"] | None, typer.Option(help="Detect people with this detector.")
    ] = None,
    detector_weights: Annotated[Path | None, typer.Option(help="Local weights file of the detector.")] = None,
    det_threshold: Annotated[float, typer.Option(help="Detector score threshold.")] = 0.5,
    out: Annotated[Path | None, typer.Option(help="Annotated image, folder or video to write.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write keypoints per frame/image as JSON.")] = None,
    show: Annotated[bool, typer.Option(help="Show a live window (needs a display).")] = False,
    kpt_threshold: Annotated[float, typer.Option(help="Draw keypoints scoring at least this.")] = 0.3,
    smooth: Annotated[Literal["none", "oneeuro"], typer.Option(help="Temporal smoothing for video.")] = "none",
    min_cutoff: Annotated[float, typer.Option(help="One-Euro min cutoff frequency (Hz).")] = 1.0,
    beta: Annotated[float, typer.Option(help="One-Euro speed coefficient.")] = 0.05,
    batch: Annotated[int, typer.Option(help="Frames or crops per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Predict keypoints and write an annotated image/video and a JSON file."""
    not_available("infer", 7)
