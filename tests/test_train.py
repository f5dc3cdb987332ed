"""Training: every recipe builds, one step of each model family, learning on a tiny set, exact resume,
crash-safe checkpoints, bad input, and two-process DDP on gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine.checkpoint import load_checkpoint, save_checkpoint
from clpose.engine.posemodel import PoseModel, recipe_codec
from clpose.errors import ClposeError
from clpose.losses import build_loss
from clpose.models import MODELS, build_model, model_options
from clpose.recipes import load_recipe
from clpose.training.loop import fit

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
runner = CliRunner()


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in RECIPES])
def test_every_recipe_loads_and_builds(path: Path) -> None:
    recipe = load_recipe(path)
    assert path.read_text().startswith("# "), "each recipe starts with a comment naming what it reproduces"
    options = model_options(recipe.model, pretrained=False)  # a local file the user downloads: not checked here
    k = {"lsp": 14, "mpii": 16, "coco": 17, "synthetic": 16}[recipe.data.dataset]
    with torch.device("meta"):
        build_model(recipe.model.name, k, **options)  # builds with the recipe's options
    codec = recipe_codec(recipe)
    entry = MODELS[recipe.model.name]  # what the model outputs is its entry's
    assert entry.codec == recipe.codec.name and codec.stride == entry.stride(options)
    build_loss(recipe.loss, codec)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    run_prepare("synthetic", root, root, synthetic={"train": 48, "val": 16, "size": 96, "workers": 1}, show=False)
    return root


def _recipe(tmp: Path, data: Path, model: str = "clnet_resnet18", extra: str = "", epochs: int = 2) -> Path:
    codec = "{name: heatmap}" if model == "hourglass" or model.startswith("simple") else "{name: composite}"
    loss = "{name: heatmap_mse}" if "heatmap" in codec else "{name: composite, region: union}"
    stacks = "\n  stacks: 2" if "hourglass" in model else ""
    path = tmp / f"{model}.yaml"
    path.write_text(f"""model:
  name: {model}{stacks}
