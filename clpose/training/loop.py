"""Training, read top to bottom: `fit` builds everything from a recipe and loops `train_one_epoch`.

Single process or under torchrun (DistributedDataParallel, DistributedSampler; the recipe's batch size is the
global batch). Only rank 0 writes the run folder (run.json, recipe.yaml, metrics.jsonl, curves.png, last.pt,
best.pt); which folder, who may write it and what may continue it is decided in clpose/training/run_folder.py.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clpose import __version__
from clpose.config import Recipe, TrainConfig, dump_recipe, recipe_to_dict
from clpose.console import warn
from clpose.data.dataset import TopDownDataset
from clpose.engine import distributed
from clpose.engine.checkpoint import load_checkpoint, save_checkpoint
from clpose.engine.predict import predict
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Metric, Predictions, ScoreOptions, dataset_metric
from clpose.losses import get_loss
from clpose.models import load_trunk_weights
from clpose.training.curves import plot_curves
from clpose.training.fits import check_fits
from clpose.training.health import health_warnings
from clpose.training.lock import RunLock
from clpose.training.progress import TrainProgress, epoch_summary
from clpose.training.rows import EpochRow
from clpose.training.run_folder import RunPlan, commit, open_run
from clpose.training.setup import Setup, Step, build_setup, set_epoch


@dataclass
class FitResult:
    run_dir: Path
    best_metric: float  # raw, as in metrics.jsonl; x scale for printing
    last_metric: float
    epochs_done: int  # epochs the run has trained in all
    metric: str
    scale: float = 1.0  # the metric's printed scale (Metric.scale: COCO's AP x 100)
    trained: int = 0  # epochs trained by this call
    message: str = ""  # what to tell the user instead of "done" (nothing was trained)


def train_step(step: Step, batch: dict, cfg: TrainConfig) -> dict:
    """One optimiser step on a batch in the step's precision (fp16 through the GradScaler); returns the loss parts. The
    targets moved to the device are those the codec declares (CodecEntry.target_keys). A non-finite loss or an
    out-of-memory batch is a ClposeError (the optimiser has not stepped)."""
    device = step.device
    images = batch["image"].to(device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    given = batch.get("targets", {})  # the codec's targets travel in their own namespace of the sample
    missing = [k for k in step.target_keys if k not in given]
    if missing:
        raise ClposeError(
            f"the batch lacks the codec's targets {', '.join(missing)} (it has {', '.join(given) or 'none'})"
        )
    targets = {k: given[k].to(device, non_blocking=True) for k in step.target_keys}
    try:
        with step.precision.autocast(device):
            output = step.model(images)
        parts = step.loss_fn(output, targets)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise ClposeError(
                f"the loss became {loss.item()}; training stopped "
                "and last.pt keeps the last good epoch (lower train.lr or set train.grad_clip)"
            )
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        if cfg.grad_clip:
            step.scaler.unscale_(step.optimizer)
            nn.utils.clip_grad_norm_(step.model.parameters(), cfg.grad_clip)
        step.scaler.step(step.optimizer)
        step.scaler.update()
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is newer than torch 2.3
        raise ClposeError(
            f"out of memory with {len(images)} images per step on {device}; try a smaller "
            f"--set train.batch_size={max(1, cfg.batch_size // 2)}"
        ) from None
    return parts


def train_one_epoch(
    step: Step,
    loader,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: TrainConfig,
    progress: TrainProgress,
    deadline: float | None,
) -> dict[str, float]:
    """One pass over the loader; returns the mean losses, samples/s and the share of time spent waiting for
    data. Stops early at `deadline` (time.time())."""
    step.model.train()
    sums: dict[str, float] = {}
    seen, wait, start, steps = 0, 0.0, time.perf_counter(), 0
    fetched = time.perf_counter()
    for batch in loader:
        wait += time.perf_counter() - fetched
        parts = train_step(step, batch, cfg)
        scheduler.step()
        n = len(batch["image"])
        seen, steps = seen + n, steps + 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v) * n
        lr = step.optimizer.param_groups[0]["lr"]
        progress.step(n, float(parts["loss"].detach()), lr, wait / (time.perf_counter() - start))
        if deadline is not None and time.time() > deadline:
            break
        fetched = time.perf_counter()
    elapsed = time.perf_counter() - start
    means = {k: v / max(seen, 1) for k, v in sums.items()}
    return {**means, "samples_per_s": seen / elapsed, "data_wait": wait / elapsed, "steps": steps, "seconds": elapsed}


def _state(s: Setup, recipe: Recipe, plan: RunPlan, epoch: int, best: float, metric: str) -> dict:
    """The checkpoint of epoch `epoch`: weights, optimiser, schedule, scaler, RNG, recipe and the run's identity."""
    state = {
        "pretrained": getattr(s.module, "pretrained_weights", None),  # the trunk's starting weights: name, file, hash
        "run_id": plan.run_id,  # which run wrote it: only that run's folder may be continued from it
        "branched_from": plan.branched_from,
        "model": s.module.state_dict(),
        "optimizer": s.step.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": s.step.scaler.state_dict(),
        "epoch": epoch,
        "recipe": recipe_to_dict(recipe),
        "version": __version__,
        "best_metric": float(best),
        "metric": metric,
        "model_name": s.module.name,
        "num_keypoints": s.module.num_keypoints,
        "skeleton": s.train_ds.skeleton.name,
        "torch_rng": torch.get_rng_state(),
        "precision": s.precision.to_json(),  # what this machine trained in; evaluation resolves its own
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def fit(
    recipe: Recipe,
    out: Path | None = None,
    resume: str | None = None,
    device: str = "auto",
    show_progress: bool = True,
    overwrite: bool = False,
) -> FitResult:
    """Train `recipe`; under torchrun every rank calls this and rank 0 locks and writes the run folder. An `out` that
    holds a run needs `resume` (continue it) or `overwrite` (replace it); clpose/training/run_folder.py has the rule.
    A run that has already trained `train.epochs` writes nothing: the result's `message` says so."""
    d, dev = distributed.setup(device)
    try:
        return _fit(recipe, out, resume, d, dev, show_progress, overwrite)
    finally:
        distributed.teardown(d)


def _fit(
    recipe: Recipe,
    out: Path | None,
    resume: str | None,
    d: distributed.Dist,
    device: torch.device,
    show: bool,
    overwrite: bool = False,
) -> FitResult:
    s = build_setup(recipe, d, device)  # data, model and loader first: a failure here leaves the run folder untouched
    plan, lock, state = _open_run(recipe, out, resume, overwrite, d, device)
    try:
        return _run(recipe, s, plan, state, d, show)
    finally:
        if lock is not None:  # the OS would release it at exit too; a Python caller may train again
            lock.release()


def _open_run(
    recipe: Recipe, out: Path | None, resume: str | None, overwrite: bool, d: distributed.Dist, device: torch.device
) -> tuple[RunPlan, RunLock | None, dict | None]:
    """Rank 0 chooses, locks and plans the run folder (clpose/training/run_folder.py); every rank gets the plan, or rank
    0's reason to stop (raised on every rank, so none waits for the others at a collective)."""
    plan = lock = state = failure = None
    if d.main:
        try:
            plan, lock, state = open_run(recipe, out, resume, overwrite, device)
        except Exception as e:
            failure = e
    plan, reason = distributed.gather((plan, "" if failure is None else str(failure)), d)[0]
    if failure is not None:
        raise failure
    if reason:
        raise ClposeError(reason)
    if plan.checkpoint is not None and state is None:  # the other ranks read the checkpoint rank 0 chose
        state = load_checkpoint(plan.checkpoint, map_location=device)
    return plan, lock, state


def _restore(s: Setup, state: dict) -> None:
    s.module.load_state_dict(state["model"])
    s.step.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if s.step.scaler.is_enabled() and state["scaler"]:  # empty when the run so far was not fp16
        s.step.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the training device


def check_scorable(scorer: Metric, dataset: TopDownDataset, recipe: Recipe) -> None:
    """A validation split its metric can score nobody of (every torso unlabelled, every COCO person a crowd) is a
    ClposeError now: its ground truth scored as its own predictions, the metric's own checks decide."""
    records = dataset.records
    truth = records.keypoints[None, :, :, :2].astype(np.float64)
    predictions = Predictions(np.arange(len(records)), truth, np.ones(truth.shape[:3]))
    try:
        scorer.score_predictions(dataset, predictions, ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval))
    except ClposeError as e:
        raise ClposeError(f"the {recipe.data.val_split} split cannot be scored with {scorer.name}: {e}") from None


