"""Does One-Euro smoothing remove jitter? Predict a synthetic clip (whose true keypoints are known) with and
without `--smooth oneeuro` and compare: jitter (RMS frame-to-frame acceleration), error against the truth,
and a trajectory plot.

    python benchmarks/smoothing_demo.py --checkpoint runs/synthetic_resnet18/best.pt --out docs/img/smoothing.png

Person boxes: the clip's boxes file (the truth with 2% of random jitter per frame, as a detector's would be).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from clpose.data.prepare.synthetic import write_video
from clpose.inference.predictor import Predictor
from clpose.inference.run import InferOptions, run_infer
from clpose.io import atomic_path
from clpose.training.curves import _panel


def trajectories(path: Path, people: int) -> np.ndarray:
    """(frames, people, K, 2) predictions by track id."""
    frames = json.loads(path.read_text())["frames"]
    k = len(frames[0]["people"][0]["keypoints"])
    out = np.full((len(frames), people, k, 2), np.nan)
    for f in frames:
        for p in f["people"]:
            if p["track_id"] < people:
                out[f["frame"], p["track_id"]] = p["keypoints"]
    return out


def jitter(x: np.ndarray) -> float:
    """RMS of the second difference over frames (px / frame^2)."""
    acc = x[2:] - 2 * x[1:-1] + x[:-2]
    return float(np.sqrt(np.nanmean(acc**2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/img/smoothing.png"))
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--joint", default="l-wrist")
    parser.add_argument("--min-cutoff", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.05)
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = write_video(folder / "clip.mp4", args.frames, seed=1)
        truth = json.loads(video.with_suffix(".json").read_text())
        people = len(truth["frames"][0]["people"])
        results = {}
        for smooth in ("none", "oneeuro"):
            options = InferOptions(
                boxes=str(video.with_suffix(".boxes.json")),
                json_out=folder / f"{smooth}.json",
                smooth=smooth,
                min_cutoff=args.min_cutoff,
                beta=args.beta,
            )
            run_infer(str(video), predictor, options, show_progress=False)
            results[smooth] = trajectories(folder / f"{smooth}.json", people)
    gt = np.array([[p["keypoints"] for p in f["people"]] for f in truth["frames"]])[..., :2]
    print("| | jitter (px/frame^2, RMS) | error vs truth (px, mean) |\n|---|---|---|")
    for name, traj in (("raw", results["none"]), ("One-Euro", results["oneeuro"]), ("truth", gt)):
        err = float(np.nanmean(np.linalg.norm(traj - gt, axis=-1)))
        print(f"| {name} | {jitter(traj):.2f} | {err:.2f} |")
    k = predictor.skeleton.keypoints.index(args.joint)
    series = {
        "truth": [(t, float(gt[t, 0, k, 0])) for t in range(len(gt))],
        "raw": [(t, float(v)) for t, v in enumerate(results["none"][:, 0, k, 0])],
        "One-Euro": [(t, float(v)) for t, v in enumerate(results["oneeuro"][:, 0, k, 0])],
    }
    colors = {"truth": (60, 160, 60), "raw": (40, 80, 230), "One-Euro": (200, 90, 30)}
    panel_x = _panel(f"{args.joint} x (px), person 0", series, False, colors, x_label="frame")
    for name in series:
        idx = 1
        series[name] = [
            (t, float(v))
            for t, v in enumerate(
                (gt if name == "truth" else results["none" if name == "raw" else "oneeuro"])[:, 0, k, idx]
            )
        ]
    panel_y = _panel(f"{args.joint} y (px), person 0", series, False, colors, x_label="frame")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as path:
        cv2.imwrite(str(path), np.concatenate([panel_x, panel_y], axis=1))


if __name__ == "__main__":
    main()
