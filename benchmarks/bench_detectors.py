"""CPU time per 1280x720 frame of the person detectors of `clpose infer --detector NAME`.

    python benchmarks/bench_detectors.py --threads 2 --rounds 3 --frames 5
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_detectors.py --threads 2

Each detector is built as `clpose infer` builds it (torchvision's builder, weights=None, weights_backbone=None) and
runs fp32 on one 1280x720 frame at a time (a rendered synthetic scene), through `PersonDetector.boxes` (the BGR to
RGB conversion included). With `--weights-from-cache` the real COCO weights are loaded from the torch hub cache
(`clpose weights fetch NAME`); without, the network keeps its random initialisation: its cost is the same (the
region proposal network keeps its top 1000 proposals either way), only the final per-class NMS, a small part, sees
fewer boxes. Detectors are interleaved round by round; the medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=5, help="timed frames per detector and round")
    parser.add_argument("--weights-from-cache", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import torchvision.models.detection as detection

    from clpose.data.synthetic import render_sample
    from clpose.inference.detector import PERSON, PersonDetector
    from clpose.speed.timing import cpu_description
    from clpose.weights import DETECTORS

    image, _ = render_sample(np.random.default_rng(0), 720)
    frame = np.ascontiguousarray(np.concatenate([image, image[:, :560]], axis=1))  # 720 x 1280, BGR
    detectors = {}
    for name in DETECTORS:
        if args.weights_from_cache:
            detectors[name] = PersonDetector(name, None, torch.device("cpu"))
        else:
            det = PersonDetector.__new__(PersonDetector)
            det.model = getattr(detection, name)(weights=None, weights_backbone=None).eval()
            det.device, det.threshold, det.name = torch.device("cpu"), 0.5, name
            detectors[name] = det
        detectors[name].boxes(frame)  # warm-up
    assert PERSON == 1
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(args.rounds):
        for name, det in detectors.items():
            for _ in range(args.frames):
                start = time.perf_counter()
                det.boxes(frame)
                times[name].append(time.perf_counter() - start)
    print(
        f"CPU {cpu_description()}, torch {torch.__version__}, {args.threads} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}, weights {'COCO' if args.weights_from_cache else 'random'}"
    )
    print("| detector | ms per 1280x720 frame (median) | frames/s |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.0f} | {1 / median:.2f} |")


if __name__ == "__main__":
    main()
