"""Reliability: no data loss, one-line errors (exit 2) that name the culprit, nothing half-written that looks
finished. Cases from issue 16; each runs through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine import train as train_module
from clpose.engine.checkpoint import load_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    run_prepare("synthetic", root, root, synthetic={"train": 16, "val": 8, "size": 64, "workers": 1}, show=False)
    return root


def _recipe(tmp_path: Path, data: Path, epochs: int = 1) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{name: clnet_resnet18}}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}\n"
        f"train: {{epochs: {epochs}, batch_size: 8, amp: off}}\neval: {{batch_size: 8}}\n"
    )
    return path


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_training_into_a_finished_run_is_refused_and_overwrite_replaces_it(tmp_path: Path, data: Path) -> None:
    recipe, out = _recipe(tmp_path, data), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    best = (out / "best.pt").read_bytes()
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    _one_line_error(result, f"--out {out} already holds a run", "--resume auto", "--overwrite")
    assert (out / "metrics.jsonl").read_text() == before and (out / "best.pt").read_bytes() == best  # untouched
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_kill_while_best_pt_is_written_leaves_the_older_last_pt(tmp_path: Path, monkeypatch) -> None:
    """best.pt is written before last.pt: a kill during the best.pt write leaves last.pt of the epoch before, so
    `--resume auto` trains the epoch again and writes best.pt (before, last.pt already claimed the new best)."""
    written = []

    def save(path: Path, state: dict) -> None:
        if Path(path).name == "best.pt":
            raise KeyboardInterrupt  # SIGKILL mid-write: the atomic write leaves nothing of it
        written.append(Path(path).name)

    monkeypatch.setattr(train_module, "save_checkpoint", save)
    monkeypatch.setattr(train_module, "plot_curves", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        train_module._write_epoch(tmp_path, [{"epoch": 2}], {"epoch": 2}, improved=True, name="x")
    assert written == []  # last.pt was not yet written: it still records epoch 1 and the old best
    train_module._write_epoch(tmp_path, [{"epoch": 3}], {"epoch": 3}, improved=False, name="x")
    assert written == ["last.pt"]


def test_resume_survives_a_torn_metrics_line_and_warns_about_a_changed_schedule(tmp_path: Path, data: Path) -> None:
    recipe, out = _recipe(tmp_path, data), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "loss": 0.')  # a kill while the line was appended
    args = ["train", str(recipe), "--out", str(out), "--resume", "auto", "--set", "train.epochs=2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "line 2 is torn" in result.stderr
    assert "changed schedule (train.epochs 1 -> 2)" in result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


CASES = [
    # (name, argv builder, fragments of the one-line error)
    ("empty checkpoint", lambda t: ["eval", str(_empty(t / "e.pt"))], ["e.pt is empty (0 bytes)"]),
    ("prepare --out a file", lambda t: ["prepare", "synthetic", "--out", str(_file(t / "f")), "--train", "4",
     "--val", "2", "--size", "64"], ["f"]),
    ("missing annotations", lambda t: ["eval", "--metric", "pck", "--predictions", str(_file(t / "p.npy")),
     "--annotations", str(t / "a.mat")], ["a.mat does not exist"]),
    ("zero-byte image", lambda t: ["infer", str(_empty(t / "z.jpg")), "--checkpoint", str(_ckpt(t))],
     ["z.jpg is empty (0 bytes)"]),
    ("undecodable image", lambda t: ["infer", str(_junk(t / "r.jpg")), "--checkpoint", str(_ckpt(t)), "--out",
     str(t / "o.jpg")], ["image", "r.jpg cannot be decoded"]),
    ("bogus device", lambda t: ["infer", str(_junk(t / "r.jpg")), "--checkpoint", str(_ckpt(t)), "--device",
     "bogus"], ["--device 'bogus'"]),
    ("opset too old", lambda t: ["export", str(_ckpt(t)), "--format", "onnx", "--opset", "5"], ["--opset 5"]),
    ("opset too new", lambda t: ["export", str(_ckpt(t)), "--format", "onnx", "--opset", "999"], ["--opset 999"]),
    ("text as .mat", lambda t: ["eval", "--metric", "pck", "--predictions", str(_file(t / "p.mat")),
     "--annotations", str(_lsp_gt(t))], ["p.mat could not be read as a MATLAB file"]),
    ("corrupt .npy", lambda t: ["eval", "--metric", "pck", "--predictions", str(_junk(t / "p.npy")),
     "--annotations", str(_lsp_gt(t))], ["p.npy could not be read as a numeric .npy array"]),
    ("pickled .npy", lambda t: ["eval", "--metric", "pck", "--predictions", str(_pickled(t / "p.npy")),
     "--annotations", str(_lsp_gt(t))], ["p.npy could not be read", "allow_pickle=False"]),
    ("named pipe", lambda t: ["infer", str(_fifo(t / "pipe")), "--checkpoint", str(_ckpt(t))],
     ["pipe is not a regular file"]),
]  # fmt: skip


def _lsp_gt(tmp_path: Path) -> Path:
    """A valid LSP joints.mat (3 x 14 x 2) as the annotations, so that the predictions file is what fails."""
    import numpy as np
    import scipy.io

    path = tmp_path / "joints.mat"
    scipy.io.savemat(str(path), {"joints": np.ones((3, 14, 2))})
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(b"\x93NUMPY" + bytes(range(256)) * 3)
    return path


def _pickled(path: Path) -> Path:
    import numpy as np

    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _ckpt(tmp_path: Path) -> Path:
    from test_inference import make_checkpoint

    path = tmp_path / "c.pt"
    return path if path.is_file() else make_checkpoint(path)


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize(("name", "argv", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(tmp_path: Path, name: str, argv, fragments: list[str]) -> None:
    _one_line_error(runner.invoke(app, argv(tmp_path)), *fragments)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name in ("o.jpg", "out.onnx")]
    assert not leftovers, leftovers  # nothing half-written


def test_an_os_error_on_a_user_path_is_one_line_naming_it(tmp_path: Path, data: Path) -> None:
    recipe, out = _recipe(tmp_path, data), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    folder = tmp_path / "result.json"
    folder.mkdir()
    _one_line_error(runner.invoke(app, ["eval", str(out), "--json", str(folder)]), "result.json")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_during_infer_finalises_the_video_and_the_json(tmp_path: Path) -> None:
    from test_inference import make_checkpoint

    from clpose.data.prepare.synthetic import write_video

    clip = write_video(tmp_path / "clip.mp4", frames=400, seed=1)
    ckpt = make_checkpoint(tmp_path / "c.pt")
    out, poses = tmp_path / "out.mp4", tmp_path / "poses.json"
    cmd = [sys.executable, "-m", "clpose", "infer", str(clip), "--checkpoint", str(ckpt), "--device", "cpu",
           "--out", str(out), "--json", str(poses)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out*")):
        time.sleep(0.05)  # the temporary video appears with the first annotated frame
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopped (Ctrl-C or SIGTERM) after" in stdout
    record = json.loads(poses.read_text())
    assert record["interrupted"] is True and 0 < len(record["frames"]) < 400
    assert out.is_file() and out.stat().st_size > 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no hidden temporary file left


def test_an_error_in_a_data_loader_worker_reads_as_its_own_message(tmp_path: Path, data: Path) -> None:
    """A damaged image found by a worker process: the one line is the worker's ClposeError, not torch's wrapper."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    victim = sorted((copy / "images" / "train").iterdir())[0]
    victim.write_bytes(b"")
    recipe = _recipe(tmp_path, copy)
    recipe.write_text(recipe.read_text().replace("num_workers: 0", "num_workers: 1"))
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    _one_line_error(result, victim.name, "missing or cannot be decoded")
    assert "Caught" not in result.stderr and "Original Traceback" not in result.stderr


