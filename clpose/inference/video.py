"""Where frames come from (an image, a folder of images, a video file, an animated GIF or a camera) and how
annotated video is written (atomically and checked: the file appears complete, or not at all).

Frames are what a viewer sees: images turned upright by their EXIF orientation (clpose.inference.photos), videos by
their rotation metadata (OpenCV applies it). Each video frame carries its time: the container's timestamp, so a
variable-frame-rate file is smoothed and reported at the times its frames are shown, not at index / fps."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageSequence

from clpose.errors import ClposeError, first_line
from clpose.inference.photos import IMAGE_SUFFIXES, list_images, load_photo
from clpose.io import Staged, free_space, opencv_path

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # what VideoWriter writes, and the codec of each
GIF_DEFAULT_MS = 100  # browsers show GIF frames of 0 or 10 ms for 100 ms; so do we
_CAMERA = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses
_CAMERA_MAX = 2**31 - 1  # OpenCV's index is a C int; a larger one overflowed with a traceback


def camera_index(spec: str) -> int | None:
    """The camera index a source names (ASCII digits that are not an existing path), else None; an index beyond
    OpenCV's range is a ClposeError."""
    if not _CAMERA.fullmatch(spec) or Path(spec).exists():
        return None
    index = int(spec)
    if index > _CAMERA_MAX:
        raise ClposeError(f"camera {spec}: an index from 0 to {_CAMERA_MAX} is needed (or a path that exists)")
    return index


def source_kind(spec: str) -> str | None:
    """What `Source(spec)` reads, judged from the path alone ("camera", "folder", "image" or "video"; None when
    nothing is there), so that outputs can be checked before any work."""
    path = Path(spec)
    if camera_index(spec) is not None:
        return "camera"
    if path.is_dir():
        return "folder"
    if not path.exists():
        return None
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


