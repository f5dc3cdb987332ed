"""Codec benchmark: composite decode time, and the round-trip error of every codec.

    python benchmarks/bench_codec.py --threads 2

Prints markdown tables (the ones in docs/benchmarks.md). Timing: warm-up, then the median of many runs.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.models import build_model


def time_ms(fn, runs: int, warmup: int = 20) -> tuple[float, float]:
    """Median and 90th percentile of `runs` calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[math.ceil(0.9 * len(samples)) - 1]


def decode_timing(runs: int) -> list[str]:
    """Decode of N=128 people, K=17, 16x12 maps (256x192 input at stride 16), from realistic maps."""
    codec = CompositeCodec((256, 192), stride=16)
    rng = np.random.default_rng(0)
    heat, off = [], []
    for _ in range(128):
        t = codec.encode(rng.uniform([0, 0], [192, 256], size=(17, 2)), np.ones(17))
        heat.append(t["heatmaps"])
        off.append(t["offsets"])
    heatmaps = torch.from_numpy(np.stack(heat)) + 0.05 * torch.randn(128, 17, 16, 12)
    offsets = torch.from_numpy(np.stack(off))
    rows = [
        "| batch | maps | decode median ms | decode p90 ms | CLNet-ResNet-18 forward median ms |",
        "|---|---|---|---|---|",
    ]
    model = build_model("clnet_resnet18", 17).eval()
    with torch.inference_mode():
        for n in (1, 32, 128):
            med, p90 = time_ms(lambda n=n: codec.decode(heatmaps[:n], offsets[:n]), runs)
            images = torch.randn(n, 3, 256, 192)
            forward, _ = time_ms(lambda x=images: model(x), runs=max(3, 60 // n), warmup=2)
            rows.append(f"| {n} | 17 x 16 x 12 | {med:.3f} | {p90:.3f} | {forward:.1f} |")
    return rows


def round_trip_errors(num: int) -> list[str]:
    """Decode(encode(g)) - g over `num` keypoints uniform in a 256x192 crop (and in its interior)."""
    rng = np.random.default_rng(1)
    width, height = 192, 256
    kpts = rng.uniform([0, 0], [width, height], size=(num, 2))
    interior = (kpts[:, 0] >= 28) & (kpts[:, 0] < width - 28) & (kpts[:, 1] >= 28) & (kpts[:, 1] < height - 28)
    codecs: list[tuple[str, object]] = [
        (f"composite S={s}, sigma=16 px", CompositeCodec((height, width), stride=s)) for s in (4, 8, 16, 32)
    ]
    codecs += [
        ("heatmap S=4, sigma=2 (argmax + quarter)", HeatmapCodec((height, width), 4, 2.0, dark=False)),
        ("heatmap S=4, sigma=2, DARK", HeatmapCodec((height, width), 4, 2.0, dark=True)),
    ]
    rows = [
        "| codec | maps (H'xW') | mean px | max px | interior mean px | interior max px |",
        "|---|---|---|---|---|---|",
    ]
    for name, codec in codecs:
        decoded = []
        for chunk in np.array_split(kpts, max(1, num // 100)):
            t = codec.encode(chunk, np.ones(len(chunk)))
            maps = [torch.from_numpy(t["heatmaps"])[None]]
            if "offsets" in t:
                maps.append(torch.from_numpy(t["offsets"])[None])
            decoded.append(codec.decode(*maps)[0][0].numpy())
        err = np.linalg.norm(np.concatenate(decoded) - kpts, axis=1)
        hp, wp = codec.heatmap_hw
        rows.append(
            f"| {name} | {hp}x{wp} | {err.mean():.2e} | {err.max():.2e} | "
            f"{err[interior].mean():.2e} | {err[interior].max():.2e} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--keypoints", type=int, default=10000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    print("\nComposite decode (CPU):\n")
    print("\n".join(decode_timing(args.runs)))
    print(
        f"\nRound-trip error over {args.keypoints} keypoints in a 256x192 crop (interior: >= 28 px from the border):\n"
    )
    print("\n".join(round_trip_errors(args.keypoints)))


if __name__ == "__main__":
    main()
