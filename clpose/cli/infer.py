"""`clpose infer`: run a trained model on images, folders, videos or a camera."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.text import Text

from clpose.cli.options import Amp, Calibration, Compile, Device, Int8, Runtime, Threads


def say(*parts: str | tuple[str, str]) -> None:
    """One line on stdout, each part printed as it is (paths and names are never read as rich markup: `out [x].png`
    kept its `[x]`); a (text, style) part is styled."""
    from clpose.console import console

    console.print(Text.assemble(*parts), soft_wrap=True)


def infer(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Image, folder of images, video file, or camera index (0).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint or run folder (default: the latest best.pt under runs/).")
    ] = None,
    boxes: Annotated[
        str,
        typer.Option(
            help="Person boxes: full (the whole frame is one person) or a COCO results-format file, keyed by "
            "image file name or by integer image_id (--boxes-ids), its boxes in the image as displayed (EXIF "
            "orientation applied)."
        ),
    ] = "full",
    boxes_ids: Annotated[
        Literal["auto", "index", "number"],
        typer.Option(
            help="How integer image_id of --boxes name images: index (0-based position in sorted name order; a "
            "video's 0-based frame index), number (the number in the file name: 397133 = 000000397133.jpg, 1 = "
            "00001.png; a video's 1-based frame number) or auto (the one every id fits; ids that fit both are "
            "refused)."
        ),
    ] = "auto",
    detector: Annotated[
        str | None,
        typer.Option(
            help="Detect people with a torchvision COCO detector, its weights fetched by name once and cached: a name "
            "of clpose.weights.DETECTORS (`clpose weights` lists them with their COCO box AP; "
            "ssdlite320_mobilenet_v3_large is the fast one, fasterrcnn_resnet50_fpn_v2 the most accurate; their time "
            "per frame is in docs/inference.md)."
        ),
    ] = None,
    detector_weights: Annotated[
        Path | None, typer.Option(help="A local copy of the detector's COCO state dict (instead of the cache).")
    ] = None,
    det_threshold: Annotated[float, typer.Option(help="Least detection score of a person box.")] = 0.5,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Annotated output: an image, a folder (for a folder), or a video (.mp4/.avi) with the "
            "input's frame count and fps."
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Keypoints, scores, boxes and track ids per frame or image.")
    ] = None,
    show: Annotated[bool, typer.Option(help="Show a live window (needs a display; q stops).")] = False,
    kpt_threshold: Annotated[
        float, typer.Option(help="Draw keypoints scoring at least this; smoothing ignores those below.")
    ] = 0.3,
    smooth: Annotated[
        Literal["none", "oneeuro"], typer.Option(help="Temporal smoothing of video keypoints (One-Euro filter).")
    ] = "none",
    min_cutoff: Annotated[float, typer.Option(help="One-Euro cutoff at rest (Hz): lower is smoother.")] = 1.0,
    beta: Annotated[float, typer.Option(help="One-Euro speed coefficient: higher follows fast motion better.")] = 0.05,
    batch: Annotated[int, typer.Option(help="Frames per forward pass (when people are found in every frame).")] = 8,
    detect_every: Annotated[
        int | None,
        typer.Option(
            help="Video: find people (--detector, --boxes) every N frames and follow them between from their own "
            "keypoints of the frame before; a person lost is looked for at the next frame. Default: 2 with a "
            "--detector (docs/inference.md measures what it costs), 1 (every frame) otherwise.",
        ),
    ] = None,
    track_score: Annotated[
        float,
        typer.Option(help="With --detect-every: a followed person whose mean keypoint score is below this is dropped."),
    ] = 0.3,
    flip: Annotated[bool, typer.Option(help="Flip test (about twice the network time).")] = False,
    cuda_graphs: Annotated[
        bool,
        typer.Option(help="On a GPU, replay the network from CUDA graphs (one per batch shape; no effect elsewhere)."),
    ] = True,
    device: Device = "auto",
    amp: Amp = "auto",
    runtime: Runtime = "auto",
    threads: Threads = None,
    compile_: Compile = False,
    int8: Int8 = False,
    calibration: Calibration = None,
) -> None:
    """Predict keypoints and write an annotated image/video and a JSON file.

    Ctrl-C stops early and still finalises the video and the JSON. docs/inference.md has examples.
    """
    from clpose.engine.checkpoint import latest_checkpoint
    from clpose.errors import ClposeError
    from clpose.inference.predictor import Predictor
    from clpose.inference.run import InferOptions, check_output_kinds, run_infer
    from clpose.outputs import check_outputs
    from clpose.weights import detector_builder

    options = InferOptions(
        boxes=boxes,
        boxes_ids=boxes_ids,
        detector=detector,
        detector_weights=detector_weights,
        det_threshold=det_threshold,
        out=out,
        json_out=json_out,
        show=show,
        kpt_threshold=kpt_threshold,
        smooth=smooth,
        min_cutoff=min_cutoff,
        beta=beta,
        batch=batch,
        detect_every=detect_every,
        track_score=track_score,
        calibration=calibration,
    )
    check_output_kinds(source, options)  # an --out that does not fit the source is said before the model loads
    if detector is not None:
        detector_builder(detector)
    elif detector_weights is not None:
        raise ClposeError("--detector-weights FILE needs --detector NAME (the network those weights are for)")
    if boxes_ids != "auto" and (boxes == "full" or detector is not None):
        raise ClposeError(f"--boxes-ids {boxes_ids} says how a --boxes FILE names images; there is no boxes file here")
    if checkpoint is None:
        checkpoint = latest_checkpoint()
        say(f"using the latest checkpoint: {checkpoint}")
    check_outputs({"--out": out, "--json": json_out}, {"--checkpoint": checkpoint})
    if calibration is not None and not int8:
        raise ClposeError("--calibration gives the crops an int8 graph is calibrated on: add --int8")
    if int8 and ctx.get_parameter_source("runtime").name != "COMMANDLINE":
        runtime = "auto"  # an int8 graph runs in openvino or onnxruntime, whatever $CLPOSE_RUNTIME says
    crops = None
    if calibration is not None:
        from clpose.inference.calibration import infer_calibration

        check_outputs({}, {"--calibration": calibration})
        crops = infer_calibration(calibration, options)
    predictor = Predictor.from_checkpoint(
        checkpoint, device, flip, amp, runtime, threads, compile_, int8=int8, calibration=crops
    )
    say(predictor.runtime.describe())
    if predictor.device.type == "cuda":
        why_not = predictor.pose.use_cuda_graphs(cuda_graphs)
        say(f"CUDA graphs: {'on' if predictor.pose.cuda_graphs else 'off'}" + (f" ({why_not})" if why_not else ""))
    report = run_infer(source, predictor, options)
    rate = report.fps
    status = "stopped (Ctrl-C or SIGTERM) after" if report.interrupted else "done:"
    say(f"{status} {report.frames} frames, {report.people} people, {rate:.1f} frames/s ({report.shares()})")
    if report.failed_files:
        by_why: dict[str, list[str]] = {}
        for name in report.failed_files:
            by_why.setdefault(report.failed_why.get(name, "unreadable"), []).append(name)
        named = "; ".join(f"({why}): {', '.join(names)}" for why, names in by_why.items())
        say((f"{len(report.failed_files)} images could not be read and were skipped", "yellow"), f" {named}")
    elif report.failed:
        say(
            (f"{report.failed} frames could not be read", "yellow"),
            " (a truncated or damaged video); the readable ones were predicted",
        )
    if predictor.runtime.compiled and (seconds := predictor.pose.runner.compile_seconds):
        sizes = ", ".join(str(s) for s in sorted(seconds))
        say(f"torch.compile took {sum(seconds.values()):.1f} s of the run (batch sizes {sizes})")
    for line in report.outputs:
        say(f"wrote {line}")
    if report.interrupted:
        raise typer.Exit(130)