def _run(recipe: Recipe, s: Setup, plan: RunPlan, state: dict | None, d: distributed.Dist, show: bool) -> FitResult:
    cfg, precision, run_dir = recipe.train, s.precision, plan.run_dir
    scorer = dataset_metric(recipe.data.dataset, recipe.eval.metric)
    start, best, rows = 0, math.nan, [EpochRow.from_json(r) for r in plan.rows]  # NaN: no best validation yet
    if state is not None:
        # before anything is written: another model or optimizer would fail below with a traceback
        check_fits(plan.checkpoint, state, recipe, s.module, s.step.optimizer, s.train_ds.skeleton.name)
        _restore(s, state)
        start = int(state["epoch"])
        best = float(state["best_metric"]) if plan.best is None else plan.best
    if start >= cfg.epochs:  # nothing to train: nothing in the folder is rewritten
        where = plan.checkpoint if plan.branched_from else run_dir
        last = next((r.value for r in reversed(rows) if r.value is not None), math.nan)
        message = (
            f"{where} has already trained {_epochs(start)} (train.epochs {cfg.epochs}): nothing to train; raise "
            "train.epochs to continue"
        )
        return FitResult(run_dir, best, last, start, scorer.name, scorer.scale, 0, message)
    check_scorable(scorer, s.val_ds, recipe)  # before anything is written, not after a whole epoch
    pretrained = getattr(recipe.model, "pretrained", None)  # a model without an ImageNet trunk has no such option
    if state is None and pretrained:  # a fresh start: the trunk's ImageNet weights (fetched by name)
        s.module.pretrained_weights = load_trunk_weights(s.module, pretrained).to_json()
    elif state is not None:
        s.module.pretrained_weights = state.get("pretrained")  # what the run started from, kept in every checkpoint
    if d.main:
        changes = _schedule_changes(state.get("recipe", {}), recipe) if state is not None else []
        if changes:
            warn(
                f"resuming {plan.checkpoint} with a changed schedule ({'; '.join(changes)}): from epoch {start + 1} "
                "on the learning rate follows the new recipe, so the result differs from a straight run of it"
            )
        note = f"# train.amp {cfg.amp} ran as {precision.name} on this machine: {precision.reason}\n"
        if weights := getattr(s.module, "pretrained_weights", None):
            note += (
                f"# model.pretrained {pretrained} loaded {weights['name']}: {weights['file']} "
                f"(sha256 {weights['sha256']}, from {weights['source']})\n"
            )
        commit(plan, note + dump_recipe(recipe))
    with TrainProgress(len(s.loader) * cfg.epochs, len(s.loader) * start, enabled=show and d.main) as progress:
        for line in plan.notes:
            progress.log(line)
        _log_setup(progress, recipe, s, d, scorer.name, run_dir)
        done, best, last = _epochs_loop(recipe, s, plan, scorer, rows, start, best, d, progress)
    distributed.barrier(d)
    return FitResult(run_dir, best, last, done, scorer.name, scorer.scale, done - start)


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _log_setup(
    progress: TrainProgress, recipe: Recipe, s: Setup, d: distributed.Dist, metric: str, run_dir: Path
) -> None:
    progress.log(
        f"training {recipe.model.name} on {len(s.train_ds)} people ({d.world} process(es), {s.device}), "
        f"validating {metric} on {len(s.val_ds)}; run folder {run_dir}"
    )
    progress.log(f"precision: {s.precision.describe()}")
    on_device = s.pipeline == "gpu"
    progress.log(
        f"data pipeline: {'gpu' if on_device else 'cpu'} (data.pipeline: {recipe.data.pipeline}; "
        + (
            f"workers read files, {s.device} decodes, crops, augments and encodes)"
            if on_device
            else "workers decode, crop, augment and encode)"
        )
    )


