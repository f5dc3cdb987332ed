"""Writes that fail, and sources and outputs that do not fit: a full disk while the
annotated video or an export is written, a JSON that cannot be written after the video, --out suffixes that do not
fit the source, a video without a readable frame, a missing camera, an animated GIF, SIGTERM during an export.

An error case passes when the exit code is 2, stderr is one line naming the path at fault, and the folder holds
what it held before (earlier files byte-identical, no temporary file, nothing that looks finished). A full disk is
a file-size limit (RLIMIT_FSIZE) set in a subprocess: Python ignores SIGXFSZ, so writes past it fail with EFBIG as
on a full disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import one_line_error
from PIL import Image
from test_inference import make_checkpoint
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare.synthetic import write_video
from clpose.inference import video as video_module
from clpose.inference.video import VideoWriter, video_problem

runner = CliRunner()
POSIX = pytest.mark.skipif(os.name != "posix", reason="file-size limits and signals are POSIX")
LIMIT = 8000  # bytes: below an annotated clip of 6 frames at 160x96 (~11 kB mp4, ~23 kB avi), above its JSON (~4 kB)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the smallest CLNet: a subprocess's start-up and an ONNX export are most of these tests' time (6.5 MB)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "c.pt", model="clnet_resnet10")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    clip = write_video(tmp_path / "clip.mp4", frames=6, seed=2, width=160, height=96)
    for extra in (tmp_path / "clip.json", tmp_path / "clip.boxes.json"):
        extra.unlink()
    return clip


def _clpose(args: list[str], cwd: Path, limit: int | None = None) -> subprocess.Popen:
    """`python -m clpose ARGS` in a subprocess, under a file-size limit where given."""

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # only the command's outputs meet the limit (no .pyc files); one thread each, as several run side by side
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "clpose", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_file_size if limit is not None else None,
    )


def _error_line(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """stdout and the one stderr line of a command that must fail with exit code 2."""
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 2, (proc.returncode, stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return stdout, lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@POSIX
def test_a_full_disk_while_the_video_is_written_leaves_no_video_and_no_json(ckpt: Path, tmp_path: Path) -> None:
    """OpenCV's writes report nothing: before, the run said "wrote v.mp4 (6 frames)" (exit 0) for a file without its
    index, and with --json it moved the broken video into place before the JSON failed."""
    cases = {"mp4": ["--out", "v.mp4"], "avi+json": ["--out", "v.avi", "--json", "v.json"]}
    folders = {}
    for name in cases:
        folders[name] = tmp_path / name
        write_video(folders[name] / "clip.mp4", frames=6, seed=2, width=160, height=96)
        (folders[name] / "v.mp4").write_bytes(b"an earlier video")
        (folders[name] / "v.avi").write_bytes(b"an earlier video")
        (folders[name] / "v.json").write_text('{"earlier": true}')
    before = {name: _files(folder) for name, folder in folders.items()}
    procs = {  # together: each is mostly Python and torch start-up
        name: _clpose(["infer", "clip.mp4", "--checkpoint", str(ckpt), "--device", "cpu", *args], folders[name], LIMIT)
        for name, args in cases.items()
    }
    for name, proc in procs.items():
        stdout, line = _error_line(proc)
        out = cases[name][1]
        assert f"cannot write the video {out}: " in line and "free on that disk" in line, line
        assert "wrote" not in stdout
        assert _files(folders[name]) == before[name], name  # earlier files byte-identical, nothing new


def test_the_video_check_finds_a_truncated_or_short_file(tmp_path: Path) -> None:
    for suffix in (".mp4", ".avi"):  # a one-frame video is complete (its first frame is its last)
        writer = VideoWriter(tmp_path / f"one{suffix}", 25.0, (64, 48))
        writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.close()
        assert video_problem(tmp_path / f"one{suffix}", 1) is None
    out = tmp_path / "v.mp4"
    writer = VideoWriter(out, 25.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.close()
    assert video_problem(out, 5) is None and cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert video_problem(out, 6) == "the file announces 5 frames"
    data = out.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert video_problem(tmp_path / "cut.mp4", 5) == "the file cannot be opened"


def test_a_failed_json_write_leaves_the_video_out_too(ckpt: Path, clip: Path, monkeypatch) -> None:
    """All or nothing: the video waits in its temporary file until the JSON is written."""
    folder = clip.parent
    (folder / "v.mp4").write_bytes(b"an earlier video")
    before = _files(folder)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the JSON is synced before anything is moved into place
    result = runner.invoke(app, ["infer", str(clip), "--checkpoint", str(ckpt), "--device", "cpu", "--out",
                                 str(folder / "v.mp4"), "--json", str(folder / "v.json")])  # fmt: skip
    one_line_error(result, f"{folder / 'v.json'}: No space left on device", "free on that disk")
    assert _files(folder) == before


@pytest.mark.parametrize(
    ("source", "out", "fragments"),
    [
        ("clip", "x.png", ["--out x.png: a video source is annotated as a video", ".mp4 or .avi"]),
        ("clip", "x", ["--out x: a video source is annotated as a video"]),
        ("camera", "x.jpg", ["--out x.jpg: a video source"]),
        ("image", "x.mp4", ["--out x.mp4: an image is annotated as images, not as a video"]),
        ("folder", "x.avi", ["--out x.avi: a folder of images is annotated as images, not as a video"]),
    ],
)
def test_an_out_that_does_not_fit_the_source_is_refused_before_any_work(
    ckpt: Path, clip: Path, monkeypatch, source: str, out: str, fragments: list[str]
) -> None:
    """Before, a video into x.png wrote one image for its frames and an image into x.mp4 made a folder x.mp4."""
    from clpose.inference.predictor import Predictor

    folder = clip.parent
    (folder / "pics").mkdir()
    cv2.imwrite(str(folder / "pics" / "a.png"), np.full((64, 48, 3), 128, np.uint8))
    spec = {"clip": "clip.mp4", "camera": "7", "image": "pics/a.png", "folder": "pics"}[source]
    monkeypatch.chdir(folder)

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(Predictor, "from_checkpoint", no_work)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    result = runner.invoke(app, ["infer", spec, "--checkpoint", str(ckpt), "--out", out])
    one_line_error(result, *fragments)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def _undecodable(clip: Path) -> Path:
    """The clip with its frame data zeroed: OpenCV opens it and announces its frames, and decodes none."""
    data = bytearray(clip.read_bytes())
    at = data.index(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    broken = clip.with_name("broken.mp4")
    broken.write_bytes(bytes(data))
    return broken


def test_a_video_without_a_readable_frame_is_one_line_and_writes_nothing(ckpt: Path, clip: Path) -> None:
    broken = _undecodable(clip)
    before = _files(clip.parent)
    result = runner.invoke(app, ["infer", str(broken), "--checkpoint", str(ckpt), "--device", "cpu", "--out",
                                 str(clip.parent / "o.mp4"), "--json", str(clip.parent / "o.json")])  # fmt: skip
    one_line_error(result, f"{broken}: none of its 6 frames could be read", "nothing was written")
    assert _files(clip.parent) == before


@pytest.mark.skipif(Path("/dev/video7").exists(), reason="this machine has a camera 7")
def test_a_missing_camera_is_one_stderr_line(ckpt: Path, tmp_path: Path) -> None:
    """OpenCV's capture backends each explain on fd 2 why camera 7 is not there (about 11 lines before)."""
    _, line = _error_line(_clpose(["infer", "7", "--checkpoint", str(ckpt), "--device", "cpu"], tmp_path))
    assert line == "error: camera 7 cannot be opened"


