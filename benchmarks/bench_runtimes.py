"""The runtimes of `--runtime` measured on this CPU: `clpose infer` end to end, batch-1 FPS of CLNet-R50 against
SimpleBaseline-R50 in each runtime, and OpenVINO's per-layer profile of both.

    python benchmarks/bench_runtimes.py                                          # native
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_runtimes.py   # capped (oneDNN, ATen)
    benchmarks/avx2only/run python benchmarks/bench_runtimes.py                  # CPUID masked to AVX2 (everything)

1. `infer`: a synthetic 1280x720 clip of 100 frames with one person box per frame (its boxes file), CLNet-ResNet-50
   at 256x192 with 17 keypoints (freshly initialised: speed does not depend on the weights), annotated video and
   JSON written as `clpose infer --out x.mp4 --json x.json --batch 8` does. Modes: "before" (the torch path of
   clpose before --runtime: eager, the recipe's memory format, amp auto), torch (channels_last, the default now),
   torch --compile, onnxruntime, openvino, and auto (whichever it picks). Rounds interleave the modes; medians.
2. Batch-1 FPS at 256x192, K=17: `clpose bench` rows of both models in every runtime, interleaved (the same
   run_bench call), precision auto, torch with channels_last; then torch compiled.
3. OpenVINO's per-layer times (PERF_COUNT) of both networks at batch 1: where the time goes, by layer type and by
   trunk / head, with each part's MACs and GFLOP/s.
4. torch.compile at batch 1: inductor's C++ wrapper off and on (interleaved), and torch.profiler's view of where the
   compiled networks' time goes (convolutions by input map size).
5. Runtimes sharing one process: CLNet-R50 in each runtime alone, in turns run by run with ONNX Runtime's threads
   spinning, and in turns of blocks with spinning off (what clpose does).
"""

from __future__ import annotations

import argparse
import collections
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import checkpoint
from machine import cpu_description

from clpose.data.prepare.synthetic import write_video
from clpose.engine.onnx_graph import export_onnx
from clpose.engine.posemodel import PoseModel, any_skeleton, model_recipe
from clpose.engine.runtimes import choose_runtime, installed
from clpose.inference.predictor import Predictor
from clpose.inference.run import InferOptions, run_infer
from clpose.precision import resolve_precision
from clpose.speed.bench import BenchSettings, run_bench


def infer_modes(folder: Path, frames: int, rounds: int, threads: int) -> None:
    video = write_video(folder / "clip.mp4", frames, seed=0, width=1280, height=720, people=1)
    boxes = str(video.with_suffix(".boxes.json"))
    path = checkpoint(folder, "clnet_resnet50", channels_last=False, num_keypoints=17, skeleton="coco")
    modes: dict[str, Predictor] = {}
    before = PoseModel.from_checkpoint(path, "cpu", "auto")  # no runtime attached: the path clpose had before
    modes["before (eager torch)"] = Predictor(before)
    plan = [("torch", "torch", False), ("torch --compile", "torch", True), ("onnxruntime", "onnxruntime", False),
            ("openvino", "openvino", False)]  # fmt: skip
    for label, runtime, compile_ in plan:
        if installed(runtime):
            modes[label] = Predictor.from_checkpoint(path, "cpu", False, "auto", runtime, threads, compile_)
            print(f"{label}: {modes[label].runtime.describe()}")
    auto = choose_runtime("auto", "cpu").name
    options = InferOptions(boxes=boxes, out=folder / "out.mp4", json_out=folder / "out.json", batch=8)
    for predictor in modes.values():  # warm-up: compilation, first calls
        run_infer(str(video), predictor, InferOptions(boxes=boxes, batch=8), show_progress=False)
    fps: dict[str, list[float]] = {label: [] for label in modes}
    network: dict[str, list[float]] = {label: [] for label in modes}
    for _ in range(rounds):
        for label, predictor in modes.items():
            report = run_infer(str(video), predictor, options, show_progress=False)
            fps[label].append(report.fps)
            network[label].append(1e3 * report.seconds["network"] / report.frames)
    base = statistics.median(fps["before (eager torch)"])
    print(f"\n`clpose infer`, 1280x720, {frames} frames, one box per frame, CLNet-R50 256x192 K=17, batch 8, "
          f"{threads} threads, medians of {rounds} interleaved rounds; auto picks {auto}")  # fmt: skip
    print("| mode | precision | frames/s | network ms/frame | vs before |")
    print("|---|---|---|---|---|")
    for label, predictor in modes.items():
        f = statistics.median(fps[label])
        mark = " (auto)" if label.split()[0] == auto and "compile" not in label else ""
        print(f"| {label}{mark} | {predictor.precision.name} | {f:.1f} | {statistics.median(network[label]):.1f} | "
              f"{f / base:.2f}x |")  # fmt: skip


