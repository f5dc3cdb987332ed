"""Training, read top to bottom: `fit` builds everything from a recipe and loops `train_one_epoch`.

Single process or under torchrun (DistributedDataParallel, DistributedSampler; the recipe's batch size is the
global batch). Only rank 0 writes the run folder: recipe.yaml, metrics.jsonl, curves.png, last.pt, best.pt.
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
from clpose.engine.curves import plot_curves
from clpose.engine.evaluate import predict
from clpose.engine.metrics import ScoreOptions, dataset_metric
from clpose.engine.posemodel import PoseModel
from clpose.engine.progress import TrainProgress
from clpose.engine.timing import synchronize
from clpose.errors import ClposeError
from clpose.io import write_text
from clpose.losses import build_loss
from clpose.precision import Precision, resolve_precision
from clpose.skeletons import get_skeleton


@dataclass
class FitResult:
    run_dir: Path
    best_metric: float
    last_metric: float
    epochs_done: int
    metric: str


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


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")


def make_run_dir(
    recipe: Recipe, out: Path | None, resume: str | None, runs: Path = Path("runs"), overwrite: bool = False
) -> Path:
    """--out, or runs/NAME numbered -2, -3, ... when it exists; with --resume auto, the newest such run.

    An --out that already holds a run is refused without --resume or --overwrite: training into it would empty its
    metrics.jsonl and replace its best.pt with a worse, earlier model."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ClposeError(f"--out {out} is a file, not a run folder")
        held = [name for name in RUN_FILES if (out / name).is_file()]
        if held and not resume and not overwrite:
            raise ClposeError(
                f"--out {out} already holds a run ({', '.join(held)}): continue it with --resume auto, choose "
                "another folder, or replace it with --overwrite"
            )
        if held and overwrite and not resume:
            for name in held:  # a stale best.pt must not outlive the run that replaces it
                (out / name).unlink()
        return out
    base = runs / (recipe.name or "run")
    if resume == "auto":
        candidates = [p for p in [base, *runs.glob(f"{base.name}-*")] if (p / "last.pt").is_file()]
        if not candidates:
            raise ClposeError(f"--resume auto: no {base}/last.pt (or {base}-N/last.pt) to continue from")
        return max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
    if not base.exists():
        return base
    n = 2
    while (runs / f"{base.name}-{n}").exists():
        n += 1
    return runs / f"{base.name}-{n}"


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


