"""`clpose prepare`: raw dataset files -> one records file per split."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.options import dataset_names, registered
from clpose.data.synthetic_video import MOTIONS, ClipSpec

CLIP_OPTIONS = {  # ClipSpec's field -> its option
    "width": "--video-size",
    "height": "--video-size",
    "fps": "--video-fps",
    "people": "--video-people",
    "motion": "--video-motion",
    "speed": "--video-speed",
    "enter": "--video-enter",
    "leave": "--video-leave",
}


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
    size: Annotated[int, typer.Option(help="synthetic: image side in pixels (64 to 4096).")] = 256,
    seed: Annotated[int, typer.Option(help="synthetic: random seed (same seed, same data).")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="synthetic: processes rendering images (at most one per core).")
    ] = None,
    video: Annotated[
        Path | None, typer.Option(help="synthetic: also render a clip of moving figures to this .mp4 file.")
    ] = None,
    frames: Annotated[int, typer.Option(help="synthetic: frames in the --video clip.")] = 90,
    video_size: Annotated[
        str, typer.Option(help="synthetic: the --video clip's WIDTHxHEIGHT in pixels (even), e.g. 1280x720.")
    ] = f"{ClipSpec.width}x{ClipSpec.height}",
    video_fps: Annotated[float, typer.Option(help="synthetic: the --video clip's frames per second.")] = ClipSpec.fps,
    video_people: Annotated[int, typer.Option(help="synthetic: figures in the --video clip.")] = ClipSpec.people,
    video_motion: Annotated[
        str,
        typer.Option(
            help="synthetic: how the --video clip's figures move: "
            + "; ".join(f"{name}: {motion.help}" for name, motion in MOTIONS.items())
            + ".",
        ),
    ] = ClipSpec.motion,
    video_speed: Annotated[
        float | None,
        typer.Option(
            help="synthetic: frame widths per second the --video clip's figures travel (walk and fast; default: "
            "the motion's); the ground truth's motion.step is the exact pixels per frame."
        ),
    ] = ClipSpec.speed,
    video_enter: Annotated[
        int, typer.Option(help="synthetic: how many of the --video-people enter the frame part-way through.")
    ] = ClipSpec.enter,
    video_leave: Annotated[
        int, typer.Option(help="synthetic: how many of the --video-people walk out of the frame part-way through.")
    ] = ClipSpec.leave,
) -> None:
    """Convert LSP, MPII or COCO files as downloaded into clpose records, or generate the synthetic set.

    Writes one records JSON per split plus summary.json, and prints people per split, labelled keypoints and
    images missing on disk. docs/datasets.md shows each download's layout.
    """
    from clpose.console import console
    from clpose.data.prepare import DATASETS, run_prepare
    from clpose.data.prepare.synthetic import clip_folder, video_outputs, write_video
    from clpose.data.synthetic_video import check_clip
    from clpose.errors import ClposeError

    width, height = _video_size(video_size)
    clip = ClipSpec(frames, width, height, video_fps, video_people, video_motion, video_speed, video_enter, video_leave)
    if video is None:
        given = [f for f in CLIP_OPTIONS if getattr(clip, f) != getattr(ClipSpec(frames), f)]
        if given:
            raise ClposeError(f"{CLIP_OPTIONS[given[0]]} describes the --video clip: give --video PATH too")
    if video is not None and dataset != "synthetic":
        raise ClposeError("--video renders synthetic figures: use it with `clpose prepare synthetic`")
    if video is not None:
        check_clip(clip)  # before the images are made
        clip_folder(video).check()  # the clip's files: never files of the user's named like them
    root = root or Path("data") / dataset
    out = out or root
    options = {"train": train, "val": val, "size": size, "seed": seed, "workers": workers}
    outputs = video_outputs(video) if video is not None else {}
    generated = not DATASETS[dataset].download  # a generated set takes the generator's options
    run_prepare(dataset, root, out, annotations, images, detections, options if generated else None, True, outputs)
    if video is not None:
        write_video(video, seed=seed, **dataclasses.asdict(clip))
        truth = outputs["the clip's ground truth"]
        console.print(
            f"video: {video} ({frames} frames, {clip.width}x{clip.height}, {clip.people} people, {clip.motion}; "
            f"ground truth in {truth})"
        )


def _video_size(text: str) -> tuple[int, int]:
    """--video-size "1280x720" -> (1280, 720): width x height, as a video's size is written."""
    from clpose.errors import ClposeError

    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ClposeError(f"--video-size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1280x720")
    return int(parts[0]), int(parts[1])
