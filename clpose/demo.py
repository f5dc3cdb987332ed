"""`clpose demo`: the whole toolkit on built-in data, on a CPU, through the same functions as the commands.

1. data: `clpose prepare synthetic` (and a clip with `--video`);  2. train: `clpose train` with the recipe of
recipes/synthetic_resnet10.yaml, its epochs fitted to the time budget from a measured training speed;
3. `clpose eval`;  4. `clpose vis targets` and a sheet of predictions;  5. `clpose infer` on the clip with
smoothing;  6. `clpose bench`. Every step reuses what an earlier run left (idempotent); `--fresh` starts over.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.rule import Rule

from clpose.config import Recipe
from clpose.console import console, styled
from clpose.errors import ClposeError
from clpose.io import write_json
from clpose.outputs import OwnedFolder
from clpose.recipes import recipe_from_dict

if TYPE_CHECKING:
    from clpose.inference.predictor import Predictor

# recipes/synthetic_resnet10.yaml (a test keeps the two equal); the demo sets data.root and the epochs.
DEMO_RECIPE: dict[str, Any] = {
    "model": {"name": "clnet_resnet10"},
    "codec": {"name": "composite", "sigma": 16.0, "tau": 0.6},
    "loss": {"name": "composite", "w_h": 5.0, "w_o": 2.0, "region": "union"},
    "data": {
        "dataset": "synthetic",
        "root": "data/synthetic",
        "input_size": "128x128",
        "num_workers": 1,
        "augment": {"rotation_factor": 0.0, "scale_factor": 0.0},
    },
    "train": {
        "epochs": 4,
        "batch_size": 16,
        "optimizer": "adam",
        "lr": 0.004,
        "schedule": "cosine",
        "warmup_epochs": 0.5,
        "amp": "auto",
        "channels_last": True,
        "max_minutes": 12,
    },
    "eval": {"flip": True},
}
IMAGE_SIZE = 256  # of the synthetic images (smaller ones render faster but teach less: docs/training.md)


CLIP_FRAMES = 100  # the synthetic video that `infer` annotates (4 s at 25 frames/s)
# what the demo writes in its --out folder: all it may reuse, replace or (--fresh) remove there
DEMO_ENTRIES = ("data", "train", "vis", "video", "plan.json", "eval.json", "summary.json")


@dataclass
class DemoResult:
    out: Path
    pck: float
    table: dict[str, float]
    outputs: dict[str, str] = field(default_factory=dict)
    model: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    seconds: float = 0.0


def demo_recipe(data_dir: Path, epochs: int, minutes: float, train_per_epoch: int | None = None) -> Recipe:
    raw = json.loads(json.dumps(DEMO_RECIPE))
    raw["data"]["root"] = str(data_dir)
    raw["data"]["train_limit"] = train_per_epoch
    raw["train"]["epochs"] = epochs
    # the plan's speed, measured in seconds, can be off on a busy machine: the guard keeps the time promise,
    # and where it stops a plan that was too long, the cosine schedule is nearly done (5% of the peak lr at 85%)
    raw["train"]["max_minutes"] = minutes
    return recipe_from_dict(raw, "clpose demo", name="demo")


def data_sizes(minutes: float) -> tuple[int, int]:
    """Training and validation images for a budget: 8000 / 500 from 10 minutes on, fewer for short runs so that
    generating them stays a small part of the budget. More distinct images and fewer epochs over them learn more
    from the same training samples (90.7% against 89.9% for 8000 x 4 and 4000 x 8, docs/benchmarks.md)."""
    train = min(8000, max(400, round(minutes * 800)))
    return train, min(500, max(100, train // 16))


def _minutes(minutes: float) -> str:
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def _step(number: int, title: str) -> None:
    console.print(Rule(styled((f"{number}/6  {title}", "bold")), align="left"))


def fit_budget(seconds: float, speed: float, n_train: int, n_val: int, batch: int) -> tuple[int, int]:
    """(epochs, training images per epoch) that fill `seconds` of training at `speed` samples/s.

    The fewest epochs whose share of the budget needs no more than the `n_train` images there are: every image
    is seen as few times as the budget allows (distinct images teach more than repeats), and the last epoch ends
    at the budget instead of up to an epoch before it. An epoch also validates (with flip test: two forward
    passes, about 2/3 of a training step per image) and spends about two seconds on loader start, checkpoint and
    curve writing.
    """
    fixed = 0.67 * n_val / speed + 2.0
    epochs = 1
    while (seconds / epochs - fixed) * speed > n_train:
        epochs += 1
    per_epoch = math.floor((seconds / epochs - fixed) * speed)
    return epochs, min(n_train, max(batch, per_epoch))


def _plan(out: Path, recipe: Recipe, minutes: float, n_train: int, n_val: int) -> tuple[int, int]:
    """(epochs, training images per epoch) that fit the budget, from a measured training speed; kept in plan.json so
    that a re-run reuses it.

    The plan belongs to the budget and the data, not to the precision: `amp: auto` is a property of the machine
    (under load or after an upgrade it may resolve differently), and a changed precision must never discard a
    finished training. Only another budget is another schedule, whose training `_train` replaces."""
    from clpose.precision import resolve_precision
    from clpose.speed.training import measure_speed

    precision = resolve_precision(recipe.train.amp, "cpu")  # recorded; training prints it
    plan_path = out / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        if plan.get("minutes") == minutes and plan.get("train") == n_train:
            if plan.get("precision", precision.name) != precision.name:
                console.print(
                    f"train.amp auto runs as {precision.name} on this machine now (the plan was measured in "
                    f"{plan['precision']}): the plan and its training are kept"
                )
            return int(plan["epochs"]), int(plan["train_per_epoch"])
        if (out / "train").exists():  # a different budget is a different schedule: resuming would mix two
            console.print(f"the budget changed (was {_minutes(plan.get('minutes', 0))}): training again")
    console.print("measuring the training speed of this machine ...")
    speed = measure_speed(recipe, device="cpu")
    epochs, per_epoch = fit_budget(60 * minutes, speed, n_train, n_val, recipe.train.batch_size)
    write_json(
        plan_path,
        {
            "minutes": minutes,
            "train": n_train,
            "val": n_val,
            "precision": precision.name,
            "samples_per_s": speed,
            "epochs": epochs,
            "train_per_epoch": per_epoch,
        },
    )
    console.print(f"{speed:.0f} training samples/s: {epochs} epochs of {per_epoch} images fit {_minutes(minutes)}")
    return epochs, per_epoch


def run_demo(out: Path, minutes: float = 10.0, fresh: bool = False) -> DemoResult:
    """Run (or resume) the demo in `out` and return its summary."""
    if not 0 < minutes < math.inf:
        raise ClposeError(f"--minutes must be a positive number, got {minutes}")
    start = time.perf_counter()
    folder = OwnedFolder(out, "demo", DEMO_ENTRIES, legacy=_older_demo)
    folder.claim()  # the demo reuses and replaces only what it wrote: never a folder of the user's
    if fresh and (removed := folder.clear()):
        console.print(f"--fresh: removed what the demo wrote in {out}: {', '.join(removed)}")
    # each entry is listed just before the step that writes it: a run stopped early lists only what it may have
    # written, so a folder the user makes later under a name the demo had not reached is never the demo's to remove
    n_train, n_val = data_sizes(minutes)
    data_dir = out / "data"
    _step(1, f"data: {n_train} + {n_val} synthetic images and a clip (clpose prepare synthetic)")
    folder.record(["data"])
    _prepare(data_dir, n_train, n_val)
    _step(2, f"train {model_label(DEMO_RECIPE['model']['name'])} for about {_minutes(minutes)} (clpose train)")
    recipe = demo_recipe(data_dir, 1, minutes)
    folder.record(["plan.json"])
    epochs, per_epoch = _plan(out, recipe, minutes, n_train, n_val)
    folder.record(["train"])
    run_dir = _train(out, demo_recipe(data_dir, epochs, minutes, per_epoch))
    _step(3, "evaluate the best checkpoint (clpose eval)")
    folder.record(["eval.json"])
    table = _evaluate(out, run_dir)
    from clpose.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(run_dir / "best.pt", device="cpu")  # for the pictures and the video
    _step(4, "pictures of targets and predictions (clpose vis)")
    folder.record(["vis"])
    outputs = _pictures(out, predictor, recipe)
    _step(5, "an annotated video (clpose infer)")
    folder.record(["video"])
    outputs.update(_video(out, predictor, data_dir))
    _step(6, "size and speed (clpose bench)")
    model = _bench(recipe)
    outputs.update(
        {
            "run folder": str(run_dir),
            "checkpoint": str(run_dir / "best.pt"),
            "training curve": str(run_dir / "curves.png"),
            "evaluation": str(out / "eval.json"),
        }
    )
    result = DemoResult(out, table["Mean"], table, outputs, model, epochs, time.perf_counter() - start)
    folder.record(["summary.json"])
    write_json(
        out / "summary.json",
        {
            "pck": result.pck,
            "table": table,
            "outputs": outputs,
            "model": model,
            "epochs": epochs,
            "minutes": minutes,
            "seconds": result.seconds,
        },
    )
    return result


def _older_demo(folder: Path) -> bool:
    """A folder the demo of an older clpose (before its manifest) wrote: its plan.json is the demo's."""
    try:
        plan = json.loads((folder / "plan.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(plan, dict) and {"minutes", "train_per_epoch", "samples_per_s"} <= plan.keys()


def _data_is_there(data_dir: Path, n_train: int, n_val: int) -> bool:
    """Whether an earlier run left the same synthetic data: the split sizes and the image size."""
    summary, valid = data_dir / "summary.json", data_dir / "valid.json"
    if not (summary.is_file() and valid.is_file()):
        return False
    counts = json.loads(summary.read_text())["splits"]
    sources = json.loads(valid.read_text()).get("sources", [])
    return (
        counts.get("train", {}).get("people") == n_train
        and counts.get("valid", {}).get("people") == n_val
        and any(src.endswith(f"size {IMAGE_SIZE}") for src in sources)
    )


def _prepare(data_dir: Path, n_train: int, n_val: int) -> None:
    from clpose.data.prepare import run_prepare
    from clpose.data.prepare.synthetic import write_video

    if _data_is_there(data_dir, n_train, n_val):
        console.print(f"reusing {data_dir}")
    else:
        run_prepare("synthetic", data_dir, data_dir, synthetic={"train": n_train, "val": n_val, "size": IMAGE_SIZE})
    clip = data_dir / "clip.mp4"
    if not clip.with_suffix(".boxes.json").is_file():
        write_video(clip, frames=CLIP_FRAMES, seed=0)
        console.print(f"rendered {clip} ({CLIP_FRAMES} frames, 640x360, two figures; boxes in clip.boxes.json)")


PLAN_KEYS = (("train", "epochs"), ("train", "max_minutes"), ("data", "train_limit"))  # what the budget decides


def _train(out: Path, recipe: Recipe) -> Path:
    """Train in out/train, or reuse (continue) what an earlier run left there. A training of another plan (another
    budget) is replaced by `clpose train --overwrite`: after this run's setup has succeeded and under the run folder's
    lock (clpose/training/run_folder.py), never deleted up front. The precision is no part of the plan."""
    from clpose.config import recipe_to_dict
    from clpose.engine.checkpoint import load_checkpoint
    from clpose.training.loop import fit

    run_dir = out / "train"
    if (run_dir / "last.pt").is_file():
        state = load_checkpoint(run_dir / "last.pt")
        saved, planned = state.get("recipe") or {}, recipe_to_dict(recipe)
        if any((saved.get(a) or {}).get(b) != planned[a][b] for a, b in PLAN_KEYS):
            return fit(recipe, out=run_dir, device="cpu", overwrite=True).run_dir
        done = int(state["epoch"])
        if done >= recipe.train.epochs:
            console.print(f"reusing {run_dir} ({done} epoch{'' if done == 1 else 's'} trained)")
            return run_dir
        console.print(f"resuming {run_dir} after epoch {done}")
        return fit(recipe, out=run_dir, resume="auto", device="cpu").run_dir
    return fit(recipe, out=run_dir, device="cpu").run_dir  # a run that never finished an epoch starts again


def _evaluate(out: Path, run_dir: Path) -> dict[str, float]:
    from clpose.engine.evaluate import EvalOptions, evaluate_checkpoint
    from clpose.evaluation.tables import print_tables

    run = evaluate_checkpoint(run_dir / "best.pt", EvalOptions(device="cpu"))
    print_tables(run.tables)
    write_json(out / "eval.json", {**run.tables[-1], "settings": run.settings})
    return run.tables[-1]


def _pictures(out: Path, predictor: Predictor, recipe: Recipe) -> dict[str, str]:
    from clpose.data import build_dataset
    from clpose.vis import available, pick, render_predictions, render_targets, write_png

    vis = out / "vis"
    codec = predictor.pose.codec
    train = build_dataset(recipe, "train", train=True, codec=codec)
    for i in pick(available(train.records), 2, 0):
        write_png(vis / f"targets_{i:06d}.png", render_targets(train, i))
    val = build_dataset(recipe, "valid", train=False, codec=codec)
    write_png(vis / "predictions.png", render_predictions(predictor, val.records, pick(list(range(len(val))), 8, 1)))
    console.print(f"wrote {vis}/targets_*.png and {vis}/predictions.png")
    return {"target pictures": str(vis / "targets_*.png"), "prediction pictures": str(vis / "predictions.png")}


def _video(out: Path, predictor: Predictor, data_dir: Path) -> dict[str, str]:
    from clpose.inference.run import InferOptions, run_infer

    clip = data_dir / "clip.mp4"
    video, poses = out / "video" / "annotated.mp4", out / "video" / "poses.json"
    options = InferOptions(boxes=str(clip.with_suffix(".boxes.json")), out=video, json_out=poses, smooth="oneeuro")
    report = run_infer(str(clip), predictor, options)
    console.print(f"{report.frames} frames at {report.fps:.1f} frames/s ({report.shares()})")
    return {"annotated video": str(video), "video keypoints": str(poses)}


def _bench(recipe: Recipe) -> dict[str, float]:
    from clpose.speed.bench import BenchSettings, run_bench

    h, w = recipe.data.input_size
    settings = BenchSettings(input_hw=(h, w), num_keypoints=16, batches=[1], runs=20, warmup=3)
    (row,) = run_bench([recipe.model.name], settings).results
    console.print(
        f"{model_label(row.model)}: {row.params_m:.2f} M parameters, {row.gmacs:.2f} GMACs, {row.fps:.0f} FPS "
        f"(CPU, {row.precision}, batch 1, {h}x{w})"
    )
    return {
        "name": row.model,
        "params_m": row.params_m,
        "gmacs": row.gmacs,
        "fps": row.fps,
        "precision": row.precision,
        "input_size": f"{h}x{w}",
    }


def model_label(name: str) -> str:
    """clnet_resnet10 -> CLNet-ResNet-10 (for the demo's sentences)."""
    return name.replace("clnet_resnet", "CLNet-ResNet-")