class _OlderOpenCVCapture:
    """cv2.VideoCapture as older OpenCV builds read GIFs: the frame count is the duration x the shortest frame's
    rate (52 for frames of 20, 1000 and 20 ms), so an animation read whole looked like a damaged video."""

    def __init__(self, source, *args) -> None:
        self._cap = _REAL_CAPTURE(source, *args)
        self._gif = str(source).endswith(".gif")

    def get(self, prop: int) -> float:
        if self._gif and prop == cv2.CAP_PROP_FRAME_COUNT:
            return 52.0
        return self._cap.get(prop)

    def __getattr__(self, name: str):
        return getattr(self._cap, name)


_REAL_CAPTURE = cv2.VideoCapture


@pytest.mark.parametrize("opencv", ["this OpenCV", "an older OpenCV"])
def test_an_animated_gif_is_read_as_a_video(ckpt: Path, tmp_path: Path, monkeypatch, opencv: str) -> None:
    if opencv == "an older OpenCV":
        monkeypatch.setattr(video_module.cv2, "VideoCapture", _OlderOpenCVCapture)
    gif = tmp_path / "anim.gif"
    frames = [np.zeros((96, 64, 3), np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame[10 + 20 * i : 30 + 20 * i, 10:50] = (255, 128, 0)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=[20, 1000, 20], loop=0)
    out, poses = tmp_path / "a.mp4", tmp_path / "a.json"
    result = runner.invoke(app, ["infer", str(gif), "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(out),
                                 "--json", str(poses)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "could not be read" not in result.output and f"wrote {out} (3 frames" in result.output
    record = json.loads(poses.read_text())
    assert [f["frame"] for f in record["frames"]] == [0, 1, 2] and record["failed_frames"] == 0
    assert record["kind"] == "video" and record["fps"] == pytest.approx(3 / 1.04)  # 3 frames in 1.04 s
    assert _REAL_CAPTURE(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 3


_SLOW_PARITY = """
import sys, time
from pathlib import Path
import clpose.export

def slow_parity(*args, **kwargs):
    Path(sys.argv[-1]).with_name("parity-started").touch()
    time.sleep(60)  # where SIGTERM arrives: the export's temporary file is open

clpose.export.check_parity = slow_parity
from clpose.cli.app import main
sys.argv[0] = "clpose"
main()
"""


@POSIX
def test_sigterm_during_export_leaves_no_temporary_file(ckpt: Path, tmp_path: Path) -> None:
    """Before, SIGTERM's default action ended Python before the atomic write removed its temporary file."""
    out = tmp_path / "m.pt"
    args = ["export", str(ckpt), "--format", "torchscript", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PARITY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.time() + 120
    while not (tmp_path / "parity-started").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.")]  # the temporary file is there
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["error: interrupted (Ctrl-C or SIGTERM); files being written were removed, finished ones kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity-started"]


@POSIX
def test_an_export_past_a_file_size_limit_is_one_line_and_leaves_no_file(ckpt: Path, tmp_path: Path) -> None:
    """Before, torch's C++ writer aborted TorchScript (exit 134) leaving a 2 MB temporary file."""
    formats = {"torchscript": "m.pt"}
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401

        formats["onnx"] = "m.onnx"
    except ImportError:  # the export extra is not installed: TorchScript only
        pass
    (tmp_path / "m.pt").write_bytes(b"an earlier export")
    before = _files(tmp_path)
    procs = {
        fmt: _clpose(["export", str(ckpt), "--format", fmt, "--out", out], tmp_path, 1_000_000)
        for fmt, out in formats.items()
    }
    for fmt, proc in procs.items():
        _, line = _error_line(proc, timeout=300)
        assert line.startswith(f"error: {formats[fmt]}: File too large (") and "free on that disk" in line, line
    assert _files(tmp_path) == before
