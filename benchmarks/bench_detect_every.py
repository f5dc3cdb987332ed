"""The accuracy cost of `--detect-every N` (issue 33): PCK@0.2 on a synthetic clip with ground truth, detection on
every frame against every Nth, and how many frames an entering person is missed.

    clpose demo --out runs/demo10 --minutes 10            # a trained CLNet for the synthetic figures
    python benchmarks/bench_detect_every.py --checkpoint runs/demo10/train/best.pt

The clip (`clpose prepare synthetic --video`, 640x360, 25 frames/s) has figures that run ("fast": 0.6 frame widths
per second, turning every 0.4-1.2 s), some entering and some leaving. Its boxes file (the true boxes enlarged 16%,
with 2% jitter, as a detector's) is the detector, so a detection frame finds everyone in view; between detections
people are followed from their keypoints (clpose.inference.follow) with infer's defaults (--kpt-threshold 0.3,
--track-score 0.3). Each predicted person is matched to the true person with the most PCK-correct joints (each true
person at most once); a true person in view (at least 8 of 16 joints inside the frame) with no prediction counts all
their joints in the frame as misses. PCK@0.2 of the torso (the synthetic skeleton's rule), over the joints inside
the frame.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import cpu_description

from clpose.data.prepare.synthetic import read_clip_truth, write_video
from clpose.evaluation.pck import person_sizes
from clpose.inference.predictor import Predictor
from clpose.inference.run import InferOptions, run_infer
from clpose.skeletons import SYNTHETIC

ALPHA = 0.2
IN_VIEW = 8  # joints inside the frame for a person to count as someone to find


def score(result: dict, truth) -> tuple[float, list[int | None]]:
    """PCK@0.2 over the in-frame joints of everyone in view, and per true person the first frame it was found."""
    correct = counted = 0
    found: list[int | None] = [None] * truth.keypoints.shape[1]
    for record in result["frames"]:
        t = record["frame"]
        people = [p for p in range(truth.keypoints.shape[1]) if (truth.keypoints[t, p, :, 2] > 0).sum() >= IN_VIEW]
        if not people:
            continue
        gt = truth.keypoints[t, people, :, :2]
        inside = truth.keypoints[t, people, :, 2] > 0
        sizes, _ = person_sizes("torso", gt, np.ones_like(inside), SYNTHETIC, None, "clip")
        preds = [np.array(p["keypoints"], dtype=np.float64) for p in record["people"]]
        taken: set[int] = set()
        hits = np.zeros(len(people))
        for pred in preds:
            err = np.linalg.norm(pred[None] - gt, axis=-1)  # (people, K)
            ok = (err <= ALPHA * sizes[:, None]) & inside
            order = [i for i in np.argsort(-ok.sum(1)) if i not in taken and ok[i].sum() > 0]
            if order:
                taken.add(int(order[0]))
                hits[order[0]] = ok[order[0]].sum()
                if found[people[order[0]]] is None:
                    found[people[order[0]]] = t
        correct += hits.sum()
        counted += inside.sum()
    return 100 * correct / max(counted, 1), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--every", default="1,2,5,10,20")
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}")
    predictor = Predictor.from_checkpoint(args.checkpoint, torch.device("cpu"))
    every = [int(n) for n in args.every.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            clip = write_video(Path(tmp) / f"clip{seed}.mp4", args.frames, seed, 640, 360, 25, 4, "fast", enter=1,
                               leave=1)  # fmt: skip
            truth = read_clip_truth(clip.with_suffix(".json"))
            for n in every:
                out = Path(tmp) / "out.json"
                opts = InferOptions(boxes=str(clip.with_suffix(".boxes.json")), json_out=out, detect_every=n)
                report = run_infer(str(clip), predictor, opts, show_progress=False)
                pck, found = score(json.loads(out.read_text()), truth)
                # a person entering: the first frame with IN_VIEW joints inside, against the first frame found
                ready = [next((t for t in range(args.frames) if (truth.keypoints[t, p, :, 2] > 0).sum() >= IN_VIEW),
                              None) for p in range(len(found))]  # fmt: skip
                enters = [p for p, e in enumerate(truth.enters) if e not in (None, 0)]
                late = [found[p] - ready[p] for p in enters if found[p] is not None and ready[p] is not None]
                rows.append({"seed": seed, "every": n, "pck": pck, "detected": report.detected or report.frames,
                             "frames": report.frames, "entering_missed_frames": late})  # fmt: skip
                print(f"seed {seed} every {n}: PCK {pck:.2f}, detected {rows[-1]['detected']} of {report.frames} "
                      f"frames, an entering person found {late} frames after it is in view")  # fmt: skip
    print("\n| --detect-every | PCK@0.2 (mean of seeds) | change | frames detected | entering person missed (frames) |")
    print("|---|---|---|---|---|")
    base = np.mean([r["pck"] for r in rows if r["every"] == every[0]])
    for n in every:
        got = [r for r in rows if r["every"] == n]
        pck = np.mean([r["pck"] for r in got])
        late = [v for r in got for v in r["entering_missed_frames"]]
        detected = sum(r["detected"] for r in got) / sum(r["frames"] for r in got)
        print(f"| {n} | {pck:.2f} | {pck - base:+.2f} | {100 * detected:.0f}% | {late} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