def _set_people(d: dict, value) -> None:
    d["people"] = value


def _set_person(key: str, value):
    def mutate(d: dict) -> None:
        d["people"][0][key] = value

    return mutate


def _nan_keypoint(d: dict) -> None:
    d["people"][0]["keypoints"][0] = [float("nan"), 3.0, 2]


RECORD_CASES = [
    ("people null", lambda d: _set_people(d, None), "people must be a list"),
    ("list as image id", _set_person("image_id", [1, 2]), "people[0]: image_id [1, 2] is not in images"),
    ("string keypoints", _set_person("keypoints", "abc"), "people[0]: keypoints, center and scale must be numbers"),
    ("scale 0", _set_person("scale", [0.0, 0.0]), "people[0]: scale must be positive"),
    ("NaN centre", _set_person("center", [float("nan"), 1.0]), "people[0]: center must be finite"),
    ("NaN keypoint", _nan_keypoint, "people[0]: labelled keypoints must be finite"),
]


@pytest.mark.parametrize(("name", "mutate", "fragment"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_hand_edited_records_are_one_line_errors(tmp_path: Path, data: Path, name: str, mutate, fragment: str) -> None:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    records = json.loads((copy / "train.json").read_text())
    mutate(records)
    (copy / "train.json").write_text(json.dumps(records))  # NaN is written as the (non-standard) NaN token
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, copy)), "--out", str(tmp_path / "run")])
    _one_line_error(result, "train.json", fragment)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("bbox", [[0, 0, -5, 10], [0, 0, float("nan"), 10], [0, 0, 0, 10]])
def test_boxes_with_negative_nan_or_empty_sizes_are_refused(tmp_path: Path, bbox: list[float]) -> None:
    import cv2
    import numpy as np

    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.zeros((60, 80, 3), np.uint8))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": "a.jpg", "category_id": 1, "bbox": bbox, "score": 0.9}]))
    poses = tmp_path / "poses.json"
    argv = ["infer", str(image), "--checkpoint", str(_ckpt(tmp_path)), "--boxes", str(boxes), "--json", str(poses)]
    _one_line_error(runner.invoke(app, argv), "boxes.json: entry 0 bbox", "positive width")
    assert not poses.exists()
