"""Parameters and MACs of every model at the paper's settings, next to the paper's numbers.

    python benchmarks/bench_sizes.py

Counted with torch.utils.flop_counter on the meta device (no weights initialised). MACs are MACs;
FLOPs = 2 x MACs. The paper's "GFLOPs" columns are MAC counts for the CLNets (see docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from clpose.models import build_model

# (model, options, K, input HxW, paper params M or None, paper "GFLOPs" or None, where)
ROWS = [
    ("clnet_resnet50", {}, 17, (256, 192), 13.5, 4.2, "Table 1"),
    ("clnet_resnet50", {}, 16, (256, 256), 13.5, 5.6, "Table 3"),
    ("clnet_resnet50", {}, 17, (384, 288), None, 9.5, "Table 1"),
    ("clnet_resnet101", {}, 17, (384, 288), None, 17.7, "Table 1"),
    ("clnet_resnet152", {}, 17, (384, 288), None, 25.9, "Table 1"),
    ("clnet_hourglass", {}, 17, (256, 192), None, 26.5, "Table 1"),
    ("clnet_hourglass", {}, 17, (384, 256), None, 52.9, "Table 1"),
    ("simplebaseline_resnet50", {}, 17, (256, 192), None, 8.9, "Table 1"),
    ("simplebaseline_resnet152", {}, 17, (384, 288), None, 35.6, "Table 1"),
    ("simplebaseline_resnet152", {}, 16, (256, 256), 69, 23, "Table 3"),
    ("hourglass", {}, 17, (256, 192), None, 14.3, "Table 1"),
    ("hourglass", {}, 16, (256, 256), 26, 55, "Table 3"),
    ("clnet_resnet50", {"stride": 4}, 14, (256, 256), 16.8, None, "Table 5"),
    ("clnet_resnet50", {"stride": 8}, 14, (256, 256), 15.7, None, "Table 5"),
    ("clnet_resnet50", {"stride": 16}, 14, (256, 256), 13.4, None, "Table 5"),
    ("clnet_resnet50", {"stride": 32}, 14, (256, 256), 28.9, None, "Table 5"),
    ("clnet_resnet18", {}, 16, (256, 256), None, None, "Fig. 4(a)"),
    ("clnet_resnet34", {}, 16, (256, 256), None, None, "Fig. 4(a)"),
    ("simplebaseline_resnet18", {}, 16, (256, 256), None, None, "Fig. 4(a)"),
    ("clnet_resnet10", {}, 16, (128, 128), None, None, "clpose demo"),
    ("clnet_resnet10", {}, 17, (256, 192), None, None, "CPU models"),
    ("clnet_regnet_x_400mf", {}, 17, (256, 192), None, None, "CPU models"),
    ("clnet_shufflenet_v2_x1_0", {}, 17, (256, 192), None, None, "CPU models"),
    ("clnet_mobilenet_v3_large", {}, 17, (256, 192), None, None, "CPU models"),
    ("clnet_resnet18", {}, 17, (256, 192), None, None, "CPU models"),
]


def count(name: str, options: dict, k: int, hw: tuple[int, int]) -> tuple[float, float, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(name, k, **options).eval()
        x = torch.zeros(1, 3, *hw)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    out = out[-1] if isinstance(out, list) else out
    return sum(p.numel() for p in model.parameters()) / 1e6, counter.get_total_flops() / 2e9, tuple(out.shape[1:])


def main() -> None:
    print("| where | model | options | K | input | maps | params M (paper) | GMACs (paper's GFLOPs) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, options, k, hw, paper_p, paper_g, where in ROWS:
        params, macs, shape = count(name, options, k, hw)
        opts = ", ".join(f"{a}={b}" for a, b in options.items()) or "-"
        pp = f" ({paper_p})" if paper_p is not None else ""
        pg = f" ({paper_g})" if paper_g is not None else ""
        maps = f"{shape[0]}x{shape[1]}x{shape[2]}"
        print(f"| {where} | {name} | {opts} | {k} | {hw[0]}x{hw[1]} | {maps} | {params:.2f}{pp} | {macs:.2f}{pg} |")


if __name__ == "__main__":
    main()