class _Muted:
    """A process-wide mute (a log level, a file descriptor) for the length of a block. Counted: the first of blocks
    that overlap (nested, or in other threads) mutes, the last one restores, so none restores the muted state."""

    def __init__(self, mute: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self._mute, self._restore = mute, restore
        self._lock, self._depth, self._saved = threading.Lock(), 0, None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = self._mute()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._restore(self._saved)


def _opencv_log() -> Any:
    return getattr(getattr(cv2, "utils", None), "logging", None)  # absent from some builds


def _log_off() -> int | None:
    logging = _opencv_log()
    if logging is None:
        return None
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    return level


def _log_restore(level: int | None) -> None:
    if level is not None:
        _opencv_log().setLogLevel(level)


def _stderr_off() -> int | None:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (a service, pythonw): nothing to hide
        return None
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    return saved


def _stderr_restore(saved: int | None) -> None:
    if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


opencv_log_off = _Muted(_log_off, _log_restore)  # `with opencv_log_off():` OpenCV's own log silenced
_stderr_muted = _Muted(_stderr_off, _stderr_restore)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's log off and file descriptor 2 pointed at /dev/null: probing a missing camera or opening a broken
    video otherwise prints a dozen lines of backend noise before clpose's one-line error (FFmpeg and some capture
    backends write to fd 2 directly, past OpenCV's log level). Whatever another thread writes to stderr meanwhile
    is lost too, so keep the block short."""
    with _stderr_muted(), opencv_log_off():
        yield


@dataclass
class Frame:
    index: int
    name: str  # the image's file name, or "frame N"
    image: np.ndarray  # as displayed: EXIF orientation or video rotation applied
    time: float | None = None  # seconds from the first frame of a video or camera (None for images)
    orientation: int | None = None  # the EXIF orientation applied to an image (1 = none; None for video frames)


class Source:
    """Frames of an image, a folder, a video file (an animated GIF is one, read by Pillow) or a camera.

    Attributes:
        kind: "image", "folder", "video" or "camera".
        fps: frames per second (videos and cameras; 0 otherwise).
        count: frames announced by the container (videos), images (folders), 1 (an image), 0 (cameras).
        failed: frames that could not be read (a truncated video, an unreadable image).
        failed_files: the names of the images of a folder that could not be read; `failed_why` says why.
        estimated_times: video frames whose time is index / fps because the container gave none that rose.
        rotation: degrees a video's frames were turned by OpenCV, as its rotation metadata says (0 otherwise).
    """

    def __init__(self, spec: str) -> None:
        self.spec, self.fps, self.failed, self.estimated_times, self.rotation = spec, 0.0, 0, 0, 0
        self.failed_files: list[str] = []
        self.failed_why: dict[str, str] = {}
        self._cap: cv2.VideoCapture | None = None
        self._gif: Image.Image | None = None
        self._gif_ms: list[int] = []
        self._unreadable: dict[str, str] = {}  # a folder's entries that are not files: a loop, a broken link, a pipe
        path = Path(spec)
        camera = camera_index(spec)
        if camera is not None:
            with quiet_opencv():  # every backend tried says why it failed, at length, on stderr
                self.kind, self._cap = "camera", cv2.VideoCapture(camera)
                opened = self._cap.isOpened()
            if not opened:
                raise ClposeError(f"camera {spec} cannot be opened")
            self.fps, self.count = self._cap.get(cv2.CAP_PROP_FPS) or 30.0, 0
        elif path.is_dir():
            self.kind = "folder"
            self.files, self._unreadable = list_images(path)
            if not self.files:
                raise ClposeError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.count = len(self.files)
        elif not path.exists() and path.is_symlink():
            raise ClposeError(f"{spec} is a symlink that leads nowhere (a loop, or its target is missing)")
        elif not path.exists():
            raise ClposeError(f"{spec} does not exist (expected an image, a folder, a video file or a camera index)")
        elif not path.is_file():  # a named pipe with no writer would block OpenCV forever
            raise ClposeError(
                f"{path} is not a regular file (a pipe or a device?): give an image, a folder, a video "
                "file or a camera index"
            )
        elif path.stat().st_size == 0:
            raise ClposeError(f"{path} is empty (0 bytes)")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            self.kind, self.files, self.count = "image", [path], 1
        elif path.suffix.lower() == ".gif":
            # Pillow, not OpenCV: builds without FFmpeg cannot open GIFs, and older ones announce a frame count from
            # the duration x the shortest frame's rate, so an animation read whole was reported as a damaged video
            self.kind = "video"
            self._gif, self._gif_ms, self.count = _open_gif(path)
            self.fps = 1000.0 * len(self._gif_ms) / sum(self._gif_ms)  # the mean rate
        else:
            with quiet_opencv():  # FFmpeg's own account of a broken file ("moov atom not found") goes to fd 2
                self.kind, self._cap = "video", cv2.VideoCapture(opencv_path(path))
                opened = self._cap.isOpened()
            if not opened:
                raise ClposeError(f"{path} cannot be opened as a video")
            self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            if self._cap.get(cv2.CAP_PROP_ORIENTATION_AUTO):  # OpenCV turns the frames as the metadata says
                self.rotation = int(self._cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360

    def _fail(self, name: str, why: str) -> None:
        self.failed += 1
        self.failed_files.append(name)
        self.failed_why[name] = why

    def __iter__(self) -> Iterator[Frame]:
        if self._gif is not None:
            yield from self._gif_frames()
            return
        if self._cap is None:
            for i, path in enumerate(self.files):
                if path.name in self._unreadable:
                    self._fail(path.name, self._unreadable[path.name])
                    continue
                image, orientation = load_photo(path)
                if image is None and self.kind == "image":
                    raise ClposeError(f"image {path} cannot be decoded (truncated, damaged or not an image)")
                if image is None:
                    self._fail(path.name, "truncated, damaged or empty")
                    continue
                yield Frame(i, path.name, image, orientation=orientation)
            return
        yield from self._video_frames()

    def _video_frames(self) -> Iterator[Frame]:
        i, last, start = 0, -math.inf, time.monotonic()
        while True:
            with quiet_opencv():  # a damaged frame is counted and reported once, not logged by FFmpeg per frame
                ok, image = self._cap.read()
            if not ok:
                break
            last = self._frame_time(i, last, start)
            yield Frame(i, f"frame {i}", image, time=last)
            i += 1
        if self.kind == "video" and self.count > i:
            self.failed = self.count - i  # announced but unreadable: a truncated or damaged file

    def _frame_time(self, i: int, last: float, start: float) -> float:
        """Seconds of frame `i` just read: a file's presentation timestamp (after read, POS_MSEC is the frame's own),
        a camera's arrival time; where a file gives no timestamp that rises, the last one plus 1 / fps."""
        if self.kind == "camera":
            return time.monotonic() - start
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if math.isfinite(t) and t > last:
            return t
        self.estimated_times += 1
        return 0.0 if i == 0 else last + 1.0 / self.fps

    def _gif_frames(self) -> Iterator[Frame]:
        frames, i, ms = ImageSequence.Iterator(self._gif), 0, 0
        while True:
            try:
                image = next(frames).convert("RGB")  # each frame composed with the ones it draws over
            except StopIteration:
                break
            except (OSError, EOFError, ValueError, SyntaxError):  # a truncated or damaged frame ends the animation
                break
            rgb = np.asarray(image)
            yield Frame(i, f"frame {i}", np.ascontiguousarray(rgb[:, :, ::-1]), time=ms / 1000.0)  # RGB -> BGR
            ms += self._gif_ms[i] if i < len(self._gif_ms) else GIF_DEFAULT_MS  # shown after the frames before it
            i += 1
        self.failed = max(0, self.count - i)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        if self._gif is not None:
            self._gif.close()


