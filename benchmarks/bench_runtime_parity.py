"""How far each runtime's scores and keypoints are from torch fp32: `clpose eval RUN --runtime X --amp A` on one
trained run, the PCK and the keypoints it saves compared with torch fp32's.

    python benchmarks/bench_runtime_parity.py [--epochs 3] [--images 2000] [--val 200]

The run: `clpose demo`'s recipe (recipes/synthetic_resnet10.yaml, CLNet-ResNet-10 at 128x128) trained for a few
epochs on synthetic people, so that PCK is neither 0 nor 100 and the maps have real peaks. Each row runs
`clpose eval` through the CLI, flip test on. bf16 rows need a CPU with native bf16 (otherwise `--amp auto` resolves
to fp32 and the row says so).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from machine import cpu_description
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine.runtimes import installed
from clpose.recipes import load_recipe
from clpose.training.loop import fit


def train(root: Path, epochs: int, images: int, val: int) -> Path:
    """recipes/synthetic_resnet10.yaml (clpose demo's) on `images` rendered figures for `epochs` epochs."""
    synthetic = {"train": images, "val": val, "size": 160, "workers": 1}
    run_prepare("synthetic", root, root, synthetic=synthetic, show=False)
    overrides = [f"data.root={root}", f"train.epochs={epochs}", "train.max_minutes=null"]
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "synthetic_resnet10.yaml", overrides)
    return fit(recipe, out=root / "run", device="cpu", show_progress=False).run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--val", type=int, default=200)
    args = parser.parse_args()
    print(cpu_description())
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = train(folder, args.epochs, args.images, args.val)
        rows = [("torch", "off"), ("torch", "auto"), ("onnxruntime", "auto"), ("openvino", "off"), ("openvino", "auto")]
        results = {}
        for runtime, amp in rows:
            if not installed(runtime):
                continue
            out = folder / f"{runtime}-{amp}"
            cmd = ["eval", str(run), "--runtime", runtime, "--amp", amp, "--json", f"{out}.json",
                   "--save-predictions", f"{out}.npy"]  # fmt: skip
            result = runner.invoke(app, cmd)
            if result.exit_code != 0:
                raise SystemExit(result.output)
            record = json.loads(Path(f"{out}.json").read_text())
            results[runtime, amp] = (record, np.load(f"{out}.npy"))
        ref_record, ref = results["torch", "off"]
        print(f"\nclpose eval RUN --runtime X --amp A (CLNet-ResNet-10 128x128, {args.images} x {args.epochs} epochs, "
              f"{args.val} synthetic val people, flip test)")  # fmt: skip
        print("| runtime | --amp | precision | PCK Mean | vs torch fp32 | max keypoint diff (px) | median (px) |")
        print("|---|---|---|---|---|---|---|")
        for (runtime, amp), (record, kp) in results.items():
            diff = np.linalg.norm(kp - ref, axis=-1)
            delta = record["Mean"] - ref_record["Mean"]
            print(f"| {runtime} | {amp} | {record['settings']['precision']} | {record['Mean']:.2f} | {delta:+.2f} | "
                  f"{diff.max():.4f} | {np.median(diff):.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