def fps_table(runs: int) -> None:
    names = ["clnet_resnet50", "simplebaseline_resnet50"]
    runtimes = [r for r in ("torch", "onnxruntime", "openvino") if installed(r)]
    tables = [("channels_last (torch rows)", BenchSettings((256, 192), 17, [1], channels_last=True, runs=runs,
                                                           warmup=5, runtimes=runtimes)),
              ("torch compiled, channels_last", BenchSettings((256, 192), 17, [1], channels_last=True, compile=True,
                                                              runs=runs, warmup=5))]  # fmt: skip
    for title, settings in tables:
        report = run_bench(names, settings, show_progress=False)
        print(f"\nbatch 1, 256x192, K=17, {title}, {runs} interleaved runs, medians")
        print("| runtime | precision | CLNet-R50 FPS | SB-R50 FPS | CLNet / SB | CLNet % of limit |")
        print("|---|---|---|---|---|---|")
        for runtime in settings.runtimes:
            cl, sb = (next(r for r in report.results if r.model == n and r.runtime == runtime) for n in names)
            label = f"{runtime}{' compiled' if settings.compile else ''}"
            print(f"| {label} | {cl.precision} | {cl.fps:.1f} | {sb.fps:.1f} | {cl.fps / sb.fps:.2f} | "
                  f"{100 * cl.limit_fraction:.0f}% |")  # fmt: skip
        for precision, (gflops, source) in report.limits.items():
            print(f"limit {precision}: {gflops:.0f} GFLOP/s ({source})")


def profiles(folder: Path, threads: int, runs: int) -> None:
    import openvino as ov

    precision = resolve_precision("auto", "cpu")
    hint = "bf16" if precision.name == "bf16" else "f32"
    for name in ["clnet_resnet50", "simplebaseline_resnet50"]:
        pose = PoseModel.from_recipe(model_recipe(name, (256, 192)), any_skeleton(17), pretrained=False)
        graph = folder / f"{name}.onnx"
        export_onnx(pose, graph, dynamic_batch=True)
        part_of, part_macs = _parts(graph, name)
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERF_COUNT": "YES"}
        request = ov.Core().compile_model(str(graph), "CPU", config).create_infer_request()
        x = np.random.default_rng(0).standard_normal((1, 3, 256, 192)).astype(np.float32)
        totals: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        parts: dict[str, list[float]] = collections.defaultdict(list)
        for i in range(runs + 3):
            request.infer({0: x})
            if i < 3:
                continue
            by_type: dict[tuple[str, str], float] = collections.Counter()
            by_part: dict[str, float] = collections.Counter()
            for layer in request.get_profiling_info():
                ms = layer.real_time.total_seconds() * 1e3
                by_type[(layer.node_type, layer.exec_type)] += ms
                by_part[part_of.get(layer.node_name, f"other: {layer.node_type}")] += ms
            for key, ms in by_type.items():
                totals[key].append(ms)
            for key, ms in by_part.items():
                parts[key].append(ms)
        total = sum(statistics.median(v) for v in totals.values())
        print(f"\nOpenVINO {hint}, {name}, batch 1, {threads} threads: {total:.2f} ms of layers (median of {runs})")
        print("| layer type | kernel | ms | share |")
        print("|---|---|---|---|")
        for (kind, kernel), values in sorted(totals.items(), key=lambda kv: -statistics.median(kv[1]))[:6]:
            ms = statistics.median(values)
            print(f"| {kind} | {kernel} | {ms:.2f} | {100 * ms / total:.0f}% |")
        print("| part | ms | share | GMACs | GFLOP/s |")
        print("|---|---|---|---|---|")
        for part, values in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
            ms = statistics.median(values)
            gmacs = part_macs.get(part, 0) / 1e9
            rate = f"{2 * gmacs / ms * 1e3:.0f}" if gmacs else ""
            print(f"| {part} | {ms:.2f} | {100 * ms / total:.0f}% | {gmacs:.2f} | {rate} |")