def _open_gif(path: Path) -> tuple[Image.Image, list[int], int]:
    """The GIF, the milliseconds each readable frame is shown, and its frame count."""
    try:
        gif = Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ClposeError(f"{path} cannot be opened as a GIF ({first_line(e)})") from None
    durations: list[int] = []
    damaged = False
    try:
        for frame in ImageSequence.Iterator(gif):
            duration = frame.info.get("duration") or 0
            durations.append(duration if duration > 10 else GIF_DEFAULT_MS)
        gif.seek(0)
    except (OSError, EOFError, ValueError, SyntaxError):  # truncated: the frames before the damage are read
        damaged = True
        gif.close()
        gif = Image.open(path)
    if not durations:
        gif.close()
        raise ClposeError(f"{path}: no frame of this GIF can be decoded (truncated or damaged)")
    # a damaged GIF counts one frame more than it can show, so the run reports unreadable frames
    return gif, durations, len(durations) + damaged


class VideoWriter:
    """An annotated video written to a temporary file of `stage` and checked by `close`.

    Without a caller's stage, `close` also moves the video into place. OpenCV's writes report nothing (a full disk
    leaves a file without its index that no player opens), so `close` reads the file back.
    """

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int], stage: Staged | None = None) -> None:
        self.path = Path(path)
        fourcc = VIDEO_SUFFIXES.get(self.path.suffix.lower())
        if fourcc is None:
            raise ClposeError(f"--out {self.path}: a video is written as {' or '.join(VIDEO_SUFFIXES)}")
        self._own = stage is None
        self._stage = Staged() if stage is None else stage
        self._tmp = self._stage.path(self.path)
        with quiet_opencv():
            self._writer = cv2.VideoWriter(opencv_path(self._tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
        if not self._writer.isOpened():
            if self._own:
                self._stage.discard()
            raise ClposeError(f"OpenCV cannot write the video {self.path} ({fourcc}); try a .avi or .mp4 name")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        with opencv_log_off():  # not "Failed to write frame" per frame: close() finds the failure and says it once
            self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and check it; a file that does not hold every frame is removed with a ClposeError."""
        self._writer.release()
        problem = video_problem(self._tmp, self.frames)
        if problem is not None:
            self.abort()
            raise ClposeError(
                f"cannot write the video {self.path}: {problem} ({self.frames} frames written; a full disk or a "
                f"file-size limit? {free_space(self.path.parent)}); nothing was written"
            )
        if self._own:
            self._stage.commit()

    def abort(self) -> None:
        self._writer.release()
        if self._own:
            self._stage.discard()


def video_problem(path: Path, frames: int) -> str | None:
    """What is wrong with the video file at `path` that should hold `frames` frames, or None: it opens, announces
    that many frames, and its first and last frames decode."""
    if frames == 0:
        return "no frame was written"
    if not path.is_file() or path.stat().st_size == 0:
        return "the file is empty"
    with quiet_opencv():  # FFmpeg reports a broken file on fd 2 ("moov atom not found"); the message says it once
        cap = cv2.VideoCapture(opencv_path(path))
        try:
            if not cap.isOpened():
                return "the file cannot be opened"
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if count != frames:
                return f"the file announces {count} frames"
            if not cap.read()[0]:
                return "its first frame cannot be decoded"
            if frames > 1:  # the end of a file cut short by a full disk (the frame count is in its header)
                cap.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
                if not cap.read()[0]:
                    return "its last frame cannot be decoded"
        finally:
            cap.release()
    return None


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def source_fingerprint(path: Path, kind: str, boxes: str, count: int) -> str:
    """What --calibration frames (and the crops of their people) are made of, without reading a frame: the files
    (name, size, time), where the boxes come from, the count."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if kind == "folder" else [path]
    parts = [f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("\n".join([str(path.resolve()), *parts, boxes, str(count)]).encode()).hexdigest()


def check_spec(spec: Path) -> str:
    """The kind of a --calibration PATH (image, folder or video), or a ClposeError naming it."""
    kind = source_kind(str(spec))
    if kind not in ("image", "folder", "video"):
        why = "does not exist" if kind is None else "is a camera"
        raise ClposeError(f"--calibration {spec} {why}: give images, a folder of images or a video file")
    return kind
