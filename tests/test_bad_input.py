"""Reliability: no data loss, one-line errors (exit 2) that name the culprit, nothing half-written that looks
finished. Each case runs through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine.checkpoint import load_checkpoint
from clpose.training import loop as train_module
from clpose.training.rows import EpochRow

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


def _without_warnings(result):
    """The result with its `warning:` lines removed from stderr (for cases that also warn)."""
    lines = [line for line in result.stderr.splitlines(keepends=True) if not line.startswith("warning: ")]
    return SimpleNamespace(exit_code=result.exit_code, output=result.output, stderr="".join(lines))


def test_training_into_a_finished_run_is_refused_and_overwrite_replaces_it(tmp_path: Path, data: Path) -> None:
    recipe, out = _recipe(tmp_path, data), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    best = (out / "best.pt").read_bytes()
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    one_line_error(result, f"--out {out} already holds a run", "--resume auto", "--overwrite")
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
        train_module._write_epoch(tmp_path, [EpochRow(2)], {"epoch": 2}, improved=True, name="x")
    assert written == []  # last.pt was not yet written: it still records epoch 1 and the old best
    train_module._write_epoch(tmp_path, [EpochRow(3)], {"epoch": 3}, improved=False, name="x")
    assert written == ["last.pt"]


_KILL_AT_BEST = """
import os, signal, sys
from pathlib import Path
import torch
from clpose.evaluation import metrics
from clpose.training import loop as train

# Every epoch improves (a tiny run's PCK can tie), so the epoch-2 best.pt write happens.
metrics.Metric.value = lambda self, table: 1e6 * (1 + len(Path(sys.argv[-1], "metrics.jsonl").read_text().splitlines()))
save = torch.save