def _state(model, optimizer, scheduler, scaler, recipe, epoch, best, metric, skeleton: str, precision) -> dict:
    module = model.module if hasattr(model, "module") else model
    state = {
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
    """Train `recipe`; under torchrun every rank calls this and rank 0 writes the run folder. An `out` that holds a
    run needs `resume` (continue it) or `overwrite` (replace it)."""
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


def _setup(recipe: Recipe, d, device: torch.device) -> Setup:
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg.amp, device)
    train_records = load_split(recipe, recipe.data.train_split)
    pose = PoseModel.from_recipe(recipe, get_skeleton(train_records.skeleton), device=device, amp=precision)
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
    return Setup(train_ds, val_ds, model, module, loss_fn, optimizer, loader, scheduler, scaler, precision, pose)


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
    recipe: Recipe, out: Path | None, resume: str | None, d, device: torch.device, show: bool, overwrite: bool = False
) -> FitResult:
    cfg = recipe.train
    s = _setup(recipe, d, device)
    train_ds, val_ds, model, module = s.train_ds, s.val_ds, s.model, s.module
    loss_fn, optimizer, loader, scheduler, scaler = s.loss_fn, s.optimizer, s.loader, s.scheduler, s.scaler
    precision = s.precision
    chosen = str(make_run_dir(recipe, out, resume, overwrite=overwrite)) if d.main else ""
    run_dir = Path(distributed.gather(chosen, d)[0])
    start, best, rows = 0, -math.inf, []
    if resume:
        path = run_dir / "last.pt" if resume == "auto" else Path(resume)
        state = load_checkpoint(path, map_location=device)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state["scaler"]:  # empty when the run so far was not fp16
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start, best = int(state["epoch"]), float(state["best_metric"])
        rows = _read_rows(run_dir / "metrics.jsonl", start)
        changes = _schedule_changes(state.get("recipe", {}), recipe)
        if changes and d.main:
            warn(
                f"resuming {path} with a changed schedule ({'; '.join(changes)}): from epoch {start + 1} on the "
                "learning rate follows the new recipe, so the result differs from a straight run of it"
            )
    scorer = dataset_metric(recipe.data.dataset, recipe.eval.metric)
    metric = scorer.name
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        note = f"# train.amp {cfg.amp} ran as {precision.name} on this machine: {precision.reason}\n"
        write_text(run_dir / "recipe.yaml", note + dump_recipe(recipe))
        write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else None
    last = math.nan
    with TrainProgress(len(loader) * cfg.epochs, len(loader) * start, enabled=show and d.main) as progress:
        progress.log(
            f"training {recipe.model.name} on {len(train_ds)} people ({d.world} process(es), {device}), "
            f"validating {metric} on {len(val_ds)}; run folder {run_dir}"
        )
        progress.log(f"precision: {precision.describe()}")
        on_device = isinstance(loader, DeviceLoader)
        progress.log(
            f"data pipeline: {'gpu' if on_device else 'cpu'} (data.pipeline: {recipe.data.pipeline}; "
            + (
                f"workers read files, {device} decodes, crops, augments and encodes)"
                if on_device
                else "workers decode, crop, augment and encode)"
            )
        )
        epoch = start
        for epoch in range(start, cfg.epochs):
            progress.start_epoch(epoch, cfg.epochs)
            _set_epoch(loader, cfg.seed, epoch)
            try:
                stats = train_one_epoch(
                    model, loader, loss_fn, optimizer, scheduler, scaler, device, cfg, precision, progress, deadline
                )
            except ClposeError as e:
                raise ClposeError(f"epoch {epoch + 1}: {e}") from None
            out_of_time = deadline is not None and time.time() > deadline
            table = None
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs or out_of_time:
                preds = predict(
                    s.pose,
                    val_ds,
                    recipe.eval.batch_size,
                    recipe.eval.flip,
                    num_workers=min(2, recipe.data.num_workers),
                    d=d,
                )
                options = ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval)
                table = scorer.score_predictions(val_ds, preds, options)[0]
                last = scorer.value(table)
            row = {
                "epoch": epoch + 1,
                **stats,
                "lr": optimizer.param_groups[0]["lr"],
                "precision": precision.name,
                "precision_reason": precision.reason,
                "metric": metric,
                "value": None if table is None else last,
                "table": table,
            }
            rows.append(row)
            improved = table is not None and last > best
            best = max(best, last) if table is not None else best
            if d.main:
                state = _state(
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    recipe,
                    epoch + 1,
                    best,
                    metric,
                    train_ds.skeleton.name,
                    precision,
                )
                _write_epoch(run_dir, rows, state, improved, recipe.name)
            progress.log(_summary(row, best))
            if out_of_time:
                progress.log(f"stopped after {cfg.max_minutes:g} minutes (train.max_minutes)")
                break
    distributed.barrier(d)
    return FitResult(run_dir, best, last, epoch + 1, metric)


def _write_epoch(run_dir: Path, rows: list[dict], state: dict, improved: bool, name: str) -> None:
    """best.pt before last.pt: last.pt records the best metric, so a kill between the two writes must leave the older
    last.pt, whose resume redoes the epoch and writes best.pt again (each write is atomic)."""
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(rows[-1]) + "\n")
    if improved:
        save_checkpoint(run_dir / "best.pt", state)
    save_checkpoint(run_dir / "last.pt", state)
    plot_curves(rows, run_dir / "curves.png", name)


def _read_rows(path: Path, upto: int) -> list[dict]:
    """The rows of metrics.jsonl up to epoch `upto`; a line torn by a kill while it was appended is dropped (the
    epoch it belonged to is trained again)."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warn(f"{path}: line {number} is torn (a kill while it was written): dropped")
    return [r for r in rows if isinstance(r, dict) and r.get("epoch", math.inf) <= upto]


SCHEDULE_KEYS = ("epochs", "lr", "schedule", "milestones", "gamma", "warmup_epochs", "batch_size", "optimizer")


def _schedule_changes(saved: dict, recipe: Recipe) -> list[str]:
    """`train.KEY old -> new` for every schedule key the resumed recipe changes."""
    old = saved.get("train", {}) if isinstance(saved, dict) else {}
    new = recipe_to_dict(recipe)["train"]
    return [f"train.{k} {old[k]} -> {new[k]}" for k in SCHEDULE_KEYS if k in old and old[k] != new[k]]


def _summary(row: dict, best: float) -> str:
    text = (
        f"epoch {row['epoch']}: loss {row.get('loss', math.nan):.4g}, {row['samples_per_s']:.1f} samples/s, "
        f"data wait {row['data_wait']:.0%}"
    )
    if row["value"] is not None:
        text += f", {row['metric']} {row['value']:.2f} (best {best:.2f})"
    return text
