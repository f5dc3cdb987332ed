"""Everything a training run needs, built from its recipe: datasets, the network and its codec, the loss, the
optimiser and its learning-rate schedule, the data loader (CPU or device pipeline) and the precision. Shared by the
training loop (clpose.training.loop) and the training-speed probe (clpose.speed.training)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from clpose.codecs import get_codec
from clpose.config import Recipe, TrainConfig
from clpose.console import warn
from clpose.data import build_dataset, check_images, dataset_from_records, load_split
from clpose.data.dataset import TopDownDataset, WorkerLoader, worker_init
from clpose.data.device_pipeline import DeviceLoader, DevicePipeline, RawSamples, collate_raw, resolve_pipeline
from clpose.engine import distributed
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.losses import build_loss
from clpose.precision import Precision, resolve_precision
from clpose.skeletons import get_skeleton


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


def build_loader(
    dataset, batch: int, d: distributed.Dist, seed: int, workers: int, device: torch.device, pipeline: str
):
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


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    else:
        loader.sampler.generator.manual_seed(seed * 100003 + epoch)


@dataclass
class Step:
    """What one optimiser step uses: the network (DistributedDataParallel under torchrun), the loss, the optimiser,
    the fp16 GradScaler, the device, the precision, and the target keys the codec produces (moved to the device)."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: Precision
    target_keys: tuple[str, ...]


@dataclass
class Setup:
    """Everything a run needs, built from the recipe by `build_setup`."""

    train_ds: TopDownDataset
    val_ds: TopDownDataset
    module: nn.Module  # the network itself (step.model wraps it under torchrun)
    step: Step
    loader: DataLoader | DeviceLoader
    pipeline: str  # "cpu" (workers decode, crop, augment and encode) or "gpu" (the device does)
    scheduler: torch.optim.lr_scheduler.LambdaLR
    pose: PoseModel  # the network with its codec, crop settings and precision: what validation runs

    @property
    def device(self) -> torch.device:
        return self.step.device

    @property
    def precision(self) -> Precision:
        return self.step.precision


def build_setup(recipe: Recipe, d: distributed.Dist, device: torch.device) -> Setup:
    """Datasets, network, loss, optimiser, schedule and loader of `recipe` (no run folder is touched)."""
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    precision = resolve_precision(cfg.amp, device)
    train_records = load_split(recipe, recipe.data.train_split)
    # the trunk's pretrained weights are loaded once the run folder says this is a fresh start (training.loop): a
    # resumed run takes every weight from its checkpoint and needs neither the file nor the network
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
    loss_fn = build_loss(recipe.loss, codec)
    optimizer = build_optimizer(cfg, model)
    pipeline = resolve_pipeline(recipe.data.pipeline, device)
    if pipeline == "gpu" and device.type != "cuda" and d.main:
        warn(
            f"data.pipeline: gpu on {device}: decoding and cropping run in the main process, not in the "
            "workers (slower than data.pipeline: cpu here, docs/benchmarks.md); it is meant for CUDA"
        )
    loader = build_loader(train_ds, cfg.batch_size // d.world, d, cfg.seed, recipe.data.num_workers, device, pipeline)
    if len(loader) == 0:
        raise ClposeError(
            f"{len(train_ds)} training people make no batch of {cfg.batch_size // d.world}: lower train.batch_size"
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, len(loader)))
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
    keys = get_codec(recipe.codec.name).target_keys
    step = Step(model, loss_fn, optimizer, scaler, device, precision, keys)
    return Setup(train_ds, val_ds, module, step, loader, pipeline, scheduler, pose)
