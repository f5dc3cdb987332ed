"""End-to-end speed of `clpose infer` on a synthetic video with --boxes full, and where the time goes.

    python benchmarks/bench_infer.py --threads 2
    python benchmarks/bench_infer.py --device cuda --size 1280x720 --frames 300 --amp fp16   # a GPU

On CUDA the crops are cut on the GPU (PoseModel.crops_on_device) and the network runs from CUDA graphs unless
--no-cuda-graphs; each stage is synchronised before it is timed.

CLNet-ResNet-18 and -50 at 256x192 (freshly initialised: speed does not depend on the weights; --amp as in
`clpose infer`, default auto; where it resolves to bf16 channels_last is on too, as in the synthetic recipe), a
synthetic 640x360 clip, annotated video and JSON written as `clpose infer --out x.mp4 --json x.json` does. Three
runs per model, medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from clpose import __version__
from clpose.config import AMP_CHOICES, recipe_to_dict
from clpose.data.prepare.synthetic import write_video
from clpose.engine.checkpoint import save_checkpoint
from clpose.engine.posemodel import model_recipe
from clpose.inference.predictor import Predictor
from clpose.inference.run import STAGES, InferOptions, run_infer
from clpose.models import build_model
from clpose.precision import resolve_precision
from clpose.recipes import recipe_from_dict


def checkpoint(
    folder: Path, model: str, channels_last: bool, num_keypoints: int = 16, skeleton: str = "synthetic"
) -> Path:
    """A freshly initialised checkpoint of `model` at 256x192 with its own codec (composite or heatmap)."""
    data = recipe_to_dict(model_recipe(model, (256, 192)))
    data["train"]["channels_last"] = channels_last
    recipe = recipe_from_dict(data, name=model)
    path = folder / f"{model}.pt"
    save_checkpoint(
        path,
        {
            "model": build_model(model, num_keypoints).state_dict(),
            "recipe": recipe_to_dict(recipe),
            "version": __version__,
            "epoch": 0,
            "num_keypoints": num_keypoints,
            "skeleton": skeleton,
        },
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="640x360", help="video frame size WxH")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--models", nargs="+", default=["clnet_resnet18", "clnet_resnet50"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    precision = resolve_precision(args.amp, args.device)
    print(f"precision: {precision.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = write_video(folder / "clip.mp4", args.frames, seed=0, width=width, height=height)
        print(f"{args.size} video, {args.frames} frames, device {args.device}")
        print(f"| model | amp | CUDA graphs | frames/s | {' | '.join(STAGES)} |")
        print("|---|---|---|---|" + "---|" * len(STAGES))
        for model in args.models:
            path = checkpoint(folder, model, channels_last=precision.name in ("bf16", "fp16"))
            predictor = Predictor.from_checkpoint(path, device=args.device, amp=args.amp)
            predictor.pose.use_cuda_graphs(args.cuda_graphs)
            options = InferOptions(out=folder / "out.mp4", json_out=folder / "out.json", batch=8)
            run_infer(str(video), predictor, InferOptions(batch=8), show_progress=False)  # warm-up
            reports = [run_infer(str(video), predictor, options, show_progress=False) for _ in range(args.runs)]
            fps = statistics.median(r.frames / r.total for r in reports)
            shares = {s: statistics.median(100 * r.seconds[s] / r.total for r in reports) for s in STAGES}
            cells = " | ".join(f"{shares[s]:.1f}%" for s in STAGES)
            graphs = "on" if predictor.pose.cuda_graphs else "off"
            print(f"| {model} | {precision.name} | {graphs} | {fps:.1f} | {cells} |")


if __name__ == "__main__":
    main()
