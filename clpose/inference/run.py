"""The `clpose infer` loop: read frames in batches, find person boxes, predict, track and smooth, draw, write.

Outputs are staged in temporary files and moved into place together once checked (all or none); Ctrl-C or SIGTERM
stops the loop and still finalises the annotated video and the JSON.
The time of each stage (read, boxes, crop, network, decode, track, draw/write) is measured and reported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from clpose.config import check_option
from clpose.console import warn
from clpose.errors import ClposeError
from clpose.inference.detector import BoxesFile, PersonDetector
from clpose.inference.predictor import Pose, Predictor, full_image_box
from clpose.inference.smoothing import PoseTracker
from clpose.inference.video import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    Source,
    VideoWriter,
    has_display,
    quiet_opencv,
    source_kind,
)
from clpose.io import Staged, free_space, json_text, prepare_target
from clpose.outputs import check_outputs
from clpose.progress import ProgressBar
from clpose.signals import stop_requested
from clpose.speed.timing import synchronize
from clpose.vis import draw_pose

STAGES = ("read", "boxes", "crop", "network", "decode", "track", "draw")


@dataclass(frozen=True)
class InferOptions:
    """What `clpose infer` does besides running the model: where person boxes come from, what it writes, how it
    draws and smooths, and how many frames go through the network at once."""

    boxes: str = "full"  # "full" (the whole frame is one person) or a COCO results-format boxes file
    detector: str | None = None  # a torchvision COCO detector's name (clpose.weights.DETECTORS)
    detector_weights: Path | None = None  # a local copy of its weights
    det_threshold: float = 0.5
    out: Path | None = None
    json_out: Path | None = None
    show: bool = False
    kpt_threshold: float = 0.3
    smooth: str = "none"
    min_cutoff: float = 1.0
    beta: float = 0.05
    batch: int = 8


@dataclass
class InferReport:
    frames: int = 0
    failed: int = 0
    failed_files: list[str] = field(default_factory=list)
    people: int = 0
    interrupted: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    outputs: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def shares(self) -> str:
        total = self.total or 1.0
        return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.seconds.items() if v > 0)


BoxProvider = Callable[[Frame], tuple[np.ndarray, np.ndarray]]


def _box_provider(opts: InferOptions, predictor: Predictor) -> tuple[BoxProvider, BoxesFile | None]:
    """Where each frame's person boxes come from, and the boxes file when they come from one (it says at the end
    whether its entries matched the frames)."""
    if opts.detector is not None:
        detector = PersonDetector(opts.detector, opts.detector_weights, predictor.device, opts.det_threshold)
        return (lambda f: detector.boxes(f.image)), None
    if opts.boxes != "full":
        boxes_file = BoxesFile(Path(opts.boxes), opts.det_threshold, predictor.skeleton.num_keypoints)
        return (lambda f: boxes_file.boxes(f.index, f.name)), boxes_file
    return (lambda f: (full_image_box(f.image)[None], np.ones(1))), None


def _batches(frames: Iterator[Frame], size: int, report: InferReport) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        report.seconds["read"] += time.perf_counter() - start
        if frame is None:
            break
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def _timed(report: InferReport, stage: str, device: torch.device | None = None) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if device is not None:
        synchronize(device)
    report.seconds[stage] += time.perf_counter() - start


def draw(image: np.ndarray, poses: list[Pose], predictor: Predictor, threshold: float) -> np.ndarray:
    for pose in poses:
        x, y, w, h = (round(float(v)) for v in pose.box)
        full = w >= image.shape[1] - 1 and h >= image.shape[0] - 1
        if not full:
            cv2.rectangle(image, (x, y), (x + w, y + h), (200, 200, 200), 1)
        if pose.track_id is not None and not full:
            cv2.putText(
                image,
                f"#{pose.track_id}",
                (x + 3, y + 16),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        draw_pose(image, pose.keypoints, predictor.skeleton, pose.scores, threshold)
    return image


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
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if kind == "folder" else []
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


class _Outputs:
    """Annotated images or video, and the JSON records: staged in temporary files and moved into place together
    by `finish` once the video is checked (all or none); `abort` removes them all."""

    def __init__(self, source: Source, opts: InferOptions, predictor: Predictor) -> None:
        self.source, self.opts, self.predictor = source, opts, predictor
        self.stage = Staged()
        self.writer: VideoWriter | None = None
        self.records: list[dict] = []
        self.images_written = 0
        self.image_out = opts.out is not None and source.kind in ("image", "folder")

    def add(self, frame: Frame, poses: list[Pose]) -> None:
        key = {"frame": frame.index} if self.source.kind in ("video", "camera") else {"image": frame.name}
        self.records.append({**key, "people": [p.to_json() for p in poses]})
        if self.opts.out is None and not self.opts.show:
            return
        image = draw(frame.image, poses, self.predictor, self.opts.kpt_threshold)
        if self.image_out:
            out = self.opts.out
            path = out if self.source.kind == "image" and out.suffix.lower() in IMAGE_SUFFIXES else out / frame.name
            with quiet_opencv():  # libpng and libjpeg report a failed write on fd 2; the error below says it once
                ok = cv2.imwrite(str(self.stage.path(path)), image)
            if not ok:
                raise ClposeError(
                    f"--out {path}: OpenCV cannot write this image (an extension it cannot write, or a full disk: "
                    f"{free_space(path.parent)})"
                )
            self.images_written += 1
        elif self.opts.out is not None:
            if self.writer is None:
                h, w = image.shape[:2]
                self.writer = VideoWriter(self.opts.out, self.source.fps or 25.0, (w, h), self.stage)
            self.writer.write(image)
        if self.opts.show:
            cv2.imshow("clpose", image)
            if cv2.waitKey(1) & 0xFF == ord("q"):
                raise KeyboardInterrupt

    def abort(self) -> None:
        """A run that failed leaves nothing that looks finished: no video, no annotated image, no JSON (earlier
        files of the same names are untouched)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.stage.discard()

    def finish(self, report: InferReport) -> None:
        """Check the video, write the JSON, then move every output into place; on any failure none is."""
        try:
            written = self._stage_all(report)
            self.stage.commit()
        except BaseException:
            self.abort()
            raise
        report.outputs.extend(written)

    def _stage_all(self, report: InferReport) -> list[str]:
        if report.frames == 0 and not report.interrupted and self.source.kind in ("video", "camera"):
            # a video OpenCV opens but cannot decode: an empty JSON and no video would look like a finished run
            if self.source.kind == "camera":
                problem = f"camera {self.source.spec} gave no frame"
            else:
                announced = f" of its {self.source.count} frames" if self.source.count else ""
                problem = f"{self.source.spec}: none{announced} could be read (damaged, or a codec OpenCV lacks)"
            raise ClposeError(f"{problem}; nothing was written")
        written = []
        if self.writer is not None:
            self.writer.close()
            written.append(f"{self.opts.out} ({self.writer.frames} frames, {self.source.fps:g} fps)")
        elif self.image_out and self.images_written:
            written.append(f"{self.opts.out} ({self.images_written} annotated images)")
        if self.opts.json_out is not None:
            record = {
                "format": "clpose-infer",
                "version": 1,
                "source": self.source.spec,
                "kind": self.source.kind,
                "fps": self.source.fps,
                "skeleton": self.predictor.skeleton.name,
                "keypoints": list(self.predictor.skeleton.keypoints),
                "coordinates": "0-based image pixels",
                "frames": self.records,
                "failed_frames": report.failed,
                "failed_files": report.failed_files,  # a folder's images that could not be read
                "interrupted": report.interrupted,
                "runtime": self.predictor.runtime.to_json() if self.predictor.runtime else None,
            }
            self.stage.write_text(self.opts.json_out, json_text(record, indent=None))
            written.append(f"{self.opts.json_out} ({len(self.records)} records)")
        return written


