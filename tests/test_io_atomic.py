"""clpose.io under failure: outputs staged and moved into place together or not at all, temporary files
named by their writer's pid and removed once that writer is dead, OSErrors naming the user's path, SIGTERM as
Ctrl-C."""

from __future__ import annotations

import ast
import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from clpose.cli.app import app, os_error_message
from clpose.io import Staged, atomic_path, staged, write_json, write_text
from clpose.signals import sigterm_as_interrupt

runner = CliRunner()
POSIX = pytest.mark.skipif(os.name != "posix", reason="process ids and signals as POSIX has them")


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_staged_outputs_appear_together_or_not_at_all(tmp_path: Path) -> None:
    video, record = tmp_path / "v.mp4", tmp_path / "v.json"
    video.write_bytes(b"old video")
    with pytest.raises(RuntimeError), staged() as stage:
        stage.path(video).write_bytes(b"new video")
        stage.write_text(record, "{}")
        raise RuntimeError("the check of the video failed")
    assert video.read_bytes() == b"old video" and _names(tmp_path) == ["v.mp4"]
    with staged() as stage:
        stage.path(video).write_bytes(b"new video")
        stage.write_text(record, "{}")
        assert video.read_bytes() == b"old video" and not record.exists()  # nothing moves before the commit
    assert video.read_bytes() == b"new video" and record.read_text() == "{}" and _names(tmp_path) == ["v.json", "v.mp4"]


def test_a_move_failing_midway_puts_back_the_outputs_already_moved(tmp_path: Path, monkeypatch) -> None:
    first, second, third = tmp_path / "a.mp4", tmp_path / "b.json", tmp_path / "c.json"
    first.write_bytes(b"old a")
    stage = Staged()
    for target in (first, second, third):
        stage.path(target).write_bytes(b"new " + target.name.encode())
    real = os.replace

    def replace(src, dst) -> None:
        if Path(dst) == third:
            raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as caught:
        stage.commit()
    assert caught.value.filename == str(third) and caught.value.filename2 is None
    assert first.read_bytes() == b"old a"  # moved, then put back
    assert _names(tmp_path) == ["a.mp4"]  # b.json (new) taken back, no temporary file or backup left


def test_temporary_names_carry_the_writers_pid_and_keep_the_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out.mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4"
        assert tmp.name.startswith(f".out.{os.getpid()}-") and tmp.name.endswith(".tmp.mp4")
        tmp.write_bytes(b"x")
    assert _names(tmp_path) == ["out.mp4"]


_KILLED_WRITER = """
import os, signal, sys
from clpose.io import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write("half")
    f.flush()
    print(sorted(n for n in os.listdir(os.path.dirname(sys.argv[1])) if n.startswith(".")), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # cannot be caught: the temporary file stays
"""


@POSIX
def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer_and_no_other(tmp_path: Path) -> None:
    target = tmp_path / "records.json"
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (stale,) = ast.literal_eval(killed.stdout)  # the names the child saw: its own temporary file
    assert (tmp_path / stale).is_file()
    pid, host = stale.split(".")[2].split("-")  # .records.PID-HOST.RANDOM.tmp.json
    other_host = "000000" if host != "000000" else "ffffff"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [
            f".records.{alive.pid}-{host}.abcd1234.tmp.json",  # a live process writing the same target
            f".records.{os.getpid()}-{host}.efgh5678.tmp.json",  # this process
            f".other.{pid}-{host}.abcd1234.tmp.json",  # the dead writer, another target
            f".records.{pid}-{other_host}.abcd1234.tmp.json",  # a pid of another host (a shared folder)
            f".records.b.{pid}-{host}.abcd1234.tmp.json",  # the target records.b.json
        ]
        for name in keep:
            (tmp_path / name).write_text("live")
        write_json(target, {"a": 1})
        assert not (tmp_path / stale).exists()
        assert _names(tmp_path) == sorted([*keep, "records.json"])
    finally:
        alive.kill()
        alive.wait()


