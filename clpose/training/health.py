"""Is the run learning? After each epoch, the warnings of a run that looks fine and is not: a weighted loss part that
was exactly zero for the whole epoch (it trained nothing), or a validation metric stuck at zero while the loss falls.
They go to the log and into that epoch's row of metrics.jsonl."""

from __future__ import annotations

import math

from clpose.config import Options
from clpose.losses import get_loss
from clpose.training.rows import EpochRow

# validations in a row "at zero" (below 1 on the printed scale) before a falling loss is suspect
STALLED_VALIDATIONS = 3
# What learned where the paper's settings did not: on COCO from random weights, w_h 0.5 and region pred stayed at AP
# 0.000-0.003 for 25 epochs, the offsets untrained from epoch 6 on (docs/training.md)
LEARNED_W_H, LEARNED_REGION = 5.0, "union"


def remedy(loss: Options) -> str:
    """The settings that learned, as --set options, for those that `loss` lacks (never advice to set what is set)."""
    changes = []
    if float(getattr(loss, "w_h", LEARNED_W_H)) < LEARNED_W_H:
        changes.append(f"--set loss.w_h={LEARNED_W_H:g}")
    if getattr(loss, "region", LEARNED_REGION) != LEARNED_REGION:
        changes.append(f"--set loss.region={LEARNED_REGION}")
    if not changes:
        return "lower train.lr, or check data.input_size and codec.sigma"
    return f"try {' '.join(changes)} (on COCO from random weights it learned AP 56.9 where these stayed at 0)"


def _raise_w_h(loss: Options) -> str:
    w_h = float(getattr(loss, "w_h", 1.0))
    example = f"--set loss.w_h={max(5.0, 2 * w_h):g}"
    return f"raise loss.w_h (e.g. {example}) or lower train.lr; check data.input_size and codec.sigma"


def health_warnings(
    rows: list[EpochRow], loss: Options, tau: float | None, scale: float, higher_is_better: bool = True
) -> list[str]:
    """Why the run that ends with `rows[-1]` may not be learning, one sentence each: a weighted loss part that was
    exactly 0 for the whole epoch (it trained nothing), or a validation metric at zero for several validations while
    the loss falls (the loss is met by something that is not scored)."""
    found = []
    weights = {p: part.weight for p, part in get_loss(loss.name).parts.items() if part.weight}  # part -> its option
    zero = [p for p, w in weights.items() if rows[-1].parts.get(p) == 0.0 and getattr(loss, w, 0.0) > 0]
    if zero:
        found.append(_zero_parts(zero, weights, loss, tau))
    stalled = _stalled(rows, loss, tau, scale) if higher_is_better else None  # "stuck at 0" is a score's failure
    if stalled:
        found.append(stalled)
    return found


def _untrained_offsets(loss: Options) -> bool:
    """Whether the offsets are trained only where the network's own heatmap reaches tau (none, from random weights):
    the loss's entry says which of its settings do."""
    return get_loss(loss.name).predicted_region(loss)


def _zero_parts(zero: list[str], part_weights: dict[str, str], loss: Options, tau: float | None) -> str:
    weights = sorted({f"loss.{part_weights[p]} {getattr(loss, part_weights[p]):g}" for p in zero})
    verb = "was" if len(zero) == 1 else "were"
    said = f"{' and '.join(zero)} {verb} exactly 0 for the whole epoch ({', '.join(weights)})"
    if _untrained_offsets(loss) and "heatmap" not in zero:
        return f"{said}: no predicted heatmap cell reached tau {tau:g}, so the offsets were not trained; {remedy(loss)}"
    return (
        f"{said}: that part of the loss trained nothing; check that the training crops hold labelled keypoints "
        "(keypoint weights) and that the codec's targets reach them"
    )


def _stalled(rows: list[EpochRow], loss: Options, tau: float | None, scale: float) -> str | None:
    if rows[-1].value is None:  # not validated this epoch: nothing new (with val_every 20 it was said 20 times)
        return None
    scored = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    window = scored[-STALLED_VALIDATIONS:]
    if len(window) < STALLED_VALIDATIONS or any(r.value * scale >= 1.0 for r in window):  # type: ignore[operator]
        return None
    first, last = window[0].loss, window[-1].loss
    if not last < first:  # NaN (a row without a loss) compares False: no warning
        return None
    if _untrained_offsets(loss):
        cause = f"no predicted heatmap cell reaches tau {tau:g}, so the offsets stay untrained (loss.region pred)"
        advice = remedy(loss)
    else:
        w_h = f"; loss.w_h {loss.w_h:g}" if hasattr(loss, "w_h") else ""
        cause = f"the loss falls by predicting near-empty heatmaps (most target cells are 0{w_h})"
        advice = _raise_w_h(loss)
    values = ", ".join(f"{r.value * scale:.1f}" for r in window)  # type: ignore[operator]
    epochs = ", ".join(str(r.epoch) for r in window)
    return (
        f"{window[-1].metric} has stayed below 1 ({values} at epochs {epochs}) while the loss fell from "
        f"{first:.4g} to {last:.4g}: the model is not learning what is scored; likely cause: {cause}; remedy: {advice}"
    )
