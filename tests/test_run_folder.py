"""The run folder (clpose/training/run_folder.py): runs are never mixed or destroyed. Issue 23, class 4: a checkpoint of
another run, two trainings at once, a run killed in epoch 1, a finished run resumed with fewer epochs, a checkpoint
that does not fit, --overwrite followed by a failure, and the demo under another precision. Each runs through the
real CLI on tiny synthetic data."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import one_line_error
from typer.testing import CliRunner

import clpose.demo as demo
from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine.checkpoint import load_checkpoint, save_checkpoint
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Metric
from clpose.recipes import recipe_from_dict
from clpose.speed import training as speed_training
from clpose.training import loop as train_module

runner = CliRunner()
CHECKPOINTS = ("last.pt", "best.pt")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    run_prepare("synthetic", root, root, synthetic={"train": 16, "val": 8, "size": 64, "workers": 1}, show=False)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> dict[str, Path]:
    """A: a finished run of 2 epochs; O: another run (1 epoch, another seed). Tests copy them before changing them."""
    root = tmp_path_factory.mktemp("runs")
    recipe = root / "r.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet10}}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}\n"
        f"train: {{epochs: 2, batch_size: 8, amp: off}}\neval: {{batch_size: 8, flip: false}}\n"
    )
    for name, extra in (("A", []), ("O", ["--set", "train.epochs=1", "--set", "train.seed=1"])):
        result = runner.invoke(app, ["train", str(recipe), "--out", str(root / name), *extra])
        assert result.exit_code == 0, result.output
    return {"recipe": recipe, "A": root / "A", "O": root / "O"}


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file of `folder` (hidden ones too) and a digest of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _epochs(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _run_id(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text())["run_id"]


def _said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _train(runs: dict[str, Path], *argv: str):
    return runner.invoke(app, ["train", str(runs["recipe"]), *argv])


def test_a_checkpoint_of_another_run_cannot_continue_a_run_folder(runs: dict[str, Path], tmp_path: Path) -> None:
    """Issue example 1: `--resume other/last.pt --out runs/A` replaced A's best.pt and mixed the two histories."""
    out, other = _copy(runs["A"], tmp_path / "A"), runs["O"] / "last.pt"
    before = _snapshot(out)
    result = _train(runs, "--resume", str(other), "--out", str(out), "--set", "train.epochs=3")
    one_line_error(result, f"--out {out} holds another run", f"than --resume {other}", "branch", "--overwrite")
    assert f"another run (run {_run_id(out)}) than --resume {other} (run {_run_id(runs['O'])})" in result.stderr
    assert _snapshot(out) == before  # best.pt, last.pt, metrics.jsonl, ... byte for byte


