"""The `clpose infer` loop: read frames in batches, find person boxes, predict, track and smooth, draw, write.

Outputs are written atomically; Ctrl-C stops the loop and still finalises the annotated video and the JSON.
The time of each stage (read, boxes, crop, network, decode, track, draw/write) is measured and reported.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from clpose.config import check_option
from clpose.engine.timing import synchronize
from clpose.errors import ClposeError
from clpose.inference.detector import BoxesFile, FasterRCNN
from clpose.inference.predictor import Pose, Predictor, full_image_box
from clpose.inference.smoothing import PoseTracker
from clpose.inference.video import IMAGE_SUFFIXES, Frame, Source, VideoWriter, has_display
from clpose.io import atomic_path, write_json
from clpose.progress import ProgressBar
from clpose.vis import draw_pose

STAGES = ("read", "boxes", "crop", "network", "decode", "track", "draw")


@dataclass
class InferOptions:
    boxes: str = "full"
    detector: str | None = None
    detector_weights: Path | None = None
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


def _box_provider(opts: InferOptions, predictor: Predictor) -> Callable[[Frame], tuple[np.ndarray, np.ndarray]]:
    if opts.detector is not None:
        detector = FasterRCNN(opts.detector_weights, predictor.device, opts.det_threshold)
        return lambda f: detector.boxes(f.image)
    if opts.boxes != "full":
        boxes_file = BoxesFile(Path(opts.boxes), opts.det_threshold, predictor.skeleton.num_keypoints)
        return lambda f: boxes_file.boxes(f.index, f.name)
    return lambda f: (full_image_box(f.image)[None], np.ones(1))


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


class _Outputs:
    """Annotated images or video, and the JSON records; finalised whatever happens."""

    def __init__(self, source: Source, opts: InferOptions, predictor: Predictor) -> None:
        self.source, self.opts, self.predictor = source, opts, predictor
        self.writer: VideoWriter | None = None
        self.records: list[dict] = []
        self.images_written = 0
        out = opts.out
        self.image_out = out is not None and source.kind in ("image", "folder")
        if self.image_out and source.kind == "folder" and out.suffix.lower() in IMAGE_SUFFIXES:
            raise ClposeError(f"--out {out}: a folder of images needs a folder to write into, not an image name")
        if opts.show and not has_display():
            raise ClposeError("--show needs a display (no DISPLAY or WAYLAND_DISPLAY); use --out instead")

    def add(self, frame: Frame, poses: list[Pose]) -> None:
        key = {"frame": frame.index} if self.source.kind in ("video", "camera") else {"image": frame.name}
        self.records.append({**key, "people": [p.to_json() for p in poses]})
        if self.opts.out is None and not self.opts.show:
            return
        image = draw(frame.image, poses, self.predictor, self.opts.kpt_threshold)
        if self.image_out:
            out = self.opts.out
            path = out if self.source.kind == "image" and out.suffix.lower() in IMAGE_SUFFIXES else out / frame.name
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), image):
                    raise ClposeError(f"--out {path}: OpenCV cannot write this image (check the extension)")
            self.images_written += 1
        elif self.opts.out is not None:
            if self.writer is None:
                h, w = image.shape[:2]
                self.writer = VideoWriter(self.opts.out, self.source.fps or 25.0, (w, h))
            self.writer.write(image)
        if self.opts.show:
            cv2.imshow("clpose", image)
            if cv2.waitKey(1) & 0xFF == ord("q"):
                raise KeyboardInterrupt

    def abort(self) -> None:
        """A run that failed leaves nothing that looks finished: the partial video is deleted, no JSON is written
        (annotated images already written are complete files, each written atomically)."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def finish(self, report: InferReport) -> None:
        if self.writer is not None:
            self.writer.close()
            report.outputs.append(f"{self.opts.out} ({self.writer.frames} frames, {self.source.fps:g} fps)")
        elif self.image_out and self.images_written:
            report.outputs.append(f"{self.opts.out} ({self.images_written} annotated images)")
        if self.opts.json_out is not None:
            write_json(
                self.opts.json_out,
                {
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
                },
                indent=None,
            )
            report.outputs.append(f"{self.opts.json_out} ({len(self.records)} records)")


def run_infer(source: str, predictor: Predictor, opts: InferOptions, show_progress: bool = True) -> InferReport:
    """Predict every frame of `source` and write the requested outputs."""
    check_option("--batch", opts.batch, ">= 1")
    check_option("--det-threshold", opts.det_threshold, "[0, 1]")
    check_option("--kpt-threshold", opts.kpt_threshold, "[0, 1]")
    check_option("--min-cutoff", opts.min_cutoff, "> 0")
    check_option("--beta", opts.beta, ">= 0")
    src = Source(source)
    boxes_of = _box_provider(opts, predictor)
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
        with (
            _sigterm_as_interrupt(),
            ProgressBar("infer", src.count or None, "{fps:.1f} frames/s", show_progress, fps=0.0) as progress,
        ):
            for batch in _batches(iter(src), opts.batch, report):
                _predict_batch(batch, predictor, boxes_of, tracker, outputs, report)
                progress.update(len(batch), fps=report.frames / (time.perf_counter() - start))
        failed = False
    except KeyboardInterrupt:  # Ctrl-C, `q` in the window, or SIGTERM (docker stop, systemd, Slurm): finalise
        report.interrupted, failed = True, False
    finally:
        report.failed, report.failed_files = src.failed, src.failed_files
        src.close()
        if failed:
            outputs.abort()
        else:
            outputs.finish(report)
        if opts.show:
            cv2.destroyAllWindows()
    return report


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does (outputs finalised, exit 130); restored afterwards. Only the main
    thread may set signal handlers: elsewhere (a library caller's thread) SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
