"""What each speed knob gives CLNet-ResNet-50 and SimpleBaseline-ResNet-50 at batch 1, 256x256, K=16.

    python benchmarks/bench_speed_modes.py --threads 2

For every mode the two models are timed interleaved in one `run_bench` call, which also measures the
machine's limit (a 3x3 conv 256->256, 32x32, batch 8, channels_last) in that mode's precision. Prints a
markdown table: FPS of each model, the CLNet/SimpleBaseline ratio, CLNet's speed-up over plain eager fp32,
and the fraction of the limit CLNet reaches.
"""

from __future__ import annotations

import argparse

import torch

from clpose.speed.bench import BenchSettings, run_bench

MODES = [  # explicit precisions: the table shows what each knob gives, whatever `auto` picks on this machine
    ("eager fp32, autograd recording", dict(amp="off", inference_mode=False)),
    ("eager fp32, inference_mode", dict(amp="off")),
    ("+ channels_last", dict(amp="off", channels_last=True)),
    ("bf16 autocast", dict(amp="bf16")),
    ("bf16 autocast + channels_last", dict(amp="bf16", channels_last=True)),
    ("compile (inductor, freezing)", dict(amp="off", compile=True)),
    ("compile + channels_last", dict(amp="off", compile=True, channels_last=True)),
    ("compile + bf16 + channels_last", dict(compile=True, amp="bf16", channels_last=True)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["clnet_resnet50", "simplebaseline_resnet50"]
    print(
        "| mode | CLNet-R50 FPS | SimpleBaseline-R50 FPS | CLNet / SB | CLNet vs plain eager | limit GFLOP/s "
        "| CLNet % of limit |"
    )
    print("|---|---|---|---|---|---|---|")
    base = None
    for label, knobs in MODES:
        settings = BenchSettings(
            input_hw=(256, 256), num_keypoints=16, batches=[1], device=args.device, runs=args.runs, **knobs
        )
        report = run_bench(names, settings, show_progress=False)
        cl, sb = report.results
        base = base or cl.fps
        print(
            f"| {label} | {cl.fps:.1f} | {sb.fps:.1f} | {cl.fps / sb.fps:.2f} | {cl.fps / base:.2f} | "
            f"{report.limit_gflops:.0f} ({settings.precision.name}) | {100 * cl.limit_fraction:.0f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
