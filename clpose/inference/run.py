"""The `clpose infer` loop: read frames in batches, find person boxes, predict, track and smooth, draw, write.

Outputs are staged in temporary files and moved into place together once checked (all or none); Ctrl-C or SIGTERM
stops the loop and still finalises the annotated video and the JSON.
The time of each stage (read, boxes, crop, network, decode, track, draw/write) is measured and reported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from clpose.config import check_option
from clpose.console import console, warn
from clpose.engine.runtimes import torch_threads, torch_threads_beside
from clpose.errors import ClposeError
from clpose.inference.detector import BoxesFile, PersonDetector
from clpose.inference.follow import BoxFollower
from clpose.inference.photos import list_images
from clpose.inference.pipeline import FrameReader, OutputWriter
from clpose.inference.predictor import Predictor, full_image_box, usable_boxes
from clpose.inference.results import (
    DETECT_EVERY,
    STAGES,
    InferOptions,
    InferReport,
    RunOutputs,
    draw,
    skipped_boxes_warning,
)
from clpose.inference.smoothing import PoseTracker
from clpose.inference.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Frame, Source, has_display, source_kind
from clpose.io import prepare_target
from clpose.outputs import check_outputs
from clpose.progress import ProgressBar
from clpose.signals import stop_requested
from clpose.speed.timing import synchronize

if TYPE_CHECKING:
    from clpose.inference.detector_int8 import DetectorFrames

__all__ = ["STAGES", "InferOptions", "InferReport", "check_output_kinds", "draw", "run_infer"]

BoxProvider = Callable[[Frame], tuple[np.ndarray, np.ndarray]]


def box_provider(
    opts: InferOptions, predictor: Predictor, src: Source
) -> tuple[BoxProvider, BoxesFile | None, PersonDetector | None]:
    """Where each frame's person boxes come from, and the boxes file (it says at the end whether its entries matched
    the frames) or the detector when they come from one."""
    if opts.detector is not None:
        info = predictor.runtime  # the detector runs where the pose network runs (an SSD's graph; see detector.py)
        detector = PersonDetector(
            opts.detector,
            opts.detector_weights,
            predictor.device,
            opts.det_threshold,
            runtime=info.runtime if info is not None else "torch",
            threads=info.threads if info is not None else None,
            precision=predictor.precision,
            calibration=_detector_frames(opts, predictor) if predictor.precision.name == "int8" else None,
        )
        console.print(f"detector {detector.name}: {detector.runtime_info.describe()}", soft_wrap=True)
        return (lambda f: detector.boxes(f.image)), None, detector
    if opts.boxes != "full":
        boxes_file = BoxesFile(Path(opts.boxes), opts.det_threshold, predictor.skeleton.num_keypoints, opts.boxes_ids)
        names = [p.name for p in src.files] if src.kind in ("image", "folder") else None
        boxes_file.match(names, src.count)  # ids that fit the frames two ways are refused here, before any work
        return (lambda f: boxes_file.boxes(f.index, f.name)), boxes_file, None
    return (lambda f: (full_image_box(f.image)[None], np.ones(1))), None, None


def _detector_frames(opts: InferOptions, predictor: Predictor) -> DetectorFrames | None:
    """--int8's frames for the detector: --calibration PATH's, else the recipe's training images (None: neither)."""
    from clpose.inference.detector_int8 import path_frames, recipe_frames

    if opts.calibration is not None:
        return path_frames(opts.calibration)
    return recipe_frames(predictor.pose.recipe)


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _timed_frames(frames: Iterator[Frame], report: InferReport) -> Iterator[Frame]:
    """Frames read in the calling thread (--show: the window wants it), their reading timed."""
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        report.seconds["read"] += time.perf_counter() - start
        if frame is None:
            return
        yield frame


@contextlib.contextmanager
def _timed(report: InferReport, stage: str, device: torch.device | None = None) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if device is not None:
        synchronize(device)
    report.seconds[stage] += time.perf_counter() - start


def check_output_kinds(source: str, opts: InferOptions) -> None:
    """Refuse outputs that do not fit the source, before any work: a video read into x.png wrote one image for all
    its frames, an image or a folder written to x.mp4 made a folder named x.mp4."""
    kind, out = source_kind(source), opts.out
    suffix = out.suffix.lower() if out is not None else ""
    if out is not None and kind in ("video", "camera") and suffix not in VIDEO_SUFFIXES:
        raise ClposeError(f"--out {out}: a video source is annotated as a video; give a .mp4 or .avi name")
    if out is not None and kind in ("image", "folder") and suffix in VIDEO_SUFFIXES:
        what = "an image" if kind == "image" else "a folder of images"
        where = "an image name (.png, .jpg) or a folder" if kind == "image" else "a folder"
        raise ClposeError(f"--out {out}: {what} is annotated as images, not as a video; give {where}")
    if out is not None and kind == "folder" and suffix in IMAGE_SUFFIXES:
        raise ClposeError(f"--out {out}: a folder of images needs a folder to write into, not an image name")
    if opts.show and not has_display():
        raise ClposeError("--show needs a display (no DISPLAY or WAYLAND_DISPLAY); use --out instead")
    check_outputs(*_paths(source, kind, opts))
    files = [opts.json_out] + ([out] if kind in ("video", "camera") or suffix in IMAGE_SUFFIXES else [])
    for path in files:  # a folder where the file goes, or a file above it, is said now rather than after the run
        if path is not None and kind is not None:  # (a missing source is said by Source, with no folder made)
            prepare_target(path)