def dying_save(state, tmp):
    if Path(tmp).name.startswith(".best.") and state["epoch"] == 2:
        Path(tmp).write_bytes(b"PK half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)  # the real thing, mid-write
    save(state, tmp)

torch.save = dying_save
from clpose.cli.app import main
main()
"""


def test_a_real_kill_during_the_best_pt_write_loses_no_model(tmp_path: Path, data: Path, monkeypatch) -> None:
    """Issue 16 B: SIGKILL while best.pt of epoch 2 is written; `--resume auto` must end with best.pt = epoch 2."""
    from clpose.evaluation.metrics import Metric

    recipe, out = _recipe(tmp_path, data, epochs=2), tmp_path / "run"
    argv = ["train", str(recipe), "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _KILL_AT_BEST, *argv], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(out / "best.pt")["epoch"] == 1 and load_checkpoint(out / "last.pt")["epoch"] == 1
    monkeypatch.setattr(Metric, "value", lambda self, table: 1e9)  # epoch 2 improves on the resumed run too
    result = runner.invoke(app, [*argv, "--resume", "auto"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "best.pt")["epoch"] == 2 and load_checkpoint(out / "last.pt")["epoch"] == 2
    assert not list(out.glob(".*.tmp*"))  # the half-written temporary file was cleaned up
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


@pytest.mark.parametrize(
    "failure",
    [
        OSError(28, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"),  # torch's own words
    ],
    ids=["oserror", "torch-stream-writer"],
)
def test_a_full_disk_at_the_best_pt_write_keeps_the_previous_checkpoints(
    tmp_path: Path, data: Path, monkeypatch, failure: Exception
) -> None:
    import torch

    from clpose.evaluation.metrics import Metric

    recipe, out = _recipe(tmp_path, data, epochs=1), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("best.pt", "last.pt")}
    monkeypatch.setattr(Metric, "value", lambda self, table: 1e9)  # epoch 2 improves

    def full_disk(state, tmp) -> None:
        Path(tmp).write_bytes(b"the first bytes")
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    argv = ["train", str(recipe), "--out", str(out), "--resume", "auto", "--set", "train.epochs=2"]
    result = runner.invoke(app, argv)
    assert result.stderr.startswith("warning: resuming")  # the changed schedule, said once
    one_line_error(_without_warnings(result), f"cannot write checkpoint {out / 'best.pt'}", "free on that disk")
    assert {name: (out / name).read_bytes() for name in before} == before  # both intact, byte for byte
    assert not list(out.glob(".*.tmp*"))


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
    # zero-byte files everywhere a file is read
    ("infer zero-byte checkpoint", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_empty(t / "e.pt"))],
     ["e.pt is empty (0 bytes)"]),
    ("export zero-byte checkpoint", lambda t: ["export", str(_empty(t / "e.pt"))], ["e.pt is empty (0 bytes)"]),
    ("zero-byte detector weights", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)), "--detector",
     "torchvision-fasterrcnn", "--detector-weights", str(_empty(t / "d.pt"))],
     ["detector weights", "d.pt is empty (0 bytes)"]),
    # output paths the system refuses (a path under a file fails even for root, unlike a read-only folder)
    ("infer --out under a file", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)), "--out",
     str(_file(t / "f") / "o.jpg")], ["f: a file is in the way"]),
    ("infer --json under a file", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)), "--json",
     str(_file(t / "f") / "o.json")], ["f: a file is in the way"]),
    ("infer video --out a folder", lambda t: ["infer", str(_video(t)), "--checkpoint", str(_ckpt(t)), "--out",
     str(_folder(t / "o.mp4")), "--json", str(t / "v.json")], ["o.mp4: is a folder, expected a file name"]),
    ("infer folder --out a file", lambda t: ["infer", str(_image(t).parent), "--checkpoint", str(_ckpt(t)), "--out",
     str(_file(t / "f"))], ["f: a file is in the way"]),
    ("export --out a folder", lambda t: ["export", str(_ckpt(t)), "--format", "torchscript", "--out",
     str(_folder(t / "m.pt"))], ["m.pt: is a folder, expected a file name"]),
    ("bench --json a folder", lambda t: [*_BENCH, "--json", str(_folder(t / "b.json"))], ["b.json: is a folder"]),
    ("bench --json under a file", lambda t: [*_BENCH, "--json", str(_file(t / "f") / "b.json")],
     ["f: a file is in the way"]),
    ("demo --out a file", lambda t: ["demo", "--out", str(_file(t / "f"))], ["--out", "f is a file, not a folder"]),
    ("demo --out under a file", lambda t: ["demo", "--out", str(_file(t / "f") / "d"), "--minutes", "0.05"],
     ["f: a file is in the way"]),
    ("prepare --out under a file", lambda t: ["prepare", "synthetic", "--out", str(_file(t / "f") / "p"), "--train",
     "4", "--val", "2", "--size", "64"], ["f: a file is in the way"]),
    # values that passed and then crashed (or passed silently)
    ("eval --batch -5", lambda t: ["eval", str(_ckpt(t)), "--batch", "-5"], ["--batch must be >= 1, got -5"]),
    ("eval --batch 0", lambda t: ["eval", str(_ckpt(t)), "--batch", "0"], ["--batch must be >= 1, got 0"]),
    ("eval --alpha -1", lambda t: ["eval", str(_ckpt(t)), "--alpha", "-1"], ["--alpha must be in (0, 1], got -1"]),
    ("infer --kpt-threshold nan", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)),
     "--kpt-threshold", "nan"], ["--kpt-threshold must be in [0, 1], got nan"]),
    ("infer --det-threshold 2", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)),
     "--det-threshold", "2"], ["--det-threshold must be in [0, 1], got 2"]),
    ("infer --min-cutoff -1", lambda t: ["infer", str(_video(t)), "--checkpoint", str(_ckpt(t)), "--smooth",
     "oneeuro", "--min-cutoff", "-1"], ["--min-cutoff must be > 0, got -1"]),
    ("infer --batch 0", lambda t: ["infer", str(_image(t)), "--checkpoint", str(_ckpt(t)), "--batch", "0"],
     ["--batch must be >= 1, got 0"]),
    ("bench --batch -1", lambda t: [*_BENCH, "--batch", "-1"], ["--batch '-1'"]),
    ("bench --input-size 0x0", lambda t: [*_BENCH, "--input-size", "0x0"], ["--input-size '0x0'"]),
    ("bench --runs 0", lambda t: [*_BENCH, "--runs", "0"], ["--runs must be >= 1"]),
    ("export --input-size 0x64", lambda t: ["export", str(_ckpt(t)), "--input-size", "0x64"], ["'0x64'"]),
    # annotation and prediction files
    ("COCO annotations without categories", lambda t: _coco_eval(t, categories=False),
     ["gt.json has no categories list"]),
    ("COCO annotations without keypoints", lambda t: _coco_eval(t, keypoints=False),
     ["gt.json: 1 annotations have no keypoints"]),
    ("predictions not JSON", lambda t: ["eval", "--metric", "oks", "--predictions", str(_file(t / "r.json")),
     "--annotations", str(_coco_gt(t))], ["r.json are not a readable JSON file"]),
    ("missing source", lambda t: ["infer", str(t / "nope.jpg"), "--checkpoint", str(_ckpt(t))],
     ["nope.jpg does not exist"]),
    ("checkpoint folder without a checkpoint", lambda t: ["infer", str(_image(t)), "--checkpoint",
     str(_folder(t / "run"))], ["run holds neither best.pt nor last.pt"]),
]  # fmt: skip

_BENCH = ["bench", "--model", "clnet_resnet18", "--input-size", "64x64", "--runs", "1", "--warmup", "0"]


def _image(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "images" / "a.jpg"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 40, 3), 128, np.uint8))
    return path


def _video(tmp_path: Path) -> Path:
    from clpose.data.prepare.synthetic import write_video

    return write_video(tmp_path / "clip.mp4", frames=3, seed=1)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _coco_gt(tmp_path: Path, categories: bool = True, keypoints: bool = True) -> Path:
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
    if keypoints:
        ann |= {"num_keypoints": 17, "keypoints": [1, 1, 2] * 17}
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "annotations": [ann]}
    if categories:
        gt["categories"] = [{"id": 1, "name": "person"}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def _coco_eval(tmp_path: Path, **gt: bool) -> list[str]:
    results = tmp_path / "res.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [1, 1, 1] * 17, "score": 1.0}]))
    return ["eval", "--metric", "oks", "--predictions", str(results), "--annotations", str(_coco_gt(tmp_path, **gt))]


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
    one_line_error(runner.invoke(app, argv(tmp_path)), *fragments)
    finished = ("o.jpg", "out.onnx", "v.json", "b.json")
    made = {".clpose-prepare-video.json"}  # the clip generator's manifest of the files it wrote (OwnedFolder)
    leftovers = [
        p.name
        for p in tmp_path.rglob("*")
        if p.name not in made and (p.name.startswith(".") or (p.is_file() and p.name in finished))
    ]
    assert not leftovers, leftovers  # nothing half-written


@pytest.mark.parametrize(
    ("name", "argv", "fragment"),
    [
        (
            "resume from a zero-byte checkpoint",
            lambda t: ["--out", str(t / "run"), "--resume", str(_empty(t / "e.pt"))],
            "e.pt is empty",
        ),
        ("train --out a file", lambda t: ["--out", str(_file(t / "f"))], "f is a file, not a run folder"),
        ("train --out under a file", lambda t: ["--out", str(_file(t / "f") / "run")], "f: a file is in the way"),
    ],
    ids=["resume from a zero-byte checkpoint", "train --out a file", "train --out under a file"],
)
def test_bad_train_paths_are_one_line(tmp_path: Path, data: Path, name: str, argv, fragment: str) -> None:
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, data)), *argv(tmp_path)])
    one_line_error(result, fragment)
    assert not list(tmp_path.rglob("last.pt"))


class _Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint does to a loader without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("use", ["eval", "infer", "export", "resume", "detector-weights", "recipe"])
def test_hostile_checkpoints_and_recipes_execute_nothing(tmp_path: Path, data: Path, use: str) -> None:
    import pickle

    marker = tmp_path / "owned"
    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps({"model": _Payload(marker), "recipe": {}, "version": "0", "epoch": 1}))
    image = str(_image(tmp_path))
    recipe = _recipe(tmp_path, data)
    argv = {
        "eval": ["eval", str(hostile)],
        "infer": ["infer", image, "--checkpoint", str(hostile)],
        "export": ["export", str(hostile)],
        "resume": ["train", str(recipe), "--out", str(tmp_path / "run"), "--resume", str(hostile)],
        "detector-weights": ["infer", image, "--checkpoint", str(_ckpt(tmp_path)), "--detector",
                             "torchvision-fasterrcnn", "--detector-weights", str(hostile)],
        "recipe": ["train", str(_yaml_payload(tmp_path / "evil.yaml", marker)), "--out", str(tmp_path / "run")],
    }[use]  # fmt: skip
    result = runner.invoke(app, argv)
    one_line_error(
        result,
        *(["evil.yaml"] if use == "recipe" else ["hostile.pt", "not loaded, since unpickling it could run code"]),
    )
    assert not marker.exists()  # nothing was executed


def _yaml_payload(path: Path, marker: Path) -> Path:
    path.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    return path


def test_a_folder_with_damaged_images_names_each_skipped_file(tmp_path: Path) -> None:
    folder = _image(tmp_path).parent
    _empty(folder / "z.jpg")
    (folder / "r.jpg").write_bytes(b"random bytes")
    out, poses = tmp_path / "out", tmp_path / "poses.json"
    result = runner.invoke(app, ["infer", str(folder), "--checkpoint", str(_ckpt(tmp_path)), "--out", str(out),
                                 "--json", str(poses)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 images could not be read and were skipped (truncated, damaged or empty): r.jpg, z.jpg" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg"]
    record = json.loads(poses.read_text())
    assert len(record["frames"]) == 1 and record["failed_files"] == ["r.jpg", "z.jpg"]


def test_an_os_error_on_a_user_path_is_one_line_naming_it(tmp_path: Path, data: Path) -> None:
    recipe, out = _recipe(tmp_path, data), tmp_path / "run"
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out)]).exit_code == 0
    folder = tmp_path / "result.json"
    folder.mkdir()
    one_line_error(runner.invoke(app, ["eval", str(out), "--json", str(folder)]), "result.json")


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
    hidden = [p for p in os.listdir(tmp_path) if p.startswith(".") and p != ".clpose-prepare-video.json"]
    assert not hidden  # no hidden temporary file left (the clip generator's manifest is its record, not one)


def test_a_damaged_validation_image_counts_as_missed_in_training_and_stops_eval_in_one_line(
    tmp_path: Path, data: Path
) -> None:
    """Training: the epoch's checkpoints are written and the run goes on (the person counts as missed). `clpose
    eval`: one line, the data-loader worker's own ClposeError, not torch's "Caught ... Original Traceback"."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    victim = sorted((copy / "images" / "valid").iterdir())[0]
    victim.write_bytes(b"\xff\xd8 random bytes, not a JPEG")
    recipe = _recipe(tmp_path, copy)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"a black image for {victim}: it cannot be decoded" in " ".join(result.stderr.split())
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    with_workers = tmp_path / "workers.yaml"
    with_workers.write_text(recipe.read_text().replace("num_workers: 0", "num_workers: 1"))
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--recipe", str(with_workers)])
    one_line_error(result, victim.name, "missing or cannot be decoded", "people[0] of")
    assert "Caught" not in result.stderr and "Original Traceback" not in result.stderr


def test_training_skips_an_undecodable_image_and_refuses_an_empty_one_up_front(tmp_path: Path, data: Path) -> None:
    """Issue 16.1: one damaged file must not end a long run mid-way; an empty (interrupted copy) one is found by a
    stat before the first step."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    victims = sorted((copy / "images" / "train").iterdir())[:2]
    victims[0].write_bytes(b"\xff\xd8 random bytes, not a JPEG")
    recipe = _recipe(tmp_path, copy, epochs=2)
    recipe.write_text(recipe.read_text().replace("num_workers: 0", "num_workers: 1"))  # workers restart each epoch
    cmd = [sys.executable, "-m", "clpose", "train", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # a worker's stderr is the process's
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert said.count(f"skipping image {victims[0]}: it cannot be decoded") == 1  # once, not once per epoch
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    victims[1].write_bytes(b"")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run2")])
    one_line_error(result, "1 of 16 images", "are missing or empty", victims[1].name)
    assert not (tmp_path / "run2" / "last.pt").exists()


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
    one_line_error(result, "train.json", fragment)
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
    one_line_error(runner.invoke(app, argv), "boxes.json: entry 0 bbox", "positive width")
    assert not poses.exists()
