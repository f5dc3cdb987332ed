"""What training shows while it runs: the progress bar (loss, lr, samples/s, data-wait share and ETA; rank 0 only, on
clpose.progress) and the one-line summary of each epoch."""

from __future__ import annotations

import math
import time

from clpose.progress import ProgressBar
from clpose.training.rows import EpochRow


class TrainProgress(ProgressBar):
    def __init__(self, total_steps: int, done_steps: int = 0, enabled: bool = True) -> None:
        super().__init__(
            "train",
            total_steps,
            "loss {loss:.4g}  lr {lr:.2g}  {rate:.1f} samples/s  data {wait:.0%}",
            enabled,
            done_steps,
            transient=False,
            loss=float("nan"),
            lr=0.0,
            rate=0.0,
            wait=0.0,
        )
        self._window: list[tuple[float, int]] = []

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.update(0, description=f"epoch {epoch + 1}/{epochs}")
        self._window.clear()

    def step(self, samples: int, loss: float, lr: float, wait: float) -> None:
        now = time.perf_counter()
        self._window = [*self._window[-19:], (now, samples)]
        span = now - self._window[0][0]
        rate = sum(n for _, n in self._window[1:]) / span if span > 0 else 0.0
        self.update(1, loss=loss, lr=lr, rate=rate, wait=wait)


def epoch_summary(row: EpochRow, best: float, scale: float) -> str:
    """One line per epoch. The metric is printed on its own scale (Metric.scale: COCO's AP x 100), as `clpose eval`
    prints it; metrics.jsonl keeps the raw value, as `eval --json` does."""
    text = f"epoch {row.epoch}: loss {row.loss:.4g}, {row.samples_per_s:.1f} samples/s, data wait {row.data_wait:.0%}"
    if row.scored():  # validated (undefined: n/a)
        text += f", {row.metric} {_shown(row.value, scale)} (best {_shown(best, scale)})"
    return text


def _shown(value: float | None, scale: float) -> str:
    """A metric on its printed scale; "n/a" where it is undefined (clpose.evaluation.undefined)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value * scale:.1f}"