def _paths(source: str, kind: str | None, opts: InferOptions) -> tuple[dict, dict]:
    """(outputs, inputs) of a run for the output-path guard: the annotated files (one per image of a folder) and the
    JSON; the source's files, the boxes file and the detector's weights."""
    path, out = Path(source), opts.out
    images: list[Path] = []
    if kind == "folder":  # the folder's readable images (a symlink loop is skipped by the run, and named)
        entries, unreadable = list_images(path)
        images = [p for p in entries if p.name not in unreadable]
    annotated: list[Path] = []
    if out is not None and kind == "image":
        annotated = [out if out.suffix.lower() in IMAGE_SUFFIXES else out / path.name]
    elif out is not None and kind == "folder":
        annotated = [out / image.name for image in images]
    elif out is not None:
        annotated = [out]
    inputs = {
        "the source": images if kind == "folder" else (path if kind in ("image", "video") else None),
        "--boxes": None if opts.boxes == "full" else opts.boxes,
        "--detector-weights": opts.detector_weights,
    }
    return {"--out": annotated, "--json": opts.json_out}, inputs


def detect_every(opts: InferOptions, kind: str | None) -> int:
    """--detect-every as it applies: a detector's default is DETECT_EVERY (docs/inference.md measures it); a boxes
    file or the whole frame cost nothing to look up, so their default is every frame; images are each detected."""
    if kind not in ("video", "camera"):
        return 1
    if opts.detect_every is not None:
        return opts.detect_every
    return DETECT_EVERY if opts.detector is not None else 1


def run_infer(source: str, predictor: Predictor, opts: InferOptions, show_progress: bool = True) -> InferReport:
    """Predict every frame of `source` and write the requested outputs."""
    check_option("--batch", opts.batch, ">= 1")
    check_option("--det-threshold", opts.det_threshold, "[0, 1]")
    check_option("--kpt-threshold", opts.kpt_threshold, "[0, 1]")
    check_option("--track-score", opts.track_score, "[0, 1]")
    check_option("--min-cutoff", opts.min_cutoff, "> 0")
    check_option("--beta", opts.beta, ">= 0")
    if opts.detect_every is not None:
        check_option("--detect-every", opts.detect_every, ">= 1")
    check_output_kinds(source, opts)
    src = Source(source)
    try:
        boxes_of, boxes_file, detector = box_provider(opts, predictor, src)
    except BaseException:
        src.close()
        raise
    video = src.kind in ("video", "camera")
    tracker = None
    if video:
        smooth = opts.smooth == "oneeuro"
        tracker = PoseTracker(
            smooth=smooth, min_cutoff=opts.min_cutoff, beta=opts.beta, score_threshold=opts.kpt_threshold
        )
    every = detect_every(opts, src.kind)
    follower = BoxFollower(every, opts.kpt_threshold, opts.track_score) if every > 1 else None
    outputs = RunOutputs(src, opts, predictor)
    outputs.boxes_reading = boxes_file.reading_text if boxes_file is not None else None
    outputs.detector_runtime = detector.runtime_info if detector is not None else None
    report = InferReport(detect_every=every if video else None)
    step = _Step(predictor, boxes_of, tracker, follower, report)
    try:
        with torch_threads(torch_threads_beside(predictor.runtime)):
            _loop(src, opts, outputs, step, report, show_progress)
    finally:
        src.close()
        if opts.show:
            cv2.destroyAllWindows()
    if boxes_file is not None and (text := boxes_file.unmatched_warning()):
        warn(text)  # a boxes file keyed to other frames finds nobody: say so rather than report 0 people quietly
    if report.skipped_boxes:
        warn(skipped_boxes_warning(report.skipped_boxes, opts.json_out is not None))
    if outputs.writer is not None and (text := outputs.variable_rate_warning()):
        warn(text)
    return report


