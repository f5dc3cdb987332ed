"""What training tells its user: the progress bar (loss, lr, samples/s, data-wait share and ETA; rank 0 only, on
clpose.progress), the one-line summary of each epoch, and the warnings of a run that is not learning."""

from __future__ import annotations

import math
import time

from clpose.config import LossConfig
from clpose.progress import ProgressBar

# The loss parts every loss returns, and the LossConfig weight of each (clpose/losses.py).
PART_WEIGHTS = {"heatmap": "w_h", "offset_y": "w_o", "offset_x": "w_o"}
# validations in a row "at zero" (below 1 on the printed scale) before a falling loss is suspect
STALLED_VALIDATIONS = 3
# What learned where the paper's settings did not (issue 23: COCO from random weights, w_h 0.5 and region pred stayed
# at AP 0.000-0.003 for 25 epochs, the offsets untrained from epoch 6 on)
REMEDY = (
    "try --set loss.w_h=5 --set loss.region=union "
    "(on COCO from random weights it learned AP 56.9 where these stayed at 0)"
)


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


def epoch_summary(row: dict, best: float, scale: float) -> str:
    """One line per epoch. The metric is printed on its own scale (Metric.scale: COCO's AP x 100), as `clpose eval`
    prints it; metrics.jsonl keeps the raw value, as `eval --json` does."""
    text = (
        f"epoch {row['epoch']}: loss {row.get('loss', math.nan):.4g}, {row['samples_per_s']:.1f} samples/s, "
        f"data wait {row['data_wait']:.0%}"
    )
    if row["value"] is not None:
        text += f", {row['metric']} {row['value'] * scale:.1f} (best {best * scale:.1f})"
    return text


def health_warnings(rows: list[dict], loss: LossConfig, tau: float | None, scale: float) -> list[str]:
    """Why the run that ends with `rows[-1]` may not be learning, one sentence each: a weighted loss part that was
    exactly 0 for the whole epoch (it trained nothing), or a validation metric at zero for several validations while
    the loss falls (the loss is met by something that is not scored)."""
    found = []
    zero = [p for p, w in PART_WEIGHTS.items() if rows[-1].get(p) == 0.0 and getattr(loss, w, 0.0) > 0]
    if zero:
        found.append(_zero_parts(zero, loss, tau))
    stalled = _stalled(rows, loss, tau, scale)
    if stalled:
        found.append(stalled)
    return found


def _untrained_offsets(loss: LossConfig) -> bool:
    """Whether the offsets are trained only where the network's own heatmap reaches tau (none, from random weights)."""
    return loss.name == "composite" and loss.region == "pred"


def _zero_parts(zero: list[str], loss: LossConfig, tau: float | None) -> str:
    weights = sorted({f"loss.{PART_WEIGHTS[p]} {getattr(loss, PART_WEIGHTS[p]):g}" for p in zero})
    verb = "was" if len(zero) == 1 else "were"
    said = f"{' and '.join(zero)} {verb} exactly 0 for the whole epoch ({', '.join(weights)})"
    if _untrained_offsets(loss) and "heatmap" not in zero:
        return f"{said}: no predicted heatmap cell reached tau {tau:g}, so the offsets were not trained; {REMEDY}"
    return (
        f"{said}: that part of the loss trained nothing; check that the training crops hold labelled keypoints "
        "(keypoint weights) and that the codec's targets reach them"
    )


def _stalled(rows: list[dict], loss: LossConfig, tau: float | None, scale: float) -> str | None:
    scored = [r for r in rows if isinstance(r.get("value"), float | int) and math.isfinite(r["value"])]
    window = scored[-STALLED_VALIDATIONS:]
    if len(window) < STALLED_VALIDATIONS or any(r["value"] * scale >= 1.0 for r in window):
        return None
    first, last = window[0].get("loss"), window[-1].get("loss")
    if first is None or last is None or not last < first:
        return None
    if _untrained_offsets(loss):
        cause = f"no predicted heatmap cell reaches tau {tau:g}, so the offsets stay untrained (loss.region pred)"
        remedy = REMEDY
    else:
        cause = f"the loss falls by predicting near-empty heatmaps (most target cells are 0; loss.w_h {loss.w_h:g})"
        remedy = "raise loss.w_h (e.g. --set loss.w_h=5) or lower train.lr; check data.input_size and codec.sigma"
    values = ", ".join(f"{r['value'] * scale:.1f}" for r in window)
    epochs = ", ".join(str(r["epoch"]) for r in window)
    return (
        f"{window[-1]['metric']} has stayed below 1 ({values} at epochs {epochs}) while the loss fell from "
        f"{first:.4g} to {last:.4g}: the model is not learning what is scored; likely cause: {cause}; remedy: {remedy}"
    )
