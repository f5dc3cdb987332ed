"""Training, read top to bottom: `fit` builds everything from a recipe and loops `train_one_epoch`.

Single process or under torchrun (DistributedDataParallel, DistributedSampler; the recipe's batch size is the
global batch). Only rank 0 writes the run folder (run.json, recipe.yaml, metrics.jsonl, curves.png, last.pt,
best.pt); which folder, who may write it and what may continue it is decided in clpose/training/run_folder.py.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from clpose import __version__
from clpose.config import Recipe, TrainConfig, dump_recipe, recipe_to_dict
from clpose.console import warn
from clpose.data import build_dataset, check_images, dataset_from_records, load_split
from clpose.data.dataset import WorkerLoader, worker_init
from clpose.data.device_pipeline import DeviceLoader, DevicePipeline, RawSamples, collate_raw, resolve_pipeline
from clpose.engine import distributed
from clpose.engine.checkpoint import load_checkpoint, save_checkpoint
from clpose.engine.posemodel import PoseModel
from clpose.engine.predict import predict
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Metric, ScoreOptions, dataset_metric
from clpose.losses import build_loss
from clpose.models import load_trunk_weights
from clpose.precision import Precision, resolve_precision
from clpose.skeletons import get_skeleton
from clpose.speed.timing import synchronize
from clpose.training.curves import plot_curves
from clpose.training.progress import TrainProgress, epoch_summary, health_warnings
from clpose.training.run_folder import RunLock, RunPlan, check_fits, commit, open_run


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


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step `step`: linear warm-up, then multistep or cosine decay.
    Computed per step from the epoch as a fraction, so it resumes exactly from the step count."""
    warmup = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        epoch = step / steps_per_epoch
        if cfg.schedule == "multistep":
            decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        else:
            decay = 0.5 * (1 + math.cos(math.pi * min(1.0, epoch / cfg.epochs)))
        return decay * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)

    return factor


def _loader(dataset, batch: int, d: distributed.Dist, seed: int, workers: int, device: torch.device, pipeline: str):
    """The training batches: from the CPU pipeline, or (pipeline "gpu") raw samples finished on `device`."""
    raw = RawSamples(dataset) if pipeline == "gpu" else dataset
    if d.enabled:
        sampler = DistributedSampler(raw, d.world, d.rank, shuffle=True, seed=seed, drop_last=True)
    else:  # reseeded every epoch (set_epoch below), so the order depends only on (seed, epoch)
        sampler = RandomSampler(raw, generator=torch.Generator())
    loader = WorkerLoader(
        raw,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        collate_fn=collate_raw if pipeline == "gpu" else None,
    )
    return DeviceLoader(loader, DevicePipeline(dataset.codec, device)) if pipeline == "gpu" else loader


def _set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    else:
        loader.sampler.generator.manual_seed(seed * 100003 + epoch)


