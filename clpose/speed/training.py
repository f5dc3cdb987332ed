"""The training-speed probe: samples per second of a recipe on this machine, from a few real steps (what `clpose
demo` plans its epochs with, and benchmarks/bench_train_pipeline.py reports)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from clpose.config import Recipe
from clpose.engine import distributed
from clpose.speed.timing import synchronize
from clpose.training.loop import train_step
from clpose.training.setup import build_setup


@dataclass
class TrainingSpeed:
    samples_per_s: float  # median of the timed steps' rates (data loading included)
    data_wait: float  # share of the timed steps' wall time spent waiting for the next batch
    pipeline: str  # "cpu" or "gpu" (data.pipeline resolved)


def measure_training(recipe: Recipe, device: str = "auto", steps: int = 24, warmup: int = 8) -> TrainingSpeed:
    """Training speed of `recipe` on this machine from a few real steps on a throwaway copy of the setup: the
    median rate of the steps (on a shared machine a few seconds of load elsewhere would otherwise halve the
    estimate) and the share of time waiting for data.
    Each step is synchronised, so the GPU's work is counted where it happens."""
    dev = distributed.resolve_device(device)
    s = build_setup(recipe, distributed.Dist(), dev)
    s.step.model.train()
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
        train_step(s.step, batch, recipe.train)
        synchronize(dev)
        end = time.perf_counter()
        if i >= warmup:
            rates.append(len(batch["image"]) / (end - start))
            wait, total = wait + fetched - start, total + end - start
    return TrainingSpeed(statistics.median(rates), wait / total, s.pipeline)


def measure_speed(recipe: Recipe, device: str = "auto", steps: int = 24, warmup: int = 8) -> float:
    """Training samples per second of `recipe` on this machine (measure_training's median): what `clpose demo`
    plans its epochs with. An estimate that is too high costs less than one too low, as the demo's time guard ends
    training at its budget with the schedule nearly done."""
    return measure_training(recipe, device, steps, warmup).samples_per_s