def _parts(graph: Path, model: str) -> tuple[dict[str, str], dict[str, float]]:
    """ONNX node name -> the part of the network it belongs to. The graph lists the convolutions in order: CLNet's
    head is its last 11 (three bottlenecks with 10 convolutions, the 3x3 prediction conv), SimpleBaseline's its three
    transposed convolutions and the 1x1 prediction conv. OpenVINO names the last convolution after the graph's output
    (`maps`). Also each part's MACs at batch 1, from the graph's inferred shapes."""
    import onnx

    model_graph = onnx.shape_inference.infer_shapes(onnx.load(str(graph))).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*model_graph.value_info,
              *model_graph.input, *model_graph.output]}  # fmt: skip
    weights = {i.name: tuple(i.dims) for i in model_graph.initializer}
    nodes = [n for n in model_graph.node if n.op_type in ("Conv", "ConvTranspose")]
    trunk = "trunk convs (stem, layer1-3)" if model.startswith("clnet") else "trunk convs (stem, layer1-4)"
    parts = {"maps": "head: prediction conv"}
    macs: dict[str, float] = collections.Counter()
    for i, node in enumerate(nodes):
        dilated = any(a.name == "dilations" and max(a.ints) > 1 for a in node.attribute)
        if i == len(nodes) - 1:
            parts[node.name] = "head: prediction conv"
        elif model.startswith("clnet") and i >= len(nodes) - 11:
            kind = "1x1" if weights[node.input[1]][2:] == (1, 1) else "3x3 dilated" if dilated else "3x3"
            parts[node.name] = f"head: {kind} convs"
        elif node.op_type == "ConvTranspose":
            parts[node.name] = "head: transposed convs"
        else:
            parts[node.name] = trunk
        # a Conv's weight is (out, in/groups, kh, kw), a ConvTranspose's (in, out/groups, kh, kw): MACs per output
        # (Conv) or per input (ConvTranspose) position, times those positions
        positions = shapes[node.output[0] if node.op_type == "Conv" else node.input[0]][2:]
        macs[parts[node.name]] += math.prod(weights[node.input[1]]) * math.prod(positions)
    return parts, macs


def compiled_profiles(threads: int, runs: int) -> None:
    """torch.compile (freezing) at batch 1: the C++ wrapper off and on, timed interleaved; then where the compiled
    networks' time goes (torch.profiler, per convolution kind and input map size)."""
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    from clpose.speed.timing import time_once

    precision = resolve_precision("auto", "cpu")
    x = torch.randn(1, 3, 256, 192).contiguous(memory_format=torch.channels_last)
    compiled = {}
    with torch.inference_mode(), precision.autocast("cpu"):
        for name in ["clnet_resnet50", "simplebaseline_resnet50"]:
            pose = PoseModel.from_recipe(model_recipe(name, (256, 192)), any_skeleton(17), pretrained=False)
            for wrapper in (False, True):  # a model of its own per setting, compiled (at its first call) under it
                model = copy.deepcopy(pose.model).eval().to(memory_format=torch.channels_last)
                fn = torch.compile(model)
                before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                with inductor_config.patch(freezing=True, cpp_wrapper=wrapper):
                    for _ in range(3):
                        fn(x)
                assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > before, "a compiled graph was reused"
                compiled[name, wrapper] = fn
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    times: dict[tuple[str, bool], list[float]] = collections.defaultdict(list)
    with torch.inference_mode(), precision.autocast("cpu"):
        for _ in range(runs):
            for (name, wrapper), fn in compiled.items():
                with inductor_config.patch(freezing=True, cpp_wrapper=wrapper):
                    times[name, wrapper].append(time_once(lambda f=fn: f(x), torch.device("cpu")))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "a compiled model recompiled while timed"
    print(
        f"\ntorch.compile (freezing), {precision.name}, batch 1, {threads} threads, {runs} interleaved runs, medians "
        f"({graphs} graphs compiled)"
    )
    print("| model | C++ wrapper off FPS | on FPS | on / off |")
    print("|---|---|---|---|")
    for name in ["clnet_resnet50", "simplebaseline_resnet50"]:
        off, on = (1 / statistics.median(times[name, w]) for w in (False, True))
        print(f"| {name} | {off:.1f} | {on:.1f} | {on / off:.2f} |")
    for name in ["clnet_resnet50", "simplebaseline_resnet50"]:
        fn = compiled[name, False]
        recorder = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        frozen = inductor_config.patch(freezing=True, cpp_wrapper=False)
        with torch.inference_mode(), precision.autocast("cpu"), frozen, recorder as prof:
            for _ in range(runs):
                fn(x)
        groups: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
        events = prof.events()
        total = sum(e.cpu_time_total for e in events if e.cpu_parent is None) / runs  # us per forward
        for event in events:  # the outermost convolution op of each call (aten::convolution -> mkldnn -> ...)
            parent = event.cpu_parent
            if "conv" not in event.name or (parent is not None and "conv" in parent.name):
                continue
            shape = event.input_shapes[0] if event.input_shapes and event.input_shapes[0] else []
            size = f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "?"
            weight = event.input_shapes[1] if len(event.input_shapes) > 1 else []
            transposed = "transpose" in event.name or weight[-2:] == [4, 4]  # SimpleBaseline's 4x4 deconvolutions
            key = f"{'transposed conv' if transposed else 'conv'} on {size} maps"
            groups[key][0] += event.cpu_time_total / runs
            groups[key][1] += 1
        rest = total - sum(us for us, _ in groups.values())
        groups["everything else (fused pointwise kernels, pooling, the wrapper)"] = [rest, runs]
        print(f"\ntorch.compile profile, {name}: {total / 1e3:.2f} ms per forward (profiled)")
        print("| ops | calls per forward | ms | mean us per call | share |")
        print("|---|---|---|---|---|")
        for key, (us, calls) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
            per_forward = calls // runs
            print(f"| {key} | {per_forward} | {us / 1e3:.2f} | {us / per_forward:.0f} | {100 * us / total:.0f}% |")