def test_os_errors_name_the_users_path_not_the_temporary_file(tmp_path: Path, monkeypatch) -> None:
    """Tests may run as root, who writes into read-only folders: the system's refusals are simulated, named as the
    system names them (the temporary file)."""
    target = tmp_path / "ro" / "result.json"
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(target.parent / ".result.123-abc.x.tmp.json"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as caught:
        write_json(target, {})
    assert os_error_message(caught.value) == f"{target}: Read-only file system"
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)

    def refused(src, dst) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError) as caught:
        write_text(target, "x")
    assert os_error_message(caught.value) == f"{target}: Permission denied"
    monkeypatch.undo()

    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:  # a write that fails: it names nothing
        with open(tmp, "wb") as f:
            f.write(b"x")
        raise OSError(errno.EFBIG, "File too large")
    assert caught.value.filename == str(target)
    assert os_error_message(caught.value).startswith(f"{target}: File too large (") and "free on that disk" in (
        os_error_message(caught.value)
    )
    assert _names(target.parent) == []


def test_the_cli_names_the_users_path_when_the_final_move_is_refused(tmp_path: Path, monkeypatch) -> None:
    from helpers import one_line_error
    from test_inference import make_checkpoint

    image, ckpt, poses = tmp_path / "a.png", make_checkpoint(tmp_path / "c.pt"), tmp_path / "out" / "poses.json"
    cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    real = os.replace

    def read_only(src, dst) -> None:
        if Path(dst).parent == poses.parent:
            raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", read_only)
    result = runner.invoke(app, ["infer", str(image), "--checkpoint", str(ckpt), "--device", "cpu", "--json",
                                 str(poses)])  # fmt: skip
    one_line_error(result)
    assert result.stderr.strip() == f"error: {poses}: Read-only file system"  # not ".poses.123-abc.x.tmp.json -> ..."
    assert _names(poses.parent) == []


@POSIX
def test_sigterm_raises_keyboard_interrupt_in_this_process_only(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        child = os.fork()
        if child == 0:  # a forked worker inherits the handler: SIGTERM must still end it, not raise in it
            try:
                time.sleep(30)
            finally:
                os._exit(0)  # a KeyboardInterrupt here would be a failure (exit 0 instead of the signal)
        time.sleep(0.2)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_stale_check_lists_a_folder_once_for_many_outputs(tmp_path: Path, monkeypatch) -> None:
    """A folder of many annotated images is staged image by image: listing the folder for each would be quadratic."""
    calls = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: calls.append(p) or real(p))
    with staged() as stage:
        for i in range(50):
            stage.path(tmp_path / f"{i}.png").write_bytes(b"png")
    assert len(calls) == 1 and len(_names(tmp_path)) == 50


@pytest.mark.parametrize("name", ["a" * 246 + ".png", "b" * 251 + ".png", "é" * 123 + ".json", "c" * 255])
def test_an_output_name_that_fits_a_file_name_is_written_whatever_its_length(tmp_path: Path, name: str) -> None:
    """Issue 31, class 8: a valid 250-character output name was refused because its temporary name passed 255
    bytes. The temporary name carries a cut stem and its hash; the next writer still finds it when stale."""
    target = tmp_path / name
    write_text(target, "x")
    assert target.read_text() == "x" and _names(tmp_path) == [name]
    stage = Staged()
    tmp = stage.path(target)
    assert len(tmp.name.encode()) <= 255 and tmp.name.endswith(f".tmp{target.suffix}")
    stale = tmp.name.replace(f".{os.getpid()}-", ".4194303-")  # a writer that is gone (the largest Linux pid)
    os.rename(tmp, tmp_path / stale)
    stage.temporaries.clear()
    write_text(target, "y")
    assert target.read_text() == "y" and _names(tmp_path) == [name]
