"""End-to-end frames/s of `clpose infer` on a 1280x720 video of 1, 3 and 10 walking people, with a person detector,
per detector and `--detect-every` (issue 33), and the share of each stage.

    python benchmarks/bench_video.py --checkpoint runs/int8/runs/synthetic-clnet_resnet50-256x192/best.pt
    python benchmarks/bench_video.py --checkpoint CKPT --int8        # the pose network in int8 (its graph cached)

Each run is `run_infer` as `clpose infer CLIP --detector NAME --detect-every N --runtime openvino --threads 2
--out x.mp4 --json x.json` runs it (the annotated video and the JSON written, the pipelined loop), with two stand-ins,
both because no trained weights can be downloaded here:
- the detector runs its whole network on every detection frame (`PersonDetector.boxes`: resize, network, decoding,
  NMS), with random weights, and then returns the clip's true boxes (PATH.boxes.json): the cost of a trained
  detector, and the people a trained one finds;
- a pose network that is not trained gives low keypoint scores, so a followed person would be dropped at once:
  `--kpt-threshold 0 --track-score 0` keep every followed person, so frames are detected every N exactly, as with a
  trained network on people that stay in view (the loop's rules themselves are tested in tests/test_follow_loop.py).
The pose network's cost does not depend on its weights. With --int8 both networks run their int8 graphs (as `clpose
infer --int8` does since 2026-12-07); the detector's accuracy check is widened for its random weights
(bench_detectors.wide_detector_budget). Configurations are interleaved round by round; medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import cpu_description

import clpose.inference.run
from clpose.data.prepare.synthetic import write_video
from clpose.inference.detector import BoxesFile, PersonDetector
from clpose.inference.predictor import Predictor
from clpose.inference.run import InferOptions, run_infer


def random_detector(name: str, folder: Path) -> Path:
    """`name`'s network with torchvision's random initialisation, at a trained network's scale (bench_detectors'
    `random_state`), saved as a weights file (its cost is a trained one's: every anchor or proposal is computed either
    way; its int8 graph, with --int8, is calibrated on activations of a trained network's range)."""
    import torchvision.models.detection as detection
    from bench_detectors import random_state

    torch.manual_seed(0)
    path = folder / f"{name}.pth"
    torch.save(random_state(getattr(detection, name)(weights=None, weights_backbone=None)), path)
    return path


class TrueBoxes:
    """PersonDetector.boxes replaced: the network runs in full, then the clip's true boxes are returned."""

    def __init__(self) -> None:
        self.truth: BoxesFile | None = None
        self.original = PersonDetector.boxes

    def __call__(self, detector: PersonDetector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.original(detector, image)
        assert self.truth is not None
        self.frame += 1
        return self.truth.boxes(self.frame - 1, f"frame {self.frame - 1}")

    def use(self, clip: Path) -> None:
        self.truth = BoxesFile(clip.with_suffix(".boxes.json"))
        self.truth.match(None, 0)
        self.frame = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="CLNet-R50 256x192 (clpose infer's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--people", default="1,3,10")
    parser.add_argument("--every", default="1,5,10")
    parser.add_argument("--detectors", default="ssdlite320_mobilenet_v3_large,fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--runtime", default="openvino")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--torch-threads",
        default="infer",
        help="torch's threads beside the runtime, comma-separated: infer (its rule, torch_threads_beside) or a count "
        "(--torch-threads infer,2 compares infer's one thread with torch on two, as before 2026-12-07)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}; {args.threads} threads; runtime {args.runtime}; int8 {args.int8}")
    people = [int(p) for p in args.people.split(",")]
    every = [int(n) for n in args.every.split(",")]
    detectors = args.detectors.split(",")
    torch_threads = args.torch_threads.split(",")
    infer_rule = clpose.inference.run.torch_threads_beside
    if args.int8:
        from bench_detectors import wide_detector_budget

        wide_detector_budget()  # the detector's weights are random: its int8 graph is timed, not judged
    stand_in = TrueBoxes()
    PersonDetector.boxes = lambda detector, image: stand_in(detector, image)  # type: ignore[method-assign]
    rows: dict[tuple, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = {p: write_video(folder / f"p{p}.mp4", args.frames, 1, 1280, 720, 25, p, "walk") for p in people}
        weights = {d: random_detector(d, folder) for d in detectors}
        # --int8 calibrates on the recipe's training split, as `clpose infer --int8` does (and reuses its cache)
        predictor = Predictor.from_checkpoint(
            args.checkpoint, torch.device("cpu"), runtime=args.runtime, threads=args.threads, int8=args.int8
        )
        print(predictor.runtime.describe())
        configs = [
            (d, n, p, t) for p in people for d in [*detectors, "boxes file"] for n in every for t in torch_threads
        ]
        configs = [c for c in configs if not (c[0] == "boxes file" and c[1] != 1)]
        for r in range(args.rounds + 1):  # round 0 warms up (graphs made and checked, first-call costs)
            for detector, n, p, t in configs:
                beside = infer_rule if t == "infer" else (lambda info, t=t: int(t))
                clpose.inference.run.torch_threads_beside = beside  # type: ignore[attr-defined]
                stand_in.use(clips[p])
                source = (
                    {"boxes": str(clips[p].with_suffix(".boxes.json"))}
                    if detector == "boxes file"
                    else {"detector": detector, "detector_weights": weights[detector]}
                )
                opts = InferOptions(
                    out=folder / "out.mp4", json_out=folder / "out.json", detect_every=n, kpt_threshold=0.0,
                    track_score=0.0, **source,
                )  # fmt: skip
                report = run_infer(str(clips[p]), predictor, opts, show_progress=False)
                if r:
                    total = report.total or 1.0
                    rows.setdefault((detector, n, p, t), []).append(
                        (report.fps, 100 * report.seconds["boxes"] / total, report.detected, report.seconds)
                    )
    print("\n| people | detector | --detect-every | torch threads | frames/s | detector share | detected / frames |")
    print("|---|---|---|---|---|---|---|")
    out = []
    for (detector, n, p, t), got in rows.items():
        fps = statistics.median(g[0] for g in got)
        share = statistics.median(g[1] for g in got)
        detected = got[0][2] if got[0][2] is not None else args.frames
        print(f"| {p} | {detector} | {n} | {t} | {fps:.1f} | {share:.0f}% | {detected} / {args.frames} |")
        out.append({"people": p, "detector": detector, "every": n, "torch_threads": t,
                    "fps": [g[0] for g in got], "median_fps": fps, "detector_share": share,
                    "detected": detected, "seconds": got[-1][3]})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "int8": args.int8, "rows": out}, indent=1))


if __name__ == "__main__":
    main()
