"""The training-curve PNG of a run (drawn with OpenCV: no plotting dependency)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from clpose.io import atomic_path, write_image
from clpose.training.rows import EpochRow

W, H, PAD = 520, 340, 56
TOTAL_COLOR = (200, 90, 30)  # the total loss; each part's colour is its loss entry's (clpose.losses.LossPart)


def _panel(
    title: str, series: dict[str, list[tuple[float, float]]], log_y: bool, colors: dict, x_label: str = "epoch"
) -> np.ndarray:
    img = np.full((H, W, 3), 255, np.uint8)
    points = [p for s in series.values() for p in s if math.isfinite(p[1]) and (p[1] > 0 or not log_y)]
    cv2.putText(img, title, (PAD, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1, cv2.LINE_AA)
    cv2.rectangle(img, (PAD, 36), (W - 16, H - 40), (120, 120, 120), 1)
    if not points:
        return img
    xs = [p[0] for p in points]
    ys = [math.log10(p[1]) if log_y else p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1e-9)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def to_px(x: float, y: float) -> tuple[int, int]:
        y = math.log10(y) if log_y else y
        return (round(PAD + (x - x0) / (x1 - x0) * (W - 16 - PAD)), round(H - 40 - (y - y0) / (y1 - y0) * (H - 76)))

    for t in np.linspace(y0, y1, 5):
        py = to_px(x0, 10**t if log_y else t)[1]
        cv2.line(img, (PAD - 4, py), (W - 16, py), (225, 225, 225), 1)
        label = f"{10**t:.2g}" if log_y else f"{t:.3g}"
        cv2.putText(img, label, (4, py + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x0:.3g}", (PAD, H - 22), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, x_label, (W // 2 - 20, H - 22), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x1:.3g}", (W - 44, H - 22), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    legend_x = PAD + 8
    for name, pts in series.items():
        pts = [p for p in pts if math.isfinite(p[1]) and (p[1] > 0 or not log_y)]
        color = colors.get(name, (0, 0, 0))
        if len(pts) > 1:
            cv2.polylines(img, [np.array([to_px(*p) for p in pts], np.int32)], False, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, to_px(*p), 3, color, -1, cv2.LINE_AA)
        cv2.putText(img, name, (legend_x, H - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, color, 1, cv2.LINE_AA)
        legend_x += cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)[0][0] + 14
    return img


def plot_curves(
    rows: list[EpochRow], path: Path, title: str = "", parts: dict[str, tuple[int, int, int]] | None = None
) -> None:
    """Losses (log scale: the total and each of `parts`, part -> its BGR colour) and the validation metric per epoch,
    side by side. The metric on its printed scale (a row's "scale": COCO's AP x 100), as the training log and
    `clpose eval` show it; rows written before it had none: 1."""
    colors = {"loss": TOTAL_COLOR, **(parts or {})}
    series = {k: [(r.epoch, r.loss if k == "loss" else r.parts[k]) for r in rows if k == "loss" or k in r.parts]
              for k in colors}  # fmt: skip
    losses = {k: points for k, points in series.items() if points}
    metric = next((r.metric for r in rows if r.metric), "metric")
    values = {metric: [(r.epoch, r.value * r.scale) for r in rows if r.value is not None]}
    left = _panel(f"{title} training loss", losses, True, colors)
    right = _panel(f"validation {metric}", values, False, {metric: (30, 30, 200)})
    image = np.concatenate([left, right], axis=1)
    with atomic_path(path) as tmp:
        write_image(tmp, image)