codec: {codec}
loss: {loss}
data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}
train: {{epochs: {epochs}, batch_size: 8, lr: 0.002, schedule: cosine, warmup_epochs: 0.5, seed: 3}}
eval: {{flip: true, batch_size: 8}}
{extra}""")
    return path


@pytest.mark.parametrize("model", ["clnet_resnet18", "clnet_hourglass", "simplebaseline_resnet18", "hourglass"])
def test_one_epoch_of_each_model_family(model: str, tiny_data: Path, tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, tiny_data, model), ["train.epochs=1", "data.train_limit=16"])
    result = fit(recipe, out=tmp_path / "run", device="cpu", show_progress=False)
    (row,) = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["steps"] == 2 and row["loss"] > 0
    from clpose.engine.evaluate import EvalOptions, evaluate_checkpoint

    assert row["value"] == evaluate_checkpoint(result.run_dir / "best.pt", EvalOptions(device="cpu")).tables[-1]["Mean"]
    state = load_checkpoint(result.run_dir / "last.pt")
    assert state["epoch"] == 1 and state["model_name"] == model and (result.run_dir / "curves.png").stat().st_size
    assert set(state) >= {"optimizer", "scheduler", "scaler", "torch_rng", "recipe", "version"}


def test_loss_falls_clearly_on_a_tiny_set(tiny_data: Path, tmp_path: Path) -> None:
    recipe = load_recipe(
        _recipe(tmp_path, tiny_data, epochs=12),
        ["data.train_limit=32", "train.lr=0.003", "data.augment.color_jitter=0"],
    )
    result = fit(recipe, out=tmp_path / "run", device="cpu", show_progress=False)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["heatmap"], min(r["heatmap"] for r in rows[-3:])
    assert len(rows) == 12 and last < 0.5 * first, [r["heatmap"] for r in rows]


def test_resume_is_bit_identical(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clpose.training import loop as engine

    recipe = load_recipe(_recipe(tmp_path, tiny_data, epochs=2), ["data.train_limit=24"])
    straight = fit(recipe, out=tmp_path / "straight", device="cpu", show_progress=False)
    real, calls = engine.train_one_epoch, {"n": 0}

    def interrupted(*args, **kwargs):  # the same run, stopped (as by Ctrl-C) once epoch 1 is saved
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(recipe, out=tmp_path / "resumed", device="cpu", show_progress=False)
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    resumed = fit(recipe, out=tmp_path / "resumed", resume="auto", device="cpu", show_progress=False)
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    rows = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"model": {"w": torch.zeros(3)}, "recipe": {}, "version": "x", "epoch": 0})
    script = (
        f"import torch, itertools\nfrom clpose.engine.checkpoint import save_checkpoint\n"
        f"print('ready', flush=True)\n"
        f"for i in itertools.count(1):\n"
        f"    save_checkpoint({str(target)!r}, {{'model': {{'w': torch.full((4_000_000,), float(i))}}, "
        f"'recipe': {{}}, 'version': 'x', 'epoch': i}})\n"
    )
    for delay in (0.05, 0.2, 0.45):  # after the imports (seconds), while checkpoints of 16 MB are being written
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(target)
        assert torch.all(state["model"]["w"] == state["epoch"])  # a whole checkpoint, never a torn one
    save_checkpoint(target, {"model": {}, "recipe": {}, "version": "x", "epoch": 9})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # temporary files of the killed writers are gone


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clpose.training import loop as engine

    recipe = load_recipe(_recipe(tmp_path, tiny_data, epochs=3), ["data.train_limit=16"])
    real = engine.train_one_epoch
    calls = {"n": 0}

    def poisoned(step, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            step.loss_fn.w_h = float("nan")
        return real(step, *args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", poisoned)
    with pytest.raises(
        Exception, match=r"epoch 2: the loss became nan; training stopped and last\.pt keeps the last good epoch"
    ):
        fit(recipe, out=tmp_path / "run", device="cpu", show_progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


def test_bad_input_gives_one_line(tiny_data: Path, tmp_path: Path) -> None:
    path = _recipe(tmp_path, tiny_data)
    result = runner.invoke(app, ["train", str(path), "--set", "data.root=/nonexistent/data"])
    assert result.exit_code == 2 and "has no train.json: run `clpose prepare synthetic" in result.stderr
    result = runner.invoke(app, ["train", str(path), "--set", "model.name=clnet_resnet19"])
    assert result.exit_code == 2 and "unknown model 'clnet_resnet19'" in result.stderr
    result = runner.invoke(app, ["train", str(path), "--set", "train.lrr=1"])
    assert result.exit_code == 2 and "did you mean train.lr?" in result.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "last.pt").write_bytes(b"garbage")
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "broken"), "--resume", "auto"])
    assert result.exit_code == 2 and "last.pt cannot be read: it is corrupt" in result.stderr


def test_two_process_ddp_on_gloo_matches_one_process_evaluation(tiny_data: Path, tmp_path: Path) -> None:
    path = _recipe(tmp_path, tiny_data, epochs=1)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "clpose",
        "train",
        str(path),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--set",
        "data.train_limit=32",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["steps"] == 4  # global batch 8 = 2 processes x 4 images; 32 people = 4 steps, each process 4 x 4
    # the gathered, sharded validation equals one process evaluating the saved weights
    from clpose.data import build_dataset
    from clpose.engine.predict import predict
    from clpose.evaluation.metrics import METRICS, ScoreOptions

    pose = PoseModel.from_checkpoint(out / "last.pt", "cpu", amp="off")
    val = build_dataset(load_recipe(out / "recipe.yaml"), "valid", train=False, codec=pose.codec)
    table, _ = METRICS["pck"].score_predictions(val, predict(pose, val, 8, flip=True), ScoreOptions())
    assert table["Mean"] == row["value"]


def test_run_folders_are_numbered_and_resume_auto_finds_the_newest(tmp_path: Path) -> None:
    from clpose.recipes import recipe_from_dict
    from clpose.training.run_folder import make_run_dir

    recipe = recipe_from_dict(
        {"model": {"name": "clnet_resnet18"}, "data": {"dataset": "synthetic", "root": "x"}}, name="demo"
    )
    runs = tmp_path / "runs"
    assert make_run_dir(recipe, None, None, runs) == runs / "demo"
    (runs / "demo").mkdir(parents=True)
    assert make_run_dir(recipe, None, None, runs) == runs / "demo-2"
    (runs / "demo-2").mkdir()
    assert make_run_dir(recipe, None, None, runs) == runs / "demo-3"
    assert make_run_dir(recipe, tmp_path / "mine", None, runs) == tmp_path / "mine"
    with pytest.raises(ClposeError, match=r"no .*last\.pt"):
        make_run_dir(recipe, None, "auto", runs)
    for name in ("demo", "demo-2"):
        (runs / name / "last.pt").write_bytes(b"x")
        time.sleep(0.01)
    assert make_run_dir(recipe, None, "auto", runs) == runs / "demo-2"
