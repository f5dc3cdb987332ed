"""Where frames come from (an image, a folder of images, a video file, a camera) and how annotated video is
written (atomically: the file appears complete, or not at all)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clpose.data.dataset import load_image
from clpose.errors import ClposeError
from clpose.io import atomic_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Frame:
    index: int
    name: str  # the image's file name, or "frame N"
    image: np.ndarray


class Source:
    """Frames of an image, a folder, a video file or a camera.

    Attributes:
        kind: "image", "folder", "video" or "camera".
        fps: frames per second (videos and cameras; 0 otherwise).
        count: frames announced by the container (videos), images (folders), 1 (an image), 0 (cameras).
        failed: frames that could not be read (a truncated video, an unreadable image).
        failed_files: the names of the images of a folder that could not be read.
    """

    def __init__(self, spec: str) -> None:
        self.spec, self.fps, self.failed = spec, 0.0, 0
        self.failed_files: list[str] = []
        self._cap: cv2.VideoCapture | None = None
        path = Path(spec)
        if spec.isdigit() and not path.exists():
            self.kind, self._cap = "camera", cv2.VideoCapture(int(spec))
            if not self._cap.isOpened():
                raise ClposeError(f"camera {spec} cannot be opened")
            self.fps, self.count = self._cap.get(cv2.CAP_PROP_FPS) or 30.0, 0
        elif path.is_dir():
            self.kind = "folder"
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ClposeError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.count = len(self.files)
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
        else:
            self.kind, self._cap = "video", cv2.VideoCapture(str(path))
            if not self._cap.isOpened():
                raise ClposeError(f"{path} cannot be opened as a video")
            self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 25.0
            self.count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def __iter__(self) -> Iterator[Frame]:
        if self._cap is None:
            for i, path in enumerate(self.files):
                image = load_image(path)
                if image is None and self.kind == "image":
                    raise ClposeError(f"image {path} cannot be decoded (truncated, damaged or not an image)")
                if image is None:
                    self.failed += 1
                    self.failed_files.append(path.name)
                    continue
                yield Frame(i, path.name, image)
            return
        i = 0
        while True:
            ok, image = self._cap.read()
            if not ok:
                break
            yield Frame(i, f"frame {i}", image)
            i += 1
        if self.kind == "video" and self.count > i:
            self.failed = self.count - i  # announced but unreadable: a truncated or damaged file

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class VideoWriter:
    """An annotated video written to a temporary file and moved into place by `close` (also after Ctrl-C)."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
        if not self._writer.isOpened():
            self._ctx.__exit__(OSError, OSError("cannot write"), None)
            raise ClposeError(f"OpenCV cannot write the video {self.path} ({fourcc}); try a .avi or .mp4 name")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._writer.release()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
