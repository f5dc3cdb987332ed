"""The training progress bar: loss, lr, samples/s, data-wait share and ETA (rank 0 only)."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clpose.console import console


class TrainProgress:
    def __init__(self, total_steps: int, done_steps: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2g}  {task.fields[rate]:.1f} samples/s  "
                "data {task.fields[wait]:.0%}"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=done_steps, loss=float("nan"), lr=0.0, rate=0.0, wait=0.0
        )
        self._window: list[tuple[float, int]] = []

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.progress.update(self.task, description=f"epoch {epoch + 1}/{epochs}")
        self._window.clear()

    def step(self, samples: int, loss: float, lr: float, wait: float) -> None:
        now = time.perf_counter()
        self._window = [*self._window[-19:], (now, samples)]
        span = now - self._window[0][0]
        rate = sum(n for _, n in self._window[1:]) / span if span > 0 else 0.0
        self.progress.update(self.task, advance=1, loss=loss, lr=lr, rate=rate, wait=wait)

    def log(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message)