def _epochs_loop(
    recipe: Recipe,
    s: Setup,
    plan: RunPlan,
    scorer: Metric,
    rows: list[EpochRow],
    start: int,
    best: float,
    d: distributed.Dist,
    progress: TrainProgress,
) -> tuple[int, float, float]:
    """Epochs start+1 .. train.epochs; returns (epochs done in all, best, last validation value)."""
    cfg = recipe.train
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else None
    last, done = math.nan, start
    for epoch in range(start, cfg.epochs):
        progress.start_epoch(epoch, cfg.epochs)
        set_epoch(s.loader, cfg.seed, epoch)
        try:
            stats = train_one_epoch(s.step, s.loader, s.scheduler, cfg, progress, deadline)
        except ClposeError as e:
            raise ClposeError(f"epoch {epoch + 1}: {e}") from None
        out_of_time = deadline is not None and time.time() > deadline
        table = None
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs or out_of_time:
            workers = min(2, recipe.data.num_workers)
            preds = predict(s.pose, s.val_ds, recipe.eval.batch_size, recipe.eval.flip, num_workers=workers, d=d)
            table = scorer.score_predictions(s.val_ds, preds, ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval))[0]
            last = scorer.value(table)
        speed = {k: stats.pop(k) for k in ("samples_per_s", "data_wait", "steps", "seconds")}
        loss = stats.pop("loss")
        EpochRow.check_parts(stats)  # what is left: the loss's own parts
        row = EpochRow(
            epoch + 1,
            loss,
            stats,
            **speed,
            lr=s.step.optimizer.param_groups[0]["lr"],
            precision=s.precision.name,
            precision_reason=s.precision.reason,
            metric=scorer.name,
            # raw, as `clpose eval --json` writes it; None where undefined (never NaN)
            value=None if table is None or math.isnan(last) else last,
            scale=scorer.scale,  # printed value = value x scale (COCO's AP x 100), as `clpose eval` prints it
            table=table,
        )
        row.warnings = health_warnings(
            [*rows, row], recipe.loss, s.pose.codec.tau, scorer.scale, scorer.higher_is_better
        )
        rows.append(row)
        improved = table is not None and scorer.improves(last, best)
        best = last if improved else best
        if d.main:
            state = _state(s, recipe, plan, epoch + 1, best, scorer.name)
            colors = {p: part.color for p, part in get_loss(recipe.loss.name).parts.items()}
            _write_epoch(plan.run_dir, rows, state, improved, recipe.name, colors)
        progress.log(epoch_summary(row, best, scorer.scale))
        for warning in row.warnings if d.main else []:  # said every epoch it holds: a run not learning is news
            warn(f"epoch {epoch + 1}: {warning}")
        done = epoch + 1
        if out_of_time:
            progress.log(f"stopped after {cfg.max_minutes:g} minutes (train.max_minutes)")
            break
    return done, best, last


def _write_epoch(
    run_dir: Path, rows: list[EpochRow], state: dict, improved: bool, name: str, parts: dict | None = None
) -> None:
    """best.pt before last.pt: last.pt records the best metric, so a kill between the two writes must leave the older
    last.pt, whose resume redoes the epoch and writes best.pt again (each write is atomic)."""
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(rows[-1].to_json()) + "\n")
    if improved:
        save_checkpoint(run_dir / "best.pt", state)
    save_checkpoint(run_dir / "last.pt", state)
    plot_curves(rows, run_dir / "curves.png", name, parts)


SCHEDULE_KEYS = ("epochs", "lr", "schedule", "milestones", "gamma", "warmup_epochs", "batch_size", "optimizer")


def _schedule_changes(saved: dict, recipe: Recipe) -> list[str]:
    """`train.KEY old -> new` for every schedule key the resumed recipe changes."""
    old = saved.get("train", {}) if isinstance(saved, dict) else {}
    new = recipe_to_dict(recipe)["train"]
    return [f"train.{k} {old[k]} -> {new[k]}" for k in SCHEDULE_KEYS if k in old and old[k] != new[k]]