def _loop(
    src: Source, opts: InferOptions, outputs: RunOutputs, step: _Step, report: InferReport, show_progress: bool
) -> None:
    """Read, predict and write every frame: three overlapped stages (clpose.inference.pipeline), or one thread with
    --show (OpenCV's window wants the calling thread). Outputs are finalised on success, Ctrl-C or SIGTERM, and
    removed on a failure."""

    def write(frame: Frame, poses: list, skipped: list, how: str | None) -> None:
        outputs.add(frame, poses, skipped, how)
        report.skipped_boxes.extend((frame.name, box) for box in skipped)
        report.people += len(poses)
        report.frames += 1

    threaded = not opts.show
    reader = FrameReader(iter(src)) if threaded else None
    writer = OutputWriter(write) if threaded else None
    frames = iter(reader) if reader is not None else _timed_frames(iter(src), report)
    size = 1 if step.follower is not None else opts.batch  # a followed box needs the frame before it
    start, failed = time.perf_counter(), True
    try:
        # Ctrl-C and SIGTERM (docker stop, systemd, Slurm) stop the loop between batches, so no frame is half-written
        with (
            stop_requested() as stop,
            ProgressBar("infer", src.count or None, "{fps:.1f} frames/s", show_progress, fps=0.0) as progress,
        ):
            for batch in _batches(frames, size):
                for result in step(batch):
                    if writer is not None:
                        writer.put(*result)
                    else:
                        with _timed(report, "draw"):
                            write(*result)
                progress.update(len(batch), fps=report.frames / (time.perf_counter() - start))
                if stop.requested:
                    break
            report.interrupted = stop.requested
        failed = False
    except KeyboardInterrupt:  # `q` in the window, or a second Ctrl-C: finalise what was done
        report.interrupted, failed = True, False
    finally:
        if reader is not None:
            reader.stop()
            report.seconds["read"] += reader.busy
        if writer is not None:
            try:
                writer.close()  # every frame handed over is written, whatever stopped the loop
            except BaseException:
                failed = True
                outputs.abort()
                raise
            finally:
                report.seconds["draw"] += writer.busy
        report.wall = time.perf_counter() - start
        report.failed, report.failed_files, report.failed_why = src.failed, src.failed_files, src.failed_why
        if follower := step.follower:
            report.detected, report.tracked = follower.detections, follower.tracked
        if failed:
            outputs.abort()
        else:
            outputs.finish(report)


class _Step:
    """One batch of frames through boxes, crops, network, decode and tracking; returns what the writer records."""

    def __init__(self, predictor: Predictor, boxes_of, tracker: PoseTracker | None, follower, report) -> None:
        self.predictor, self.boxes_of, self.tracker, self.follower, self.report = (
            predictor, boxes_of, tracker, follower, report,
        )  # fmt: skip

    def _boxes(self, frame: Frame) -> tuple[np.ndarray, np.ndarray | None, str | None]:
        if self.follower is None:
            boxes, scores = self.boxes_of(frame)
            return boxes, scores, "detected" if self.tracker is not None else None
        if self.follower.detect_now():
            boxes, scores = self.boxes_of(frame)
            return boxes, scores, "detected"
        return self.follower.boxes, self.follower.box_scores, "tracked"

    def __call__(self, batch: list[Frame]) -> list[tuple]:
        report, predictor, pose = self.report, self.predictor, self.predictor.pose
        with _timed(report, "boxes"):
            # every source's boxes pass the one rule of clpose.inference.predictor.box_problem; the others are skipped
            sources = [self._boxes(f) for f in batch]
            found = [usable_boxes(f.image.shape[:2], b, s) for f, (b, s, _) in zip(batch, sources, strict=True)]
        boxes = [b for b, _, _ in found]
        with _timed(report, "crop"):
            crops, affines = pose.crops([f.image for f in batch], boxes)
        if len(crops):
            with _timed(report, "network", predictor.device):
                (maps,) = pose.maps(crops, predictor.flip)
            with _timed(report, "decode"):
                keypoints, scores = pose.decode(maps)
                keypoints = pose.to_image(keypoints, affines)
        else:
            (keypoints,), (scores,) = pose.keypoints(crops, affines)
        with _timed(report, "track"):
            per_frame = predictor.to_poses(keypoints, scores, boxes, [s for _, s, _ in found])
            for frame, poses in zip(batch, per_frame, strict=True):
                if self.follower is not None:  # the network's keypoints, before any smoothing moves them
                    people = [(p.keypoints.copy(), p.scores, p.box_score, p.box) for p in poses]
                    self.follower.update(frame.image.shape[:2], people)
                if self.tracker is not None:  # the frame's own time: a variable-rate video's are not 1 / fps apart
                    self.tracker.update(poses, frame.index, frame.time)
        return [
            (frame, poses, skipped, how)
            for frame, poses, (_, _, skipped), (_, _, how) in zip(batch, per_frame, found, sources, strict=True)
        ]
