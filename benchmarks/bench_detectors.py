"""CPU time per 1280x720 frame of the person detectors of `clpose infer --detector NAME`, per runtime.

    python benchmarks/bench_detectors.py --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_detectors.py --threads 2

Each detector is built as `clpose infer` builds it (`PersonDetector`: torchvision's builder, weights=None,
weights_backbone=None, the weights loaded from a file) and runs fp32 on one 1280x720 frame at a time (a rendered
synthetic scene) through `PersonDetector.boxes`: the whole call, from the BGR frame to person boxes in frame pixels.
SSDLite runs in torch and, through its ONNX graph, in each installed runtime (`--runtimes`); the Faster R-CNNs run in
torch only (their graphs are not exported). With `--weights-from-cache` the real COCO weights are loaded from the
torch hub cache (`clpose weights fetch NAME`) and the graphs go to the user's graph cache. Without, every network
keeps its random initialisation (SSDLite's batch-norm statistics measured on a random batch: see `random_state`),
saved to a temporary file, and its graph goes to a temporary cache: the networks cost the same (a Faster R-CNN keeps
its region proposal network's top proposals either way, SSDLite runs every anchor either way), only the final NMS,
a small part, sees other boxes. Detectors and runtimes are interleaved round by round, after `--warmup` untimed
frames each (the first two or three calls of a Faster R-CNN were measured up to 10x slower than the rest); the
medians are reported. With `--int8`, SSDLite also runs its int8 graph in each graph runtime (`clpose infer --int8`'s:
NNCF, calibrated on 40 rendered scenes of the frame's size; clpose.inference.detector_int8). Its accuracy check is
widened to let every graph through (`wide_detector_budget`): a network of random weights has no structure that
survives quantisation (its person scores move by up to 0.47 even with the head in float, measured 2026-12-07), so the
check would refuse it, and what it would say of random weights says nothing of COCO's; the graph's speed does not
depend on its weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BASELINE = ("fasterrcnn_mobilenet_v3_large_fpn", "torch")  # the bar: 10x faster than this


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5, help="timed frames per detector, runtime and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames per detector and runtime first")
    parser.add_argument("--detectors", default="", help="comma-separated names (default: every detector)")
    parser.add_argument("--runtimes", default="torch,onnxruntime,openvino")
    parser.add_argument("--weights-from-cache", action="store_true")
    parser.add_argument("--int8", action="store_true", help="SSDLite's int8 graph too, in each graph runtime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from machine import cpu_description

    from clpose.data.synthetic import render_sample
    from clpose.weights import DETECTORS

    image, _ = render_sample(np.random.default_rng(0), 720)
    frame = np.ascontiguousarray(np.concatenate([image, image[:, :560]], axis=1))  # 720 x 1280, BGR
    names = [n for n in args.detectors.split(",") if n] or list(DETECTORS)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.weights_from_cache:
            os.environ["XDG_CACHE_HOME"] = tmp  # graphs of random weights never reach the user's cache
        if args.int8 and not args.weights_from_cache:
            wide_detector_budget()
        detectors = build(names, args.runtimes.split(","), args.threads, Path(tmp), args.weights_from_cache,
                          scenes(Path(tmp) / "scenes") if args.int8 else None)  # fmt: skip
        for det in detectors.values():
            for _ in range(args.warmup):
                det.boxes(frame)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in detectors}
        for _ in range(args.rounds):
            for key, det in detectors.items():
                for _ in range(args.frames):
                    start = time.perf_counter()
                    det.boxes(frame)
                    times[key].append(time.perf_counter() - start)
    print(
        f"CPU {cpu_description()}, torch {torch.__version__}, {args.threads} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}, weights {'COCO' if args.weights_from_cache else 'random'}, "
        f"medians of {args.rounds} x {args.frames} frames"
    )
    medians = {key: statistics.median(values) for key, values in times.items()}
    baseline = medians.get(BASELINE)
    print(f"| detector | runtime | ms per 1280x720 frame (median) | frames/s | x faster than {' in '.join(BASELINE)} |")
    print("|---|---|---|---|---|")
    for (name, runtime), median in medians.items():
        ratio = f"{baseline / median:.1f}" if baseline else "-"
        print(f"| {name} | {detectors[name, runtime].runtime_info.version} {runtime} | {1000 * median:.1f} | "
              f"{1 / median:.1f} | {ratio} |")  # fmt: skip


def wide_detector_budget() -> None:
    """Let every int8 detector graph through its check (random weights; see the module docstring), and say so."""
    import clpose.inference.detector_int8 as detector_int8

    detector_int8.BOX_BUDGET, detector_int8.SCORE_BUDGET = 0.0, float("inf")
    print("int8 detector: the accuracy check's budget is widened (random weights): speed only", flush=True)


def scenes(folder: Path, count: int = 40) -> Path:
    """`count` rendered 1280x720 scenes (two figures side by side) as PNG files: the int8 detector's frames."""
    import cv2

    from clpose.data.synthetic import render_sample

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        left, _ = render_sample(rng, 720)
        right, _ = render_sample(rng, 720)
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.concatenate([left, right[:, :560]], axis=1))
    return folder


def build(
    names: list[str], runtimes: list[str], threads: int, tmp: Path, from_cache: bool, frames: Path | None = None
) -> dict:
    """(name, runtime) -> PersonDetector, for each detector in each runtime that runs its network; with `frames`,
    SSDLite's int8 graph too, as (name, "RUNTIME int8")."""
    import torchvision.models.detection as detection

    from clpose.engine.runtimes import installed
    from clpose.inference.detector import PersonDetector
    from clpose.inference.detector_int8 import path_frames
    from clpose.precision import int8_precision

    detectors = {}
    for name in names:
        weights = None
        if not from_cache:
            weights = tmp / f"{name}.pth"
            torch.save(random_state(getattr(detection, name)(weights=None, weights_backbone=None)), weights)
        for runtime in runtimes:
            if runtime != "torch" and not installed(runtime):
                continue
            det = PersonDetector(name, weights, torch.device("cpu"), 0.5, runtime=runtime, threads=threads)
            if det.runtime_info.runtime == runtime:  # a Faster R-CNN runs in torch whatever is asked: timed once
                detectors[name, runtime] = det
            if frames is not None and runtime != "torch" and det.runtime_info.runtime == runtime:
                detectors[name, f"{runtime} int8"] = PersonDetector(
                    name, weights, torch.device("cpu"), 0.5, runtime, threads, int8_precision(), path_frames(frames)
                )
    return detectors


def random_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The random weights of `model`, at a trained network's scale. torchvision initialises an untrained SSDLite so
    that its features are ~1e-14: denormal floats, which slow torch's kernels 50x (ONNX Runtime and OpenVINO flush
    them to zero) and would time nothing real. Batch-norm statistics of one random batch give O(1) features."""
    from torchvision.models.detection.ssd import SSD

    if isinstance(model, SSD):
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.reset_running_stats()
                bn.momentum = None  # the statistics of the one batch below, exactly
        model.train()
        with torch.no_grad():
            model.head(list(model.backbone(torch.rand(2, 3, 320, 320) * 2 - 1).values()))
    return model.eval().state_dict()


if __name__ == "__main__":
    main()