def test_resume_of_a_checkpoint_without_out_continues_its_own_folder(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a default runs/NAME folder would be made
    out = _copy(runs["A"], tmp_path / "A")
    result = _train(runs, "--resume", str(out / "last.pt"), "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert _epochs(out) == [1, 2, 3] and not (tmp_path / "runs").exists()
    assert load_checkpoint(out / "last.pt")["run_id"] == _run_id(out) == _run_id(runs["A"])  # the same run, on


def test_a_checkpoint_of_another_run_starts_a_branch_in_an_empty_folder(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, branch = runs["A"], tmp_path / "B"
    before = _snapshot(source)
    monkeypatch.setattr(Metric, "value", lambda self, table: -1.0)  # the branch's epoch is worse: best.pt stays
    result = _train(runs, "--resume", str(source / "last.pt"), "--out", str(branch), "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert (
        f"branching {source / 'last.pt'} (epoch 2) into {branch}: its metrics up to epoch 2 and its best.pt"
        in _said(result)
    )
    rows = [json.loads(line) for line in (branch / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[:2] == [json.loads(line) for line in (source / "metrics.jsonl").read_text().splitlines()]
    theirs, best, last = (load_checkpoint(p) for p in (source / "best.pt", branch / "best.pt", branch / "last.pt"))
    assert best["best_metric"] == last["best_metric"] == theirs["best_metric"] == max(r["value"] for r in rows[:2])
    assert all(torch.equal(best["model"][k], theirs["model"][k]) for k in theirs["model"])  # the source's best model
    record = json.loads((branch / "run.json").read_text())
    origin = {"checkpoint": str((source / "last.pt").resolve()), "run_id": _run_id(source), "epoch": 2}
    assert record["branched_from"] == origin and last["branched_from"] == origin
    assert best["run_id"] == last["run_id"] == record["run_id"] != _run_id(source)  # the branch's own run
    assert _snapshot(source) == before


def _make_legacy(folder: Path) -> Path:
    """`folder` as an older clpose left it: no run.json, no run id in its checkpoints."""
    (folder / "run.json").unlink(missing_ok=True)
    for name in CHECKPOINTS:
        state = load_checkpoint(folder / name)
        for key in ("run_id", "branched_from"):
            state.pop(key, None)
        save_checkpoint(folder / name, state)
    return folder


def test_checkpoints_without_a_run_id_resume_only_in_their_own_folder(runs: dict[str, Path], tmp_path: Path) -> None:
    old, other = _make_legacy(_copy(runs["A"], tmp_path / "L")), _make_legacy(_copy(runs["O"], tmp_path / "O"))
    before = _snapshot(old)
    result = _train(runs, "--resume", str(other / "last.pt"), "--out", str(old), "--set", "train.epochs=3")
    one_line_error(result, f"--out {old} holds another run (a run of an older clpose) than --resume {other}/last.pt")
    assert _snapshot(old) == before
    result = _train(runs, "--resume", str(old / "last.pt"), "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output
    assert _epochs(old) == [1, 2, 3] and load_checkpoint(old / "last.pt")["run_id"] == _run_id(old)  # now has an id


_STUCK_IN_EPOCH_1 = """
import sys, time
from pathlib import Path
from clpose.training import loop as train

marker = Path(sys.argv[1])

def stuck(*args, **kwargs):
    marker.write_text("epoch 1 started")
    time.sleep(300)

train.train_one_epoch = stuck
sys.argv = ["clpose", *sys.argv[2:]]
from clpose.cli.app import main
main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_a_second_training_is_refused_and_a_run_killed_in_epoch_1_starts_again(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Issue examples 2 and 3: two `--resume auto` on one folder both ran (epochs 1,3,2,4,3,4); after SIGTERM in epoch 1
    a rerun was refused ("already holds a run") and `--resume auto` failed ("last.pt does not exist")."""
    out, marker = tmp_path / "C", tmp_path / "started"
    cmd = [sys.executable, "-c", _STUCK_IN_EPOCH_1, str(marker), "train", str(runs["recipe"]), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.time() + 180
        while not marker.exists():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the first training never reached epoch 1: {proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        second = _train(runs, "--out", str(out), "--resume", "auto")
        one_line_error(second, f"{out} is in use by another training (pid {proc.pid} on ", "choose another --out")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGTERM, 130)  # killed outright, or ended as by Ctrl-C where SIGTERM is caught
    assert not any((out / name).exists() for name in CHECKPOINTS)
    copy = _copy(out, tmp_path / "D")
    again = _train(runs, "--out", str(out), "--set", "train.epochs=1")
    assert again.exit_code == 0, again.output
    assert f"{out}: its run stopped before finishing an epoch (no checkpoint): starting again" in _said(again)
    assert _epochs(out) == [1]
    resumed = _train(runs, "--out", str(copy), "--resume", "auto", "--set", "train.epochs=1")
    assert resumed.exit_code == 0, resumed.output
    said = _said(resumed)
    assert (
        f"--resume auto: {copy} holds no checkpoint (its run stopped before finishing an epoch): starting at epoch 1"
        in said
    )
    assert _epochs(copy) == [1]


def test_the_lock_falls_back_to_msvcrt_without_fcntl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from clpose.training import lock as run_lock
    from clpose.training.lock import RunLock

    class FakeMsvcrt:  # Windows' byte-range lock, played by flock on this machine
        LK_NBLCK = 2

        @staticmethod
        def locking(fd: int, mode: int, nbytes: int) -> None:
            assert mode == 2 and nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 4096  # past the pid text
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    monkeypatch.setattr(run_lock, "fcntl", None)
    monkeypatch.setattr(run_lock, "msvcrt", FakeMsvcrt)
    folder = tmp_path / "run"
    held = RunLock(folder).acquire()
    with pytest.raises(
        ClposeError, match=rf"^{re.escape(str(folder))} is in use by another training \(pid {os.getpid()} "
    ):
        RunLock(folder).acquire()
    held.release()
    assert not folder.exists()  # made for a run that wrote nothing: removed with the lock
    RunLock(folder).acquire().release()


def test_a_finished_run_is_not_rewritten_when_there_is_nothing_to_train(runs: dict[str, Path], tmp_path: Path) -> None:
    """Issue example 4: `--resume auto --set train.epochs=2` on a 3-epoch run printed "done: 4 epochs" and rewrote
    recipe.yaml."""
    out = _copy(runs["A"], tmp_path / "A")
    before = _snapshot(out)
    for epochs in (1, 2):
        result = _train(runs, "--out", str(out), "--resume", "auto", "--set", f"train.epochs={epochs}")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == (
            f"{out} has already trained 2 epochs (train.epochs {epochs}): nothing to train; raise train.epochs to "
            "continue"
        )
        assert result.stderr == "" and _snapshot(out) == before


def test_a_checkpoint_that_does_not_fit_is_refused_before_anything_is_written(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Issue example 5: another model or optimizer was a traceback after recipe.yaml was rewritten."""
    out = _copy(runs["A"], tmp_path / "A")
    before = _snapshot(out)
    argv = ["--out", str(out), "--resume", "auto", "--set", "train.epochs=3"]
    result = _train(runs, *argv, "--set", "model.name=clnet_resnet18", "--set", "train.optimizer=sgd")
    one_line_error(
        result,
        f"checkpoint {out / 'last.pt'} does not fit this recipe: model clnet_resnet10 (the recipe: clnet_resnet18); "
        "optimizer adam (the recipe: sgd)",
    )
    assert _snapshot(out) == before
    state = load_checkpoint(out / "last.pt")  # weights of another version of the model, labels of another skeleton
    weights = state["model"]
    gone, cut = next(iter(weights)), [k for k, v in weights.items() if v.ndim == 4][-1]
    shape = tuple(weights[cut].shape)
    del weights[gone]
    weights[cut] = weights[cut][:3]
    state["skeleton"] = "coco"
    odd, branch = tmp_path / "odd.pt", tmp_path / "new"
    save_checkpoint(odd, state)
    result = _train(runs, "--resume", str(odd), "--out", str(branch), "--set", "train.epochs=3")
    one_line_error(
        result,
        f"checkpoint {odd} does not fit this recipe: model weights: 1 missing (e.g. {gone}), 1 of another shape "
        f"(e.g. {cut} {(3, *shape[1:])}, the model's {shape}); skeleton coco (the data: synthetic)",
    )
    assert not branch.exists()  # made for the run, removed with its lock


def test_overwrite_replaces_every_file_of_the_old_run_only_after_setup(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue example 6: `--overwrite` followed by a failure left the old curves.png."""
    out = _copy(runs["A"], tmp_path / "A")
    before = _snapshot(out)
    result = _train(runs, "--out", str(out), "--overwrite", "--set", f"data.root={tmp_path / 'missing'}")
    one_line_error(result, "has no train.json")
    assert _snapshot(out) == before  # a failed setup leaves the old run as it was

    def failing(*args, **kwargs):
        raise ClposeError("the disk went away")

    monkeypatch.setattr(train_module, "train_one_epoch", failing)
    result = _train(runs, "--out", str(out), "--overwrite")
    one_line_error(result, "epoch 1: the disk went away")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "recipe.yaml", "run.json"]  # nothing old
    assert _run_id(out) != _run_id(runs["A"]) and (out / "metrics.jsonl").read_text() == ""


def test_the_demo_keeps_its_finished_training_when_the_precision_changes(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Issue example 7: a rerun of `clpose demo` under load deleted its finished training because `amp: auto` chose
    another precision than the one in plan.json."""
    out = tmp_path / "demo"
    train = _copy(runs["A"], out / "train")
    recipe = recipe_from_dict(load_checkpoint(train / "last.pt")["recipe"], name="demo")
    plan = {"minutes": 0.5, "train": 16, "val": 8, "precision": "bf16", "samples_per_s": 9.0, "epochs": 2}
    (out / "plan.json").write_text(json.dumps({**plan, "train_per_epoch": 16}))
    monkeypatch.setattr(speed_training, "measure_speed", lambda *a, **k: pytest.fail("the plan was measured again"))
    before = _snapshot(train)
    assert demo._plan(out, recipe, 0.5, 16, 8) == (2, 16)
    assert demo._train(out, recipe) == train
    said = " ".join(capsys.readouterr().out.split())
    assert "train.amp auto runs as fp32 on this machine now (the plan was measured in bf16): the plan and its " in said
    assert f"reusing {train} (2 epochs trained)" in said
    assert _snapshot(train) == before


def test_resume_auto_without_out_finds_a_run_to_continue_else_one_to_start_again(tmp_path: Path) -> None:
    from clpose.training.run_folder import make_run_dir

    recipe = recipe_from_dict({"model": {"name": "clnet_resnet10"}, "data": {"dataset": "synthetic", "root": "x"}})
    recipe.name, runs = "demo", tmp_path / "runs"
    for name in ("demo", "demo-2"):
        (runs / name).mkdir(parents=True)
    (runs / "demo" / "run.json").write_text("{}")  # stopped before finishing an epoch
    assert make_run_dir(recipe, None, "auto", runs) == runs / "demo"
    (runs / "demo-2" / "last.pt").write_bytes(b"x")
    assert make_run_dir(recipe, None, "auto", runs) == runs / "demo-2"  # a run to continue comes first
    assert make_run_dir(recipe, None, str(tmp_path / "elsewhere" / "best.pt"), runs) == tmp_path / "elsewhere"


def test_training_into_the_recipes_own_folder_leaves_the_recipe_as_written(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 31, class 1: `clpose train exp2/recipe.yaml --out exp2 --set train.lr=0.123` replaced the user's recipe
    (its comments and values) with the resolved one. The run's resolved recipe now goes beside it, and a rerun with
    --overwrite or --resume auto still leaves the user's file alone."""
    exp = tmp_path / "exp2"
    exp.mkdir()
    mine = exp / "recipe.yaml"
    mine.write_text(
        "# my experiment: keep this comment\n" + runs["recipe"].read_text().replace("epochs: 2", "epochs: 1")
    )
    before = mine.read_bytes()
    for extra in ([], ["--overwrite"], ["--resume", "auto", "--set", "train.epochs=2"]):
        result = runner.invoke(app, ["train", str(mine), "--out", str(exp), "--set", "train.lr=0.123", *extra])
        assert result.exit_code == 0, result.output
        assert mine.read_bytes() == before
    resolved = (exp / "recipe.resolved.yaml").read_text()
    assert resolved.startswith("# clpose train: the resolved recipe of run ") and "lr: 0.123" in resolved
    assert load_checkpoint(exp / "last.pt")["epoch"] == 2


def test_a_run_file_that_clpose_did_not_write_is_never_replaced(runs: dict[str, Path], tmp_path: Path) -> None:
    """A hand-made metrics.jsonl or run.json (or one of another tool) in --out is named, not replaced; a recipe.yaml
    that clpose wrote (its first line says so) is a run's and is replaced as before."""
    for name, text in (
        ("metrics.jsonl", "my notes\n"),
        ("run.json", '{"tool": "other"}\n'),
        ("recipe.resolved.yaml", "model: {}\n"),
    ):
        out = tmp_path / name
        out.mkdir()
        (out / name).write_text(text)
        if name == "recipe.resolved.yaml":
            (out / "recipe.yaml").write_text("# the user's\n")
        result = runner.invoke(app, ["train", str(runs["recipe"]), "--out", str(out)])
        one_line_error(result, f"--out {out} holds {name}, which clpose train did not write")
        assert (out / name).read_text() == text and sorted(p.name for p in out.iterdir() if p.name != ".lock") == (
            sorted([name, "recipe.yaml"]) if name == "recipe.resolved.yaml" else [name]
        )


@pytest.mark.parametrize(
    ("higher_is_better", "values", "best_epoch"),
    [(False, [5.0, 2.0, 3.0], 2), (True, [2.0, 5.0, 3.0], 2), (False, [1.0, 2.0, 3.0], 1)],
)
def test_best_pt_is_the_best_epoch_in_the_metrics_direction(
    runs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    higher_is_better: bool,
    values: list[float],
    best_epoch: int,
) -> None:
    """Issue 31, class 9: best.pt chosen as if every metric were higher-is-better kept the worst epoch of an error in
    pixels. The metric's scores are given; the rest is a real three-epoch run."""
    import dataclasses

    from clpose.evaluation.metrics import METRICS

    scores = iter([0.0, *values])  # the first score is training's check that the split can be scored at all

    def score(dataset, predictions, options):
        return {"Mean": next(scores), "metric": "err"}, None

    metric = dataclasses.replace(
        METRICS["pck"], name="err", score_predictions=score, higher_is_better=higher_is_better, scale=1.0
    )
    monkeypatch.setattr(train_module, "dataset_metric", lambda *args, **kwargs: metric)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(runs["recipe"]), "--out", str(out), "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    best = load_checkpoint(out / "best.pt")
    assert (best["epoch"], best["best_metric"]) == (best_epoch, values[best_epoch - 1])
    assert load_checkpoint(out / "last.pt")["best_metric"] == values[best_epoch - 1]