def train_step(
    model, batch, loss_fn, optimizer, scaler, device: torch.device, cfg: TrainConfig, precision: Precision
) -> dict:
    """One optimiser step on a batch in `precision` (fp16 through the GradScaler); returns the loss parts. A
    non-finite loss or an out-of-memory batch is a ClposeError (the optimiser has not stepped)."""
    images = batch["image"].to(device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    keys = ("heatmaps", "offsets", "keypoint_weights")
    targets = {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}
    try:
        with precision.autocast(device):
            output = model(images)
        parts = loss_fn(output, targets)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise ClposeError(
                f"the loss became {loss.item()}; training stopped "
                "and last.pt keeps the last good epoch (lower train.lr or set train.grad_clip)"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is newer than torch 2.3
        raise ClposeError(
            f"out of memory with {len(images)} images per step on {device}; try a smaller "
            f"--set train.batch_size={max(1, cfg.batch_size // 2)}"
        ) from None
    return parts


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    scheduler,
    scaler,
    device,
    cfg: TrainConfig,
    precision: Precision,
    progress,
    deadline: float | None,
) -> dict[str, float]:
    """One pass over the loader; returns the mean losses, samples/s and the share of time spent waiting for
    data. Stops early at `deadline` (time.time())."""
    model.train()
    sums: dict[str, float] = {}
    seen, wait, start, steps = 0, 0.0, time.perf_counter(), 0
    fetched = time.perf_counter()
    for batch in loader:
        wait += time.perf_counter() - fetched
        parts = train_step(model, batch, loss_fn, optimizer, scaler, device, cfg, precision)
        scheduler.step()
        n = len(batch["image"])
        seen, steps = seen + n, steps + 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v) * n
        progress.step(
            n, float(parts["loss"].detach()), optimizer.param_groups[0]["lr"], wait / (time.perf_counter() - start)
        )
        if deadline is not None and time.time() > deadline:
            break
        fetched = time.perf_counter()
    elapsed = time.perf_counter() - start
    means = {k: v / max(seen, 1) for k, v in sums.items()}
    return {**means, "samples_per_s": seen / elapsed, "data_wait": wait / elapsed, "steps": steps, "seconds": elapsed}


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    recipe: Recipe,
    epoch: int,
    best: float,
    metric: str,
    skeleton: str,
    precision: Precision,
    plan: RunPlan,
) -> dict:
    module = model.module if hasattr(model, "module") else model
    state = {
        "pretrained": getattr(module, "pretrained_weights", None),  # the trunk's starting weights: name, file, hash
        "run_id": plan.run_id,  # which run wrote it: only that run's folder may be continued from it
        "branched_from": plan.branched_from,
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "recipe": recipe_to_dict(recipe),
        "version": __version__,
        "best_metric": float(best),
        "metric": metric,
        "model_name": module.name,
        "num_keypoints": module.num_keypoints,
        "skeleton": skeleton,
        "torch_rng": torch.get_rng_state(),
        "precision": precision.to_json(),  # what this machine trained in; evaluation resolves its own
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


@dataclass
class Setup:
    """Everything a run needs, built from the recipe (shared by training and the speed measurement)."""

    train_ds: object
    val_ds: object
    model: nn.Module  # DistributedDataParallel under torchrun
    module: nn.Module  # the network itself
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    precision: Precision
    pose: PoseModel  # the network with its codec, crop settings and precision: what validation runs
    device: torch.device


def _setup(recipe: Recipe, d, device: torch.device) -> Setup:
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg.amp, device)
    train_records = load_split(recipe, recipe.data.train_split)
    # the trunk's pretrained weights are loaded once the run folder says this is a fresh start (_run): a resumed run
    # takes every weight from its checkpoint and needs neither the file nor the network
    skeleton = get_skeleton(train_records.skeleton)
    pose = PoseModel.from_recipe(recipe, skeleton, device=device, amp=precision, pretrained=False)
    codec = pose.codec
    train_ds = dataset_from_records(recipe, train_records, train=True, codec=codec)
    val_ds = build_dataset(recipe, recipe.data.val_split, train=False, codec=codec)
    val_ds.on_bad_image = "black"  # a damaged validation image counts as missed; it does not end the run
    for ds, split in ((train_ds, recipe.data.train_split), (val_ds, recipe.data.val_split)):
        if len(ds) == 0:
            raise ClposeError(f"the {split} split of {recipe.data.root} has no people")
        check_images(ds.records)
    if cfg.batch_size % d.world:
        raise ClposeError(
            f"train.batch_size {cfg.batch_size} is the global batch: it must divide by the {d.world} processes"
        )
    model = module = pose.model
    if d.enabled:
        if cfg.sync_bn:
            model = module = pose.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = build_loss(recipe.loss, codec.tau)
    optimizer = build_optimizer(cfg, model)
    pipeline = resolve_pipeline(recipe.data.pipeline, device)
    if pipeline == "gpu" and device.type != "cuda" and d.main:
        warn(
            f"data.pipeline: gpu on {device}: decoding and cropping run in the main process, not in the "
            "workers (about 3x slower than data.pipeline: cpu here); it is meant for CUDA"
        )
    loader = _loader(train_ds, cfg.batch_size // d.world, d, cfg.seed, recipe.data.num_workers, device, pipeline)
    if len(loader) == 0:
        raise ClposeError(
            f"{len(train_ds)} training people make no batch of {cfg.batch_size // d.world}: lower train.batch_size"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, len(loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
    return Setup(
        train_ds, val_ds, model, module, loss_fn, optimizer, loader, scheduler, scaler, precision, pose, device
    )


@dataclass
class TrainingSpeed:
    samples_per_s: float  # median of the timed steps' rates (data loading included)
    data_wait: float  # share of the timed steps' wall time spent waiting for the next batch
    pipeline: str  # "cpu" or "gpu" (data.pipeline resolved)


def measure_training(recipe: Recipe, device: str = "auto", steps: int = 24, warmup: int = 8) -> TrainingSpeed:
    """Training speed of `recipe` on this machine from a few real steps on a throwaway copy of the setup: the
    median rate of the steps (on a shared machine a few seconds of load elsewhere would otherwise halve the
    estimate: seen 47 against 118 samples/s in the epochs that followed) and the share of time waiting for data.
    Each step is synchronised, so the GPU's work is counted where it happens."""
    dev = distributed.resolve_device(device)
    s = _setup(recipe, distributed.Dist(), dev)
    s.model.train()
    batches = iter(s.loader)
    rates, wait, total = [], 0.0, 0.0

    def next_batch() -> dict:
        nonlocal batches
        batch = next(batches, None)
        if batch is None:  # a small dataset: go round again
            batches = iter(s.loader)
            batch = next(batches)
        return batch

    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = next_batch()
        synchronize(dev)
        fetched = time.perf_counter()
        train_step(s.model, batch, s.loss_fn, s.optimizer, s.scaler, dev, recipe.train, s.precision)
        synchronize(dev)
        end = time.perf_counter()
        if i >= warmup:
            rates.append(len(batch["image"]) / (end - start))
            wait, total = wait + fetched - start, total + end - start
    return TrainingSpeed(statistics.median(rates), wait / total, "gpu" if isinstance(s.loader, DeviceLoader) else "cpu")


def measure_speed(recipe: Recipe, device: str = "auto", steps: int = 24, warmup: int = 8) -> float:
    """Training samples per second of `recipe` on this machine (measure_training's median): what `clpose demo`
    plans its epochs with. An estimate that is too high costs less than one too low, as the demo's time guard ends
    training at its budget with the schedule nearly done."""
    return measure_training(recipe, device, steps, warmup).samples_per_s


def _fit(
    recipe: Recipe,
    out: Path | None,
    resume: str | None,
    d: distributed.Dist,
    device: torch.device,
    show: bool,
    overwrite: bool = False,
) -> FitResult:
    s = _setup(recipe, d, device)  # data, model and loader first: a failure here leaves the run folder untouched
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
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if s.scaler.is_enabled() and state["scaler"]:  # empty when the run so far was not fp16
        s.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the training device


def _run(recipe: Recipe, s: Setup, plan: RunPlan, state: dict | None, d: distributed.Dist, show: bool) -> FitResult:
    cfg, precision, run_dir = recipe.train, s.precision, plan.run_dir
    scorer = dataset_metric(recipe.data.dataset, recipe.eval.metric)
    start, best, rows = 0, -math.inf, list(plan.rows)
    if state is not None:
        # before anything is written: another model or optimizer would fail below with a traceback
        check_fits(plan.checkpoint, state, recipe, s.module, s.optimizer, s.train_ds.skeleton.name)
        _restore(s, state)
        start = int(state["epoch"])
        best = float(state["best_metric"]) if plan.best is None else plan.best
    if start >= cfg.epochs:  # nothing to train: nothing in the folder is rewritten
        where = plan.checkpoint if plan.branched_from else run_dir
        last = next((r["value"] for r in reversed(rows) if r.get("value") is not None), math.nan)
        message = (
            f"{where} has already trained {_epochs(start)} (train.epochs {cfg.epochs}): nothing to train; raise "
            "train.epochs to continue"
        )
        return FitResult(run_dir, best, last, start, scorer.name, scorer.scale, 0, message)
    if state is None and recipe.model.pretrained:  # a fresh start: the trunk's ImageNet weights (fetched by name)
        s.module.pretrained_weights = load_trunk_weights(s.module, recipe.model.pretrained).to_json()
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
                f"# model.pretrained {recipe.model.pretrained} loaded {weights['name']}: {weights['file']} "
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
    on_device = isinstance(s.loader, DeviceLoader)
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
    rows: list[dict],
    start: int,
    best: float,
    d: distributed.Dist,
    progress: TrainProgress,
) -> tuple[int, float, float]:
    """Epochs start+1 .. train.epochs; returns (epochs done in all, best, last validation value)."""
    cfg, device = recipe.train, s.device
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else None
    last, done = math.nan, start
    for epoch in range(start, cfg.epochs):
        progress.start_epoch(epoch, cfg.epochs)
        _set_epoch(s.loader, cfg.seed, epoch)
        try:
            stats = train_one_epoch(
                s.model, s.loader, s.loss_fn, s.optimizer, s.scheduler, s.scaler, device, cfg, s.precision, progress,
                deadline,
            )  # fmt: skip
        except ClposeError as e:
            raise ClposeError(f"epoch {epoch + 1}: {e}") from None
        out_of_time = deadline is not None and time.time() > deadline
        table = None
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs or out_of_time:
            workers = min(2, recipe.data.num_workers)
            preds = predict(s.pose, s.val_ds, recipe.eval.batch_size, recipe.eval.flip, num_workers=workers, d=d)
            table = scorer.score_predictions(s.val_ds, preds, ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval))[0]
            last = scorer.value(table)
        row = {
            "epoch": epoch + 1,
            **stats,
            "lr": s.optimizer.param_groups[0]["lr"],
            "precision": s.precision.name,
            "precision_reason": s.precision.reason,
            "metric": scorer.name,
            "value": None if table is None else last,  # raw, as `clpose eval --json` writes it
            "scale": scorer.scale,  # printed value = value x scale (COCO's AP x 100), as `clpose eval` prints it
            "table": table,
        }
        row["warnings"] = health_warnings([*rows, row], recipe.loss, s.pose.codec.tau, scorer.scale)
        rows.append(row)
        improved = table is not None and last > best
        best = max(best, last) if table is not None else best
        if d.main:
            state = _state(
                s.model, s.optimizer, s.scheduler, s.scaler, recipe, epoch + 1, best, scorer.name,
                s.train_ds.skeleton.name, s.precision, plan,
            )  # fmt: skip
            _write_epoch(plan.run_dir, rows, state, improved, recipe.name)
        progress.log(epoch_summary(row, best, scorer.scale))
        for warning in row["warnings"] if d.main else []:  # said every epoch it holds: a run not learning is news
            warn(f"epoch {epoch + 1}: {warning}")
        done = epoch + 1
        if out_of_time:
            progress.log(f"stopped after {cfg.max_minutes:g} minutes (train.max_minutes)")
            break
    return done, best, last


def _write_epoch(run_dir: Path, rows: list[dict], state: dict, improved: bool, name: str) -> None:
    """best.pt before last.pt: last.pt records the best metric, so a kill between the two writes must leave the older
    last.pt, whose resume redoes the epoch and writes best.pt again (each write is atomic)."""
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(rows[-1]) + "\n")
    if improved:
        save_checkpoint(run_dir / "best.pt", state)
    save_checkpoint(run_dir / "last.pt", state)
    plot_curves(rows, run_dir / "curves.png", name)


SCHEDULE_KEYS = ("epochs", "lr", "schedule", "milestones", "gamma", "warmup_epochs", "batch_size", "optimizer")


def _schedule_changes(saved: dict, recipe: Recipe) -> list[str]:
    """`train.KEY old -> new` for every schedule key the resumed recipe changes."""
    old = saved.get("train", {}) if isinstance(saved, dict) else {}
    new = recipe_to_dict(recipe)["train"]
    return [f"train.{k} {old[k]} -> {new[k]}" for k in SCHEDULE_KEYS if k in old and old[k] != new[k]]
