"""`clpose prepare`: raw dataset files -> one records file per split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.common import not_available


def prepare(
    dataset: Annotated[
        Literal["lsp", "mpii", "coco", "synthetic"], typer.Argument(help="Dataset to convert (or generate).")
    ],
    root: Annotated[
        Path | None, typer.Option(help="Folder with the files as downloaded (default: data/DATASET).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the records go (default: the --root folder).")] = None,
    detections: Annotated[
        Path | None,
        typer.Option(help="COCO: person detections (COCO results format) for the validation records."),
    ] = None,
    train: Annotated[int, typer.Option(help="synthetic: number of training images.")] = 4000,
    val: Annotated[int, typer.Option(help="synthetic: number of validation images.")] = 500,
    size: Annotated[int, typer.Option(help="synthetic: image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="synthetic: random seed (same seed, same data).")] = 0,
    video: Annotated[
        Path | None, typer.Option(help="synthetic: also render a clip of moving figures to this .mp4 file.")
    ] = None,
    frames: Annotated[int, typer.Option(help="synthetic: frames in the --video clip.")] = 90,
) -> None:
    """Convert LSP, MPII or COCO files as downloaded into clpose records, or generate the synthetic set.

    Writes one records JSON per split plus summary.json, and prints people per split, labelled keypoints and
    images missing on disk.
    """
    not_available("prepare", 4)
