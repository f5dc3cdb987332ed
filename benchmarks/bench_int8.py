"""INT8 against fp32: accuracy of briefly trained networks, and the speed of `clpose infer` and of the networks.

    python benchmarks/bench_int8.py accuracy --work runs/int8      # trains (once), then fp32 vs int8 tables
    python benchmarks/bench_int8.py speed --work runs/int8 --rounds 3

`accuracy` trains CLNet-ResNet-18, CLNet-ResNet-50 and SimpleBaseline-ResNet-50 briefly with the demo's recipe (128x128
crops, 3 epochs of 4000 synthetic people: 10-30 minutes each on 2 cores; before 2026-12-07 it was 4 epochs of 1200
people at a constant lr, which left networks at PCK 6-19, too poor to say anything of int8) on the synthetic set and
on ../shared/realdata's COCO people (its 12 people are
both the training and the validation split: a network that has seen them, which is what int8 must not spoil; there the
recipe takes Adam at 1e-3, batch 4 and 300 epochs, since at 4e-3 and one step of 8 per epoch the ResNet-50s learnt
nothing in 500 epochs), then
scores each on its validation split in fp32 (torch, no flip test) and through its int8 graph, quantised by NNCF as
`--int8` does, on every rung of its ladder (clpose.engine.int8.LADDER: all int8; the layers that write the maps kept
in float; also smoothed, SmoothQuant with the residual additions in float), whichever passes. It prints a markdown
table and JSON.

`speed` times `clpose infer` on a 1280x720 synthetic clip with one box per frame (the annotated video written),
CLNet-ResNet-50 256x192 in OpenVINO fp32 (`--amp off`), bf16 (where the CPU runs it natively: `auto` picks it there)
and int8, alternating, `--rounds` times each (medians), then batch-1 FPS of CLNet-ResNet-50 and
SimpleBaseline-ResNet-50 by `clpose bench --int8` (with `--amp off`, and `--amp bf16` where native). Run it on a
quiet machine; the CPU is named.

`rungs` times what each rung of the int8 ladder costs: batch-1 frames/s of speed's network in OpenVINO, fp32 and the
int8 graph of every rung, in OpenVINO and ONNX Runtime, alternating (`python benchmarks/bench_int8.py rungs --work
runs/int8 --rounds 7`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
NETWORKS = ["clnet_resnet18", "clnet_resnet50", "simplebaseline_resnet50"]
# clpose.engine.int8.LADDER's rungs, as accuracy.json's keys and the table's words
RUNG_KEYS = ["int8", "int8_float_head", "int8_smoothed"]
RUNG_NAMES = ["all int8", "head in float", "smoothed, head in float"]


def cpu_name() -> str:
    from clpose.precision import cpu_int8_flags

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")  # fmt: skip
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
                .split(":", 1)[1].split())  # fmt: skip
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16") if f in flags]
    return f"{model} ({', '.join(shown)}; torch sees int8: {', '.join(cpu_int8_flags()) or 'no VNNI or AMX'})"


SYNTHETIC_TRAIN, SYNTHETIC_VAL = 4000, 300
SYNTHETIC_EPOCHS = 3  # 12000 samples: the demo's recipe reaches PCK@0.2 ~90 with ResNet-10 in 32000
# ../shared/realdata's 12 people, both splits: 3 steps of 4 per epoch at Adam 1e-3 take the ResNet-50s to OKS AP 80+
# in 120-240 epochs (at 4e-3 and one step of 8, CLNet-R50 was at AP 0.9 after 500 epochs and SimpleBaseline-R50 at
# 0.0 after 130)
COCO_EPOCHS, COCO_BATCH, COCO_LR = 300, 4, 1e-3
SPEED_PEOPLE = 1200  # the speed's 256x192 network: one epoch of these (its weights only have to follow a figure)


def prepare(work: Path, datasets: list[str] | None = None) -> dict[str, Path]:
    from clpose.data.prepare import run_prepare

    roots = {"synthetic": work / "data" / "synthetic", "coco": work / "data" / "coco"}
    roots = {k: v for k, v in roots.items() if not datasets or k in datasets}
    if "synthetic" in roots and not (roots["synthetic"] / "train.json").is_file():
        run_prepare("synthetic", roots["synthetic"], roots["synthetic"],
                    synthetic={"train": SYNTHETIC_TRAIN, "val": SYNTHETIC_VAL, "size": 256, "workers": 2},
                    show=False)  # fmt: skip
    if "coco" in roots and REALDATA.is_dir() and not (roots["coco"] / "val.json").is_file():
        run_prepare("coco", REALDATA / "coco", roots["coco"], ["val=test_coco.json"], ["."], show=False)
    return {k: v for k, v in roots.items() if (v / ("train.json" if k == "synthetic" else "val.json")).is_file()}


def recipe_text(model: str, dataset: str, root: Path, size: str = "128x128", epochs: int | None = None,
                train_limit: int | None = None) -> str:  # fmt: skip
    """The demo's recipe (recipes/synthetic_resnet10.yaml: its codec, loss, optimiser, schedule and augmentation)
    with another network; SimpleBaseline with the heatmap codec (sigma 2 at 128 px crops) and its MSE loss."""
    coco = dataset == "coco"
    splits = "train_split: val, val_split: val, " if coco else ""
    epochs = epochs or (COCO_EPOCHS if coco else SYNTHETIC_EPOCHS)
    batch = COCO_BATCH if coco else 16  # 12 people make no batch of 16 (training drops the last, short batch)
    lr = COCO_LR if coco else 4e-3  # the demo's 4e-3 on the synthetic set
    every = ", val_every: 20" if coco else ""  # validating 12 people each epoch would take as long as training
    limit = f"train_limit: {train_limit}, " if train_limit else ""
    if model.startswith("simplebaseline"):
        codec, loss = "{name: heatmap, sigma: 2.0}", "{name: heatmap_mse}"
    else:
        codec, loss = "{name: composite, sigma: 16.0, tau: 0.6}", "{name: composite, w_h: 5.0, w_o: 2.0, region: union}"
    return (
        f"model: {{name: {model}}}\ncodec: {codec}\nloss: {loss}\n"
        f"data: {{dataset: {dataset}, root: {root}, input_size: {size}, {splits}{limit}num_workers: 1, "
        "augment: {rotation_factor: 0.0, scale_factor: 0.0}}\n"
        f"train: {{epochs: {epochs}, batch_size: {batch}, optimizer: adam, lr: {lr:g}, schedule: cosine, "
        f"warmup_epochs: 0.5, amp: off{every}}}\n"
        "eval: {batch_size: 16, flip: false}\n"
    )


def train(work: Path, model: str, dataset: str, root: Path, size: str = "128x128", epochs: int | None = None,
          train_limit: int | None = None) -> Path:  # fmt: skip
    from clpose.recipes import load_recipe
    from clpose.training.loop import fit

    run = work / "runs" / f"{dataset}-{model}-{size}"
    if (run / "best.pt").is_file():
        return run / "best.pt"
    recipe = work / f"{dataset}-{model}-{size}.yaml"
    recipe.write_text(recipe_text(model, dataset, root, size, epochs, train_limit))
    start = time.perf_counter()
    fit(load_recipe(recipe), out=run, device="cpu", show_progress=False)
    print(f"trained {model} on {dataset} in {time.perf_counter() - start:.0f} s", flush=True)
    return run / "best.pt"


def accuracy(
    work: Path, datasets: list[str] | None = None, networks: list[str] | None = None, alphas: list[float] | None = None
) -> list[dict]:
    import torch

    from clpose.data import dataset_from_records, load_split
    from clpose.engine.calibration import records_calibration
    from clpose.engine.graph_cache import cached_graph
    from clpose.engine.int8 import CALIBRATION_CROPS, LADDER, CheckSet, Rung, quantize_graph, run_check
    from clpose.engine.posemodel import PoseModel
    from clpose.engine.runtimes import graph_runner
    from clpose.evaluation.metrics import ScoreOptions, dataset_metric
    from clpose.precision import int8_precision

    torch.set_num_threads(2)
    rows = []
    for dataset, root in prepare(work, datasets).items():
        for model in networks or NETWORKS:
            checkpoint = train(work, model, dataset, root)
            pose = PoseModel.from_checkpoint(checkpoint, amp="off")
            recipe = pose.recipe
            crops, _ = records_calibration(recipe, pose, CALIBRATION_CROPS).make()
            records = load_split(recipe, recipe.data.val_split)  # every validation person
            check_set = CheckSet(f"{len(records)} people of {recipe.data.val_split}",
                                 dataset_from_records(recipe, records, False, pose.codec),
                                 dataset_metric(recipe.data.dataset, recipe.eval.metric),
                                 ScoreOptions(recipe.eval.alpha, eval_cfg=recipe.eval))  # fmt: skip
            fp32 = cached_graph(checkpoint, pose)
            row = {"dataset": dataset, "model": model, "calibration_crops": len(crops)}
            for rung, key in zip(LADDER, RUNG_KEYS, strict=True):  # every rung, also past the first within
                out = work / "int8" / f"{dataset}-{model}-{key}.onnx"
                out.parent.mkdir(parents=True, exist_ok=True)
                quantize_graph(fp32, crops, out, rung)
                runner = graph_runner("openvino", out, 2, int8_precision())
                check = run_check(pose, runner, check_set, rung)
                row.update({"metric": check.metric, "fp32": check.fp32, key: check.int8,
                            f"{key}_p95_px": check.displacement_px["p95"], f"{key}_passed": check.passed})  # fmt: skip
            for alpha in alphas or []:  # the last rung at other SmoothQuant alphas (how SMOOTHING was chosen)
                out = work / "int8" / f"{dataset}-{model}-smoothed-{alpha:g}.onnx"
                rung = Rung(head_in_float=True, smoothing=alpha)
                quantize_graph(fp32, crops, out, rung)
                check = run_check(pose, graph_runner("openvino", out, 2, int8_precision()), check_set, rung)
                row.setdefault("smoothing_sweep", {})[f"{alpha:g}"] = {
                    "int8": check.int8, "p95_px": check.displacement_px["p95"], "passed": check.passed}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | network | metric | fp32 | int8 | head in float | smoothed, head in float | p95 px (each rung) "
        "| used (first within the budget) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        used = next((name for key, name in zip(RUNG_KEYS, RUNG_NAMES, strict=True) if r[f"{key}_passed"]), "refused")
        p95 = " / ".join(f"{r[f'{key}_p95_px']:.2f}" for key in RUNG_KEYS)
        scores = " | ".join(f"{r[key]:.2f}" for key in RUNG_KEYS)
        lines.append(f"| {r['dataset']} | {r['model']} | {r['metric']} | {r['fp32']:.2f} | {scores} | {p95} | {used} |")
    return "\n".join(lines)


def _fps(output: str) -> float:
    match = re.search(r"frames, \d+ people, ([\d.]+) frames/s", output)
    if match is None:
        raise SystemExit(f"no frames/s in:\n{output}")
    return float(match.group(1))


def speed(work: Path, rounds: int) -> dict:
    from clpose.data.prepare.synthetic import write_video

    # the paper's COCO crop; one epoch: the speed is measured, and its int8 graph must pass its check
    root = prepare(work, ["synthetic"])["synthetic"]
    checkpoint = train(work, "clnet_resnet50", "synthetic", root, "256x192", epochs=1, train_limit=SPEED_PEOPLE)
    clip = work / "clip720.mp4"
    if not clip.is_file():
        write_video(clip, frames=150, seed=3, width=1280, height=720, people=1)
    base = [sys.executable, "-m", "clpose", "infer", str(clip), "--checkpoint", str(checkpoint),
            "--boxes", str(clip.with_suffix(".boxes.json")), "--runtime", "openvino", "--threads", "2",
            "--out", str(work / "annotated.mp4")]  # fmt: skip
    subprocess.run([*base, "--int8"], check=True, capture_output=True)  # the int8 graph, made once
    # fp32 is the baseline: `--amp off`, since `auto` runs bf16 where the CPU has it natively (then a row too)
    modes = {"fp32": ["--amp", "off"], "int8": ["--int8"]}
    if native_bf16():
        modes = {"fp32": ["--amp", "off"], "bf16": ["--amp", "bf16"], "int8": ["--int8"]}
    fps: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, extra in modes.items():
            done = subprocess.run([*base, *extra], check=True, capture_output=True, text=True)
            fps[name].append(_fps(done.stdout))
    medians = {k: statistics.median(v) for k, v in fps.items()}
    benches = {}
    for amp in ["off", "bf16"] if native_bf16() else ["off"]:
        out = work / f"bench-{amp}.json"
        done = subprocess.run(
            [sys.executable, "-m", "clpose", "bench", "--model", "clnet_resnet50", "--model",
             "simplebaseline_resnet50", "--input-size", "256x192", "--batch", "1", "--fps", "--int8", "--amp", amp,
             "--runtime", "openvino", "--threads", "2", "--runs", "30", "--json", str(out)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        benches[amp] = {"rows": json.loads(out.read_text()), "output": done.stdout[-3000:]}
    return {"cpu": cpu_name(), "infer_fps": fps, "infer_median": medians,
            "infer_ratio": {k: medians["int8"] / v for k, v in medians.items() if k != "int8"},
            "bench": benches}  # fmt: skip


def rung_speed(work: Path, rounds: int) -> dict:
    """Batch-1 frames/s of speed's CLNet-ResNet-50 256x192 network in OpenVINO and ONNX Runtime: fp32 and the int8
    graph of each rung of the ladder (each made here whether or not an earlier rung passes), alternating, `rounds` x
    30 calls each."""
    import torch

    from clpose.engine.calibration import records_calibration
    from clpose.engine.graph_cache import cached_graph
    from clpose.engine.int8 import LADDER, quantize_graph
    from clpose.engine.posemodel import PoseModel
    from clpose.engine.runtimes import graph_runner
    from clpose.precision import Precision, int8_precision

    torch.set_num_threads(2)
    root = prepare(work, ["synthetic"])["synthetic"]
    checkpoint = train(work, "clnet_resnet50", "synthetic", root, "256x192", epochs=1, train_limit=SPEED_PEOPLE)
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    crops, _ = records_calibration(pose.recipe, pose, 100).make()
    fp32 = cached_graph(checkpoint, pose)
    graphs = {"fp32": fp32}
    for rung, key in zip(LADDER, RUNG_KEYS, strict=True):
        graphs[key] = work / "int8" / f"speed-{key}.onnx"
        graphs[key].parent.mkdir(parents=True, exist_ok=True)
        quantize_graph(fp32, crops, graphs[key], rung)
    runners = {}
    for runtime in ("openvino", "onnxruntime"):
        for key, graph in graphs.items():
            precision = Precision("fp32", "off", "fp32 baseline") if key == "fp32" else int8_precision()
            runners[f"{runtime} {key}"] = graph_runner(runtime, graph, 2, precision)
    x = crops[:1]
    for run in runners.values():
        for _ in range(5):
            run(x)  # compiled and warm
    fps: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            start = time.perf_counter()
            for _ in range(30):
                run(x)
            fps[key].append(30 / (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in fps.items()}
    return {"cpu": cpu_name(), "fps": fps, "median": medians,
            "ratio_to_fp32": {k: v / medians[f"{k.split()[0]} fp32"] for k, v in medians.items()}}  # fmt: skip


def native_bf16() -> bool:
    from clpose.precision import cpu_native_bf16

    return cpu_native_bf16()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["accuracy", "speed", "rungs"])
    parser.add_argument("--work", type=Path, default=Path("runs/int8"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", default="", help="accuracy: a comma-separated subset of synthetic, coco")
    parser.add_argument("--networks", default="", help=f"accuracy: a comma-separated subset of {', '.join(NETWORKS)}")
    parser.add_argument("--alphas", default="", help="accuracy: the last rung at more SmoothQuant alphas: 0.5,0.7")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}", flush=True)
    if args.what == "accuracy":
        datasets, networks = [d for d in args.datasets.split(",") if d], [n for n in args.networks.split(",") if n]
        rows = accuracy(args.work, datasets, networks, [float(a) for a in args.alphas.split(",") if a])
        (args.work / "accuracy.json").write_text(json.dumps(rows, indent=2))
        print(markdown(rows))
    elif args.what == "rungs":
        result = rung_speed(args.work, args.rounds)
        (args.work / "rungs.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    else:
        result = speed(args.work, args.rounds)
        (args.work / "speed.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k != "bench"}, indent=2))
        for bench in result["bench"].values():
            print(bench["output"])


if __name__ == "__main__":
    main()
