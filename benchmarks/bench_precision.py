"""What bf16 costs or gains on this CPU, and what `amp: auto` chooses here.

    python benchmarks/bench_precision.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_precision.py   # as on an AVX2 CPU

Times training steps (forward, loss, backward, Adam step) of CLNet-ResNet-18 and -10 at 128x128, batch 32,
channels_last, on random inputs, in fp32 and in bf16 autocast, interleaved run by run (medians of --rounds), and
prints the CPU's model and flags, what clpose.precision reads (the CPU's flags, oneDNN's answer, the probe) and
what `auto` resolves to. On an AMX Xeon the cap turns bf16 from 1.8x faster than fp32 into 12x slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from machine import cpu_description

from clpose.models import build_model
from clpose.precision import FP32, Precision, cpu_bf16_flags, onednn_bf16, resolve_precision


def bf16_speedup(runs: int = 5) -> float:
    """fp32 time / bf16 time of one 3x3 convolution (64 -> 64 channels, 28x28, batch 4, channels_last,
    inference): above 1 where bf16 is native, about 0.1 where it is emulated. A few milliseconds. A diagnostic of this
    benchmark only: `amp: auto` never times (under load the ratio is noise)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 28, 28).contiguous(memory_format=torch.channels_last)
    times: dict[str, float] = {}
    with torch.inference_mode():
        for name in ("fp32", "bf16"):
            ctx = Precision(name, name, "probe")
            with ctx.autocast("cpu"):
                for _ in range(2):  # the first call creates oneDNN's kernel
                    conv(x)
                samples = []
                for _ in range(runs):
                    start = time.perf_counter()
                    conv(x)
                    samples.append(time.perf_counter() - start)
            times[name] = statistics.median(samples)
    return times["fp32"] / times["bf16"]


def step_time(model: torch.nn.Module, optimizer, x: torch.Tensor, precision: Precision) -> float:
    start = time.perf_counter()
    with precision.autocast("cpu"):
        out = model(x)
    loss = out.float().square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", default="clnet_resnet18,clnet_resnet10")
    args = parser.parse_args()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    print(f"CPU: {cpu_description()}; {torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"oneDNN cap ONEDNN_MAX_CPU_ISA={cap}, ATen capability {torch.backends.cpu.get_cpu_capability()}")
    print(
        f"CPU flags for bf16: {cpu_bf16_flags() or 'none'}; oneDNN bf16 kernels: {onednn_bf16()}; "
        f"probe: bf16 {bf16_speedup():.2f}x the speed of fp32"
    )
    print(f"auto resolves to: {resolve_precision('auto', 'cpu').describe()}")
    bf16 = Precision("bf16", "bf16", "benchmark")
    print("| model | fp32 samples/s | bf16 samples/s | bf16 / fp32 |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build_model(name, 16).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.randn(args.batch, 3, 128, 128).contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for precision in (FP32, bf16, FP32, bf16):  # warm-up: oneDNN creates its kernels on the first calls
            step_time(model, optimizer, x, precision)
        for _ in range(args.rounds):
            for precision in (FP32, bf16):
                times[precision.name].append(step_time(model, optimizer, x, precision))
        fp32, half = (args.batch / statistics.median(times[k]) for k in ("fp32", "bf16"))
        print(f"| {name} | {fp32:.1f} | {half:.1f} | {half / fp32:.2f} |", flush=True)


if __name__ == "__main__":
    main()