def run_infer(source: str, predictor: Predictor, opts: InferOptions, show_progress: bool = True) -> InferReport:
    """Predict every frame of `source` and write the requested outputs."""
    check_option("--batch", opts.batch, ">= 1")
    check_option("--det-threshold", opts.det_threshold, "[0, 1]")
    check_option("--kpt-threshold", opts.kpt_threshold, "[0, 1]")
    check_option("--min-cutoff", opts.min_cutoff, "> 0")
    check_option("--beta", opts.beta, ">= 0")
    check_output_kinds(source, opts)
    src = Source(source)
    boxes_of, boxes_file = _box_provider(opts, predictor)
    tracker = (
        PoseTracker(
            smooth=opts.smooth == "oneeuro",
            min_cutoff=opts.min_cutoff,
            beta=opts.beta,
            score_threshold=opts.kpt_threshold,
        )
        if src.kind in ("video", "camera")
        else None
    )
    outputs = _Outputs(src, opts, predictor)
    report = InferReport()
    start = time.perf_counter()
    failed = True
    try:
        # Ctrl-C and SIGTERM (docker stop, systemd, Slurm) stop the loop between batches, so no frame is half-written
        with (
            stop_requested() as stop,
            ProgressBar("infer", src.count or None, "{fps:.1f} frames/s", show_progress, fps=0.0) as progress,
        ):
            for batch in _batches(iter(src), opts.batch, report):
                _predict_batch(batch, predictor, boxes_of, tracker, outputs, report)
                progress.update(len(batch), fps=report.frames / (time.perf_counter() - start))
                if stop.requested:
                    break
        report.interrupted, failed = stop.requested, False
    except KeyboardInterrupt:  # `q` in the window, or a second Ctrl-C: finalise what was done
        report.interrupted, failed = True, False
    finally:
        report.failed, report.failed_files = src.failed, src.failed_files
        src.close()
        try:
            if failed:
                outputs.abort()
            else:
                outputs.finish(report)
        finally:
            if opts.show:
                cv2.destroyAllWindows()
    if boxes_file is not None and (text := boxes_file.unmatched_warning()):
        warn(text)  # a boxes file keyed to other frames finds nobody: say so rather than report 0 people quietly
    return report


def _predict_batch(
    batch: list[Frame],
    predictor: Predictor,
    boxes_of,
    tracker: PoseTracker | None,
    outputs: _Outputs,
    report: InferReport,
) -> None:
    with _timed(report, "boxes"):
        found = [boxes_of(f) for f in batch]
    boxes = [b for b, _ in found]
    pose = predictor.pose
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
        per_frame = predictor.to_poses(keypoints, scores, boxes, [s for _, s in found])
        for frame, poses in zip(batch, per_frame, strict=True):
            if tracker is not None:
                tracker.update(poses, frame.index, frame.index / (outputs.source.fps or 25.0))
    with _timed(report, "draw"):
        for frame, poses in zip(batch, per_frame, strict=True):
            outputs.add(frame, poses)
            report.frames += 1
            report.people += len(poses)
