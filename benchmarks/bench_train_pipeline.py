"""Training throughput with the CPU and the GPU data pipeline (data.pipeline: cpu | gpu), same recipe, same run.

    python benchmarks/bench_train_pipeline.py --device cuda --amp fp16 --batch 128 --workers 14     # a GPU
    python benchmarks/bench_train_pipeline.py --device cpu --model clnet_resnet18 --input-size 128x96 \
        --batch 16 --workers 1 --steps 6 --warmup 2                                                 # a smoke run

640x480 JPEGs (quality 90, COCO-sized: the real COCO sample photos resized when ../shared is beside the
checkout, synthetic scenes otherwise) with COCO people repeated to --people samples, the paper's COCO
augmentation, CLNet-ResNet-50 at 256x192 by default. Each pipeline is measured --rounds times, alternating;
medians of samples/s (each a median over --steps synchronised steps after --warmup) and of the data-wait share.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from bench_data import make_records

from clpose.config import AMP_CHOICES
from clpose.data.records import records_path, save_records
from clpose.recipes import recipe_from_dict
from clpose.speed.training import measure_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="clnet_resnet50")
    parser.add_argument("--input-size", default="256x192")
    parser.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--people", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelines", nargs="+", default=["cpu", "gpu"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records, source = make_records(folder)
        repeat = -(-args.people // len(records))
        records = records.subset([i % len(records) for i in range(len(records) * repeat)][: args.people])
        for split in ("train", "valid"):
            records.split = split
            save_records(records_path(folder, split), records)
        results: dict[str, list] = {p: [] for p in args.pipelines}
        for _ in range(args.rounds):
            for pipeline in args.pipelines:
                recipe = recipe_from_dict(
                    {
                        "model": {"name": args.model, "pretrained": None},
                        "data": {
                            "dataset": "coco",
                            "root": str(folder),
                            "input_size": args.input_size,
                            "num_workers": args.workers,
                            "pipeline": pipeline,
                            "augment": {"scale_factor": 0.35, "rotation_factor": 45, "half_body_prob": 0.3},
                        },
                        "train": {"batch_size": args.batch, "amp": args.amp, "channels_last": args.device != "cpu"},
                    },
                    name="bench",
                )
                results[pipeline].append(measure_training(recipe, args.device, args.steps, args.warmup))
        device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
        print(
            f"{args.model} {args.input_size}, batch {args.batch}, {args.workers} workers, amp {args.amp}, "
            f"{device}; {len(records)} people on 640x480 JPEGs ({source}); medians of {args.rounds} rounds"
        )
        print("| pipeline | samples/s | data wait |")
        print("|---|---|---|")
        for pipeline, runs in results.items():
            rate = statistics.median(r.samples_per_s for r in runs)
            wait = statistics.median(r.data_wait for r in runs)
            print(f"| {pipeline} | {rate:.0f} | {100 * wait:.0f}% |")


if __name__ == "__main__":
    main()
