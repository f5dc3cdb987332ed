"""What a network costs and what the machine can do: parameters and MACs, the device's practical peak in a
precision (the "limit" of `clpose bench`'s "% of limit" column), and the largest batch that fits a GPU, searched."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clpose.precision import Precision
from clpose.speed.timing import time_once


def count_macs(model: nn.Module, input_hw: tuple[int, int]) -> tuple[float, float]:
    """(parameters in millions, GMACs at batch 1), counted with torch.utils.flop_counter on the CPU."""
    params = sum(p.numel() for p in model.parameters()) / 1e6
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, *input_hw, device=device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return params, counter.get_total_flops() / 2 / 1e9


def reference_conv_gflops(device: torch.device, precision: Precision, runs: int = 20) -> float:
    """GFLOP/s of one 3x3 conv, 256 -> 256 channels, 32x32, batch 8, channels_last, in `precision`."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).eval().to(memory_format=torch.channels_last)
    x = torch.randn(8, 256, 32, 32, device=device).to(memory_format=torch.channels_last)
    flops = 2 * 8 * 256 * 256 * 9 * 32 * 32
    with torch.inference_mode(), precision.autocast(device):
        for _ in range(5):
            conv(x)
        times = [time_once(lambda: conv(x), device) for _ in range(runs)]
    return flops / statistics.median(times) / 1e9


def reference_matmul_gflops(device: torch.device, precision: Precision, runs: int = 10) -> tuple[float, int]:
    """GFLOP/s of an n x n matrix product in `precision`, n large enough to fill the device: 8192 on a GPU (1.1
    TFLOP, the size at which cuBLAS reaches its peak), 1024 on a CPU (2 GFLOP: a few ms per core); and n."""
    n = 8192 if device.type == "cuda" else 1024
    dtype = precision.dtype or torch.float32  # made in the timed precision: no casts inside the timing
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with torch.inference_mode():
        for _ in range(3):
            a @ b
        times = [time_once(lambda: a @ b, device) for _ in range(runs)]
    return 2 * n**3 / statistics.median(times) / 1e9, n


def reference_limit(device: torch.device, precision: Precision) -> tuple[float, str]:
    """The machine's practical peak in the timed precision: the better of a large matrix product and a large 3x3
    convolution (on a GPU the convolution of a batch of 8 does not fill the card: with it alone a network can read
    above 100% of the limit, docs/benchmarks.md "GPU speed"). `clpose.speed.bench.cap_fractions` keeps every network
    at or below it all the same."""
    matmul, n = reference_matmul_gflops(device, precision)
    conv = reference_conv_gflops(device, precision)
    if matmul >= conv:
        return matmul, f"{n}^3 matrix product"
    return conv, "3x3 conv 256->256, 32x32, batch 8, channels_last"


INT8_CONV = "3x3 conv 256->256, 32x32, batch 8, int8 (NNCF)"


class _ReferenceConv(nn.Module):
    """The reference convolution with its input named as a network's (the exporter's dynamic batch names it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def reference_int8_limit(runtime: str | None, folder: Path, runs: int = 20) -> tuple[float, str]:
    """The int8 limit: GOP/s (2 x int8 MACs per second) of the reference convolution quantised by NNCF and run by
    `runtime` (OpenVINO or ONNX Runtime), which use VNNI or AMX where the CPU has them (clpose.precision
    .cpu_int8_flags says which)."""
    from clpose.engine.int8 import quantize_graph
    from clpose.engine.onnx_graph import write_onnx
    from clpose.engine.runtimes import graph_runner
    from clpose.precision import cpu_int8_flags, int8_precision

    conv = _ReferenceConv().eval()
    x = torch.randn(8, 256, 32, 32)
    fp32, int8 = folder / "reference-conv.onnx", folder / "reference-conv.int8.onnx"
    write_onnx(conv, x, fp32, dynamic_batch=True, with_decode=False, opset=18)
    quantize_graph(fp32, torch.randn(4, 256, 32, 32), int8)
    run = graph_runner(runtime or "openvino", int8, torch.get_num_threads(), int8_precision())
    for _ in range(5):
        run(x)
    times = [time_once(lambda: run(x), torch.device("cpu")) for _ in range(runs)]
    flags = ", ".join(cpu_int8_flags()) or "no VNNI or AMX"
    return 2 * 8 * 256 * 256 * 9 * 32 * 32 / statistics.median(times) / 1e9, f"{INT8_CONV} in {runtime} ({flags})"


def search_max_batch(
    fits: Callable[[int], bool],
    limit: int,
    budget_s: float,
    log: Callable[[str], None],
    name: str = "the model",
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """The largest batch <= limit for which fits(batch) holds, assuming fits is monotone: doubling from 1, then
    bisection. Past `budget_s` the search stops with the largest batch known to fit (and says so)."""
    start = clock()
    log(f"searching the largest batch of {name} that fits (doubling, then bisection; at most {budget_s:g} s)")
    good, batch = 0, 1
    while batch <= limit:
        ok = fits(batch)
        log(f"  {name}: batch {batch} {'fits' if ok else 'does not fit'} ({clock() - start:.0f} s)")
        if not ok:
            break
        good, batch = batch, batch * 2
        if clock() - start > budget_s:
            log(f"  {name}: time bound reached: batch {good} (larger ones were not tried)")
            return good
    bad = min(batch, limit + 1)
    while bad - good > 1 and good > 0:
        if clock() - start > budget_s:
            log(f"  {name}: time bound reached: batch {good} (between {good} and {bad} not tried)")
            return good
        mid = (good + bad) // 2
        ok = fits(mid)
        log(f"  {name}: batch {mid} {'fits' if ok else 'does not fit'} ({clock() - start:.0f} s)")
        good, bad = (mid, bad) if ok else (good, mid)
    log(f"  {name}: largest batch {good}")
    return good
