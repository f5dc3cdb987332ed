"""One synchronise and one timing primitive, shared by `bench` and the training-speed probe (on CUDA the work is
asynchronous, so a time is only true between two synchronisations), and the CPU's name written next to numbers."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds one call of `fn` takes on `device`, queued work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start