def sharing(folder: Path, threads: int, runs: int) -> None:
    """Runtimes in one process: CLNet-R50 at batch 1 in torch, ONNX Runtime and OpenVINO, each alone, then the three
    in turns run by run with ONNX Runtime's idle threads spinning (its default, and how bench timed them before),
    then in turns of blocks of runs (one untimed run first) with spinning off (clpose's runner and bench now)."""
    import onnxruntime as ort

    from clpose.engine.runners import OnnxRuntimeRunner
    from clpose.engine.runtimes import graph_runner, runtime_precision
    from clpose.speed.timing import time_once

    precision = resolve_precision("auto", "cpu")
    pose = PoseModel.from_recipe(model_recipe("clnet_resnet50", (256, 192)), any_skeleton(17), pretrained=False)
    graph = folder / "sharing.onnx"
    export_onnx(pose, graph, dynamic_batch=True)
    model = pose.model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 256, 192).contiguous(memory_format=torch.channels_last)

    def torch_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), precision.autocast("cpu"):
            return model(x)

    quiet = OnnxRuntimeRunner(graph, threads)
    spinning = OnnxRuntimeRunner(graph, threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")  # ONNX Runtime's default
    spinning.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    openvino = graph_runner("openvino", graph, threads, runtime_precision("openvino", precision))
    fps: dict[str, dict[str, float]] = collections.defaultdict(dict)

    def timed(forwards: dict[str, object], block: int, rounds: int, label: str) -> None:
        times: dict[str, list[float]] = collections.defaultdict(list)
        for forward in forwards.values():
            for _ in range(3):
                forward(x)
        for _ in range(rounds):
            for name, forward in forwards.items():
                forward(x)  # the untimed run that starts a turn
                for _ in range(block):
                    times[name].append(time_once(lambda f=forward: f(x), torch.device("cpu")))
        for name, samples in times.items():
            fps[label][name] = 1 / statistics.median(samples)

    for name, forward in {"torch": torch_forward, "onnxruntime": quiet, "openvino": openvino}.items():
        timed({name: forward}, runs, 1, "alone")
    timed({"torch": torch_forward, "onnxruntime": spinning, "openvino": openvino}, 1, runs, "run by run, spinning")
    timed({"torch": torch_forward, "onnxruntime": quiet, "openvino": openvino}, 4, runs // 4, "blocks, no spinning")
    print(f"\nruntimes in one process: CLNet-R50 batch 1, {precision.name} where native, {threads} threads, FPS")
    print("| timed | torch | onnxruntime | openvino |")
    print("|---|---|---|---|")
    for label, row in fps.items():
        print(f"| {label} | {row['torch']:.1f} | {row['onnxruntime']:.1f} | {row['openvino']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip", nargs="*", default=[], choices=["infer", "fps", "profiles", "compiled", "sharing"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"amp auto here: {resolve_precision('auto', 'cpu').describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        if "infer" not in args.skip:
            infer_modes(Path(tmp), args.frames, args.rounds, args.threads)
        if "fps" not in args.skip:
            fps_table(args.runs)
        if "profiles" not in args.skip and installed("openvino"):
            profiles(Path(tmp), args.threads, args.runs)
        if "compiled" not in args.skip:
            compiled_profiles(args.threads, args.runs)
        if "sharing" not in args.skip and installed("openvino") and installed("onnxruntime"):
            sharing(Path(tmp), args.threads, args.runs)


if __name__ == "__main__":
    main()
