"""What a `clpose infer` run gives back: its options and report, the annotated images or video and the JSON
records (staged in temporary files and moved into place together once checked: all or none)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from clpose.drawing import draw_pose
from clpose.engine.runtimes import RuntimeInfo
from clpose.errors import ClposeError
from clpose.inference.predictor import Pose, Predictor, SkippedBox
from clpose.inference.video import IMAGE_SUFFIXES, Frame, Source, VideoWriter, quiet_opencv
from clpose.io import Staged, free_space, json_text, write_image

STAGES = ("read", "boxes", "crop", "network", "decode", "track", "draw")
# --detect-every's default with a detector (docs/inference.md, "Detection every N frames", measures its cost)
DETECT_EVERY = 2


@dataclass(frozen=True)
class InferOptions:
    """What `clpose infer` does besides running the model: where person boxes come from, what it writes, how it
    draws and smooths, and how many frames go through the network at once."""

    boxes: str = "full"  # "full" (the whole frame is one person) or a COCO results-format boxes file
    boxes_ids: str = "auto"  # how its integer image ids name frames: auto, index or number (detector.BoxesFile)
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
    detect_every: int | None = None  # video: find people every N frames, follow them between (None: the default)
    track_score: float = 0.3  # a followed person whose mean keypoint score is below this is dropped
    calibration: Path | None = None  # --int8: the detector's calibration frames (None: the recipe's training images)


@dataclass
class InferReport:
    frames: int = 0
    failed: int = 0
    failed_files: list[str] = field(default_factory=list)
    failed_why: dict[str, str] = field(default_factory=dict)
    people: int = 0
    skipped_boxes: list[tuple[str, SkippedBox]] = field(default_factory=list)  # (frame name, box): `box_problem`
    interrupted: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    outputs: list[str] = field(default_factory=list)
    wall: float = 0.0  # seconds from the first frame to the last written: the stages overlap (pipeline.py)
    detect_every: int | None = None  # videos: a detection at least every this many frames
    detected: int | None = None  # frames whose people were detected (found by the box source) ...
    tracked: int | None = None  # ... and frames whose people were followed from their keypoints (follow.py)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    def shares(self) -> str:
        """Each stage's share of the work (the stages overlap, so the shares are of their sum, not of the wall
        time), and on a video followed between detections how many frames were detected and tracked."""
        total = self.total or 1.0
        text = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.seconds.items() if v > 0)
        if self.detected is not None:
            text += f"; detected {self.detected} frames, tracked {self.tracked} (--detect-every {self.detect_every})"
        return text


def draw(image: np.ndarray, poses: list[Pose], predictor: Predictor, threshold: float) -> np.ndarray:
    height, width = image.shape[:2]
    for pose in poses:
        # edges beyond the image stay beyond it (at -1 or the size) and the numbers stay in OpenCV's int range
        x0, x1 = np.clip([pose.box[0], pose.box[0] + pose.box[2]], -1, width).round().astype(int)
        y0, y1 = np.clip([pose.box[1], pose.box[1] + pose.box[3]], -1, height).round().astype(int)
        x, y = int(x0), int(y0)
        full = x0 <= 0 and y0 <= 0 and x1 >= width - 1 and y1 >= height - 1
        if not full:
            cv2.rectangle(image, (x, y), (int(x1), int(y1)), (200, 200, 200), 1)
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


def skipped_boxes_warning(skipped: list[tuple[str, SkippedBox]], in_json: bool) -> str:
    """One line for the boxes that could not be people: how many, and the first few with their frames and why."""
    shown = "; ".join(f"{name}: {box}" for name, box in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    where = " (each is in the JSON's skipped_boxes)" if in_json else ""
    noun = "box was" if len(skipped) == 1 else "boxes were"
    return f"{len(skipped)} person {noun} skipped{where}: {shown}{more}"


class RunOutputs:
    """Annotated images or video, and the JSON records: staged in temporary files and moved into place together
    by `finish` once the video is checked (all or none); `abort` removes them all."""

    def __init__(self, source: Source, opts: InferOptions, predictor: Predictor) -> None:
        self.source, self.opts, self.predictor = source, opts, predictor
        self.stage = Staged()
        self.writer: VideoWriter | None = None
        self.records: list[dict] = []
        self.boxes_reading: str | None = None  # how a boxes file's integer ids were read (BoxesFile.match)
        self.detector_runtime: RuntimeInfo | None = None  # what runs the detector (PersonDetector.runtime_info)
        self.drift = (0, 0.0)  # (frame, seconds) where a video's timestamps stray furthest from index / fps
        self.images_written = 0
        self.image_out = opts.out is not None and source.kind in ("image", "folder")

    def add(self, frame: Frame, poses: list[Pose], skipped: list[SkippedBox], how: str | None = None) -> None:
        """Record (and draw and write) one frame; `how` its people's boxes were found: "detected" by the box
        source, or "tracked" from their keypoints of the frame before (videos)."""
        if self.source.kind in ("video", "camera"):
            record = {"frame": frame.index, "time": round(frame.time, 6), "boxes": how}
            if abs(frame.time - frame.index / self.source.fps) > abs(self.drift[1]):
                self.drift = (frame.index, frame.time - frame.index / self.source.fps)
        else:
            record = {"image": frame.name, "orientation": frame.orientation}
        record["people"] = [p.to_json() for p in poses]
        if skipped:  # boxes that cannot be a person of this frame (`box_problem`): named, never turned into people
            record["skipped_boxes"] = [b.to_json() for b in skipped]
        self.records.append(record)
        if self.opts.out is None and not self.opts.show:
            return
        image = draw(frame.image, poses, self.predictor, self.opts.kpt_threshold)
        if self.image_out:
            out = self.opts.out
            path = out if self.source.kind == "image" and out.suffix.lower() in IMAGE_SUFFIXES else out / frame.name
            with quiet_opencv():  # libpng and libjpeg report a failed write on fd 2; the error below says it once
                ok = write_image(self.stage.path(path), image)
            if not ok:
                raise ClposeError(
                    f"--out {path}: OpenCV cannot write this image (an extension it cannot write, or a full disk: "
                    f"{free_space(path.parent)})"
                )
            self.images_written += 1
        elif self.opts.out is not None:
            if self.writer is None:
                h, w = image.shape[:2]
                # OpenCV writes a constant rate: the container's (a variable-rate file's mean rate), every frame
                # once, so annotated frame n is JSON frame n; the JSON's "time" is when each is really shown
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
            self.stage.write_text(self.opts.json_out, json_text(self._record(report), indent=None))
            written.append(f"{self.opts.json_out} ({len(self.records)} records)")
        return written

    def variable_rate(self) -> bool:
        """Whether a video file's frames stray from index / fps by more than half a frame (a variable frame rate)."""
        return self.source.kind == "video" and abs(self.drift[1]) * self.source.fps > 0.5

    def variable_rate_warning(self) -> str | None:
        if not self.variable_rate():
            return None
        index, fps = self.drift[0], self.source.fps
        return (
            f"{self.source.spec} has a variable frame rate (frame {index} is shown at "
            f"{index / fps + self.drift[1]:.3f} s, not {index / fps:.3f} s): {self.opts.out} holds every frame once "
            f"at a constant {fps:g} fps, so it plays to another clock; the JSON's time gives each frame's own time, "
            "which the smoothing used"
        )

    def _record(self, report: InferReport) -> dict:
        src = self.source
        video = src.kind in ("video", "camera")
        if video:
            turned = f" (turned {src.rotation} degrees, as its rotation metadata says)" if src.rotation else ""
            frame = f"frame as displayed{turned}"
            times = "seconds from the first frame: " + (
                "the camera's arrival times" if src.kind == "camera" else "the container's timestamps"
            )
            if src.estimated_times:
                times += f" ({src.estimated_times} frames without one: the previous time + 1 / fps)"
        else:
            frame, times = "image as displayed (EXIF orientation applied; each image's tag in orientation)", None
        return {
            "format": "clpose-infer",
            "version": 1,
            "source": src.spec,
            "kind": src.kind,
            "fps": src.fps,
            "skeleton": self.predictor.skeleton.name,
            "keypoints": list(self.predictor.skeleton.keypoints),
            "coordinates": f"0-based pixels of the {frame}",
            "times": times,
            "variable_frame_rate": self.variable_rate() if video else None,
            "boxes": self.opts.detector or self.opts.boxes,
            "boxes_ids": self.boxes_reading or None,  # what a boxes file's integer image ids were read as
            "frames": self.records,
            "failed_frames": report.failed,
            "failed_files": report.failed_files,  # a folder's images that could not be read
            "skipped_boxes": len(report.skipped_boxes),
            "interrupted": report.interrupted,
            "runtime": self.predictor.runtime.to_json() if self.predictor.runtime else None,
            "detector_runtime": self.detector_runtime.to_json() if self.detector_runtime else None,
        }
