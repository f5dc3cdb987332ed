"""Validation metric against wall-clock minutes for several runs, in one PNG (docs/img/).

    python benchmarks/plot_runs.py runs/synthetic_resnet18 runs/synthetic_simplebaseline_resnet18 \
        --out docs/img/synthetic_learning.png

Reads each run's metrics.jsonl (the time axis is the cumulative training time of the epochs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from clpose.io import atomic_path
from clpose.training.curves import _panel

PALETTE = [(200, 90, 30), (40, 120, 230), (60, 160, 60), (170, 60, 200)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    series, metric = {}, "metric"
    for run in args.runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        minutes = np.cumsum([r["seconds"] for r in rows]) / 60
        series[run.name] = [
            (float(t), r["value"]) for t, r in zip(minutes, rows, strict=True) if r["value"] is not None
        ]
        metric = rows[-1]["metric"]
        print(f"{run.name}: best {max(v for _, v in series[run.name]):.2f} after {minutes[-1]:.1f} training minutes")
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    image = _panel(f"validation {metric} vs training minutes", series, False, colors, x_label="minutes")
    image = cv2.resize(image, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        cv2.imwrite(str(tmp), image)


if __name__ == "__main__":
    main()
