"""`clpose prepare`: raw dataset files -> one records file per split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.options import dataset_names, registered


def prepare(
    dataset: Annotated[
        str,
        typer.Argument(
            help="Dataset to convert (or generate): lsp, mpii, coco, synthetic, or another registered in "
            "clpose.data.prepare.DATASETS.",
            callback=registered("dataset", dataset_names),
            metavar="DATASET",
        ),
    ],
    root: Annotated[
        Path | None, typer.Option(help="Folder with the files as downloaded (default: data/DATASET).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the records go (default: the --root folder).")] = None,
    annotations: Annotated[
        list[str] | None,
        typer.Option(
            help="SPLIT=FILE for a non-standard layout, e.g. val=test_coco.json; mpii also takes "
            "release=FILE and gt_valid=FILE. Relative paths may be relative to --root."
        ),
    ] = None,
    images: Annotated[
        list[str] | None, typer.Option(help="Image folder, or SPLIT=DIR, when not where the layout puts it.")
    ] = None,
    detections: Annotated[
        list[str] | None,
        typer.Option(
            help="coco: person detections (COCO results format), SPLIT=FILE: val=FILE (or a bare FILE) makes the "
            "val records from them (the ground-truth boxes go to val_gt); test-dev=FILE makes the test-dev split "
            "from annotations/image_info_test-dev2017.json and test2017/. Repeatable."
        ),
    ] = None,
    train: Annotated[int, typer.Option(help="synthetic: number of training images.")] = 4000,
    val: Annotated[int, typer.Option(help="synthetic: number of validation images.")] = 500,
    size: Annotated[int, typer.Option(help="synthetic: image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="synthetic: random seed (same seed, same data).")] = 0,
    workers: Annotated[int | None, typer.Option(help="synthetic: processes rendering images.")] = None,
    video: Annotated[
        Path | None, typer.Option(help="synthetic: also render a clip of moving figures to this .mp4 file.")
    ] = None,
    frames: Annotated[int, typer.Option(help="synthetic: frames in the --video clip.")] = 90,
) -> None:
    """Convert LSP, MPII or COCO files as downloaded into clpose records, or generate the synthetic set.

    Writes one records JSON per split plus summary.json, and prints people per split, labelled keypoints and
    images missing on disk. docs/datasets.md shows each download's layout.
    """
    from clpose.config import check_option
    from clpose.console import console
    from clpose.data.prepare import run_prepare
    from clpose.data.prepare.synthetic import video_outputs, write_video
    from clpose.errors import ClposeError

    if video is not None and dataset != "synthetic":
        raise ClposeError("--video renders synthetic figures: use it with `clpose prepare synthetic`")
    if video is not None:
        check_option("--frames", frames, ">= 1")
    root = root or Path("data") / dataset
    out = out or root
    options = {"train": train, "val": val, "size": size, "seed": seed, "workers": workers}
    clip = video_outputs(video) if video is not None else {}
    run_prepare(
        dataset, root, out, annotations, images, detections, options if dataset == "synthetic" else None, True, clip
    )
    if video is not None:
        write_video(video, frames, seed=seed)
        truth = clip["the clip's ground truth"]
        console.print(f"video: {video} ({frames} frames, ground truth in {truth})")
