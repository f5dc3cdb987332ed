"""Speed and size of models: parameters, MACs (torch.utils.flop_counter), FPS, latency and decode time.

Timing: warm-up runs and timing synchronised with the device, as timm's benchmark.py does; then, unlike timm (which
averages one model's steps at a time), the models are interleaved run by run and the median of many runs is
reported, so a machine that drifts or is shared favours none of them. Runtimes (--runtime) take turns in blocks of
runs, each block after one untimed run: each keeps its own thread pool, and a pool that has just worked still holds
the cores for a while (turns run by run slowed OpenVINO by almost half: docs/benchmarks.md "Runtimes"). MACs are
reported as MACs; FLOPs = 2 x MACs.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clpose.codecs import Codec
from clpose.config import format_hw
from clpose.console import console, warn
from clpose.data.synthetic import render_sample
from clpose.engine.graphs import GraphedForward, graphs_unavailable
from clpose.engine.int8 import quantize_graph
from clpose.engine.onnx_graph import export_onnx
from clpose.engine.posemodel import PoseModel, any_skeleton, model_recipe
from clpose.engine.runtime_names import RUNTIMES
from clpose.engine.runtimes import choose_runtime, compile_context, graph_runner, parity_check, runtime_precision
from clpose.errors import ClposeError, first_line
from clpose.models import check_input_size, final_output
from clpose.precision import Precision, int8_precision, resolve_precision
from clpose.progress import ProgressBar
from clpose.speed.limits import (
    count_macs,
    reference_int8_limit,
    reference_limit,
    search_max_batch,
)
from clpose.speed.timing import synchronize, time_once


@dataclass
class BenchResult:
    """One row: a model at one batch size. Speed fields are None when only --flops was asked, and so on."""

    model: str
    input_size: str
    batch: int
    runtime: str = "torch"  # clpose.engine.runtimes: torch, onnxruntime or openvino
    params_m: float | None = None
    gmacs: float | None = None
    gflops: float | None = None
    fps: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    decode_ms: float | None = None
    device: str = "cpu"
    precision: str = "fp32"
    precision_reason: str = ""
    precision_native: bool = True  # False: bf16/fp16 emulated by this device (slow)
    channels_last: bool = False
    compiled: bool = False
    cuda_graphs: bool = False
    limit_fraction: float | None = None  # achieved GFLOP/s over the limit's (BenchReport.limit_gflops), <= 1

    def to_json(self) -> dict:
        return asdict(self)


def cap_fractions(rows: list[BenchResult], limit: float, source: str) -> tuple[float, str]:
    """A network that ran faster than the reference problems shows what the device can do: the limit becomes its
    rate, so no row reads above 100% (the rows' fractions are rescaled)."""
    best = max(rows, key=lambda r: r.limit_fraction or 0.0, default=None)
    if best is None or not best.limit_fraction or best.limit_fraction <= 1.0:
        return limit, source
    new_limit = limit * best.limit_fraction
    for row in rows:
        if row.limit_fraction is not None:
            row.limit_fraction *= limit / new_limit
    return new_limit, f"{best.model} at batch {best.batch} (faster than the reference {source})"


@dataclass
class BenchReport:
    results: list[BenchResult]
    limit_gflops: float | None  # the machine's measured peak in torch's precision (Limit), None without --fps
    limit_source: str = ""  # what reached it: the matrix product, the convolution, or a model that beat both
    # every precision the rows ran in (runtimes may run another than torch's) -> (GFLOP/s, source)
    limits: dict[str, tuple[float, str]] = field(default_factory=dict)


@dataclass
class BenchSettings:
    input_hw: tuple[int, int]
    num_keypoints: int
    batches: list[int | str] = field(default_factory=lambda: [1])
    device: str = "cpu"
    amp: str = "auto"  # auto, off, bf16, fp16 (clpose.precision)
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # replay each model from a CUDA graph (with compile: mode "reduce-overhead")
    max_batch_seconds: float = 120.0  # time bound of each `--batch max` search
    fps: bool = True
    flops: bool = True
    runs: int = 30
    warmup: int = 5
    inference_mode: bool = True  # False: a plain forward with autograd recording (the slowest baseline)
    runtimes: list[str] = field(default_factory=lambda: ["torch"])  # each model is timed in each (interleaved)
    int8: bool = False  # also time each model's int8 graph in each graph runtime (clpose.engine.int8)

    @cached_property
    def precision(self) -> Precision:
        """`amp` resolved on the device (resolving a CUDA device needs CUDA: run_bench checks it first)."""
        return resolve_precision(self.amp, self.device)


@contextlib.contextmanager
def _progress(total: int, show: bool) -> Iterator[Callable[[str], None]]:
    with ProgressBar("measuring", total, enabled=show, plain_every=15.0) as bar:
        yield lambda description: bar.update(1, description=description)


def _prepare(model: nn.Module, settings: BenchSettings, device: torch.device, compile_: bool = True) -> nn.Module:
    model = model.to(device).eval()
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile and compile_:  # with CUDA graphs: inductor's own graph trees ("reduce-overhead")
        model = torch.compile(model, mode="reduce-overhead" if settings.cuda_graphs else None)
    return model


def _timed(model: nn.Module, settings: BenchSettings, device: torch.device) -> Callable[[torch.Tensor], object]:
    """What is timed: the model, or (--cuda-graphs without --compile) its replay from a CUDA graph per batch
    size, as the Predictor runs it (the batch sizes are fixed here, so no padding)."""
    if settings.cuda_graphs and not settings.compile:
        return GraphedForward(model, device, settings.precision, max_graphs=64, pad_batch=False)
    return model


def _input(batch: int, settings: BenchSettings, device: torch.device) -> torch.Tensor:
    x = torch.randn(batch, 3, *settings.input_hw, device=device)
    return x.to(memory_format=torch.channels_last) if settings.channels_last else x


def max_batch(
    model: nn.Module,
    settings: BenchSettings,
    device: torch.device,
    limit: int = 4096,
    log: Callable[[str], None] | None = None,
) -> int:
    """The largest batch whose forward fits on a CUDA device (doubling, then bisection), found within
    settings.max_batch_seconds; each try is logged."""
    if device.type != "cuda":
        raise ClposeError("--batch max searches the largest batch that fits a GPU: give a number on the CPU")

    def fits(batch: int) -> bool:
        try:
            with torch.inference_mode(), settings.precision.autocast(device):
                model(_input(batch, settings, device))
            synchronize(device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        except RuntimeError as e:  # cuDNN and cuBLAS report some oversized problems as other errors
            (log or (lambda line: None))(f"  batch {batch}: {first_line(e)} (counted as not fitting)")
            return False
        finally:
            torch.cuda.empty_cache()

    name = getattr(model, "name", type(model).__name__)
    best = search_max_batch(fits, limit, settings.max_batch_seconds, log or (lambda line: None), name)
    if best == 0:
        raise ClposeError(f"{name} does not fit on {device} even at batch 1")
    return best


@dataclass
class _Entry:
    """One timed column of the interleaved run: a model in a runtime."""

    model: str
    runtime: str
    forward: Callable[[torch.Tensor], Any]
    codec: Codec
    precision: Precision


def run_bench(names: list[str], settings: BenchSettings, show_progress: bool = True) -> BenchReport:
    """Measure every model in every runtime at every batch size; models and runtimes are interleaved run by run."""
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClposeError(f"--device {settings.device}: CUDA is not available on this machine")
    for runtime in settings.runtimes:
        choose_runtime(runtime, device)  # installed, and on the CPU unless torch
    for name in names:
        check_input_size(name, settings.input_hw)
    skeleton = any_skeleton(settings.num_keypoints)
    poses = {
        name: PoseModel.from_recipe(model_recipe(name, settings.input_hw), skeleton, amp=settings.precision)
        for name in names
    }
    models = {name: pose.model for name, pose in poses.items()}
    sizes = {name: count_macs(model, settings.input_hw) for name, model in models.items()} if settings.flops else {}
    if not settings.fps:
        rows = [_row(name, 1, sizes[name], settings, device) for name in names]
        return BenchReport(rows, None)
    if settings.cuda_graphs and (why_not := graphs_unavailable(device)):
        warn(f"--cuda-graphs: {why_not}; timing without them")
        settings.cuda_graphs = False
    log = console.print if show_progress else (lambda line: None)
    plan = {  # on the plain models: compiling each tried batch size would eat the search's time bound
        name: [
            max_batch(_prepare(model, settings, device, compile_=False), settings, device, log=log)
            if b == "max"
            else int(b)
            for b in settings.batches
        ]
        for name, model in models.items()
    }
    on_cpu = device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="clpose-bench-") as folder, compile_context(settings.compile, on_cpu):
        entries = [
            entry
            for runtime in settings.runtimes
            for name in names
            for entry in _entries(name, runtime, poses[name], settings, device, Path(folder))
        ]
        graph_runtime = next((e.runtime for e in entries if e.precision.name == "int8"), None)
        limits = {
            p.name: reference_int8_limit(graph_runtime, Path(folder))
            if p.name == "int8"
            else reference_limit(device, p)
            for p in {e.precision.name: e.precision for e in entries}.values()
        }
        try:
            rows = _time_models(entries, plan, sizes, settings, device, limits, show_progress)
        except (RuntimeError, MemoryError) as e:  # a batch past the machine's memory: said, not a traceback
            text = first_line(e)
            if not isinstance(e, MemoryError) and "alloc" not in text.lower() and "memory" not in text.lower():
                raise
            batches = ", ".join(str(b) for b in settings.batches)
            raise ClposeError(f"--batch {batches}: more memory than this machine has ({text})") from None
    for precision, (limit, source) in limits.items():
        limits[precision] = cap_fractions([r for r in rows if r.precision == precision], limit, source)
    limit, source = limits.get(settings.precision.name) or next(iter(limits.values()))
    return BenchReport(rows, limit, source, limits)


def _entries(
    name: str, runtime: str, pose: PoseModel, settings: BenchSettings, device: torch.device, folder: Path
) -> list[_Entry]:
    """`name` in `runtime` in the asked precision, and with --int8 its int8 graph there too."""
    entries = [_entry(name, runtime, pose, settings, device, folder)]
    if settings.int8 and RUNTIMES[runtime].int8_rank is not None:  # the runtimes that run NNCF's int8 graph
        graph = folder / f"{name}.int8.onnx"
        if not graph.is_file():  # one int8 graph per model, run by each graph runtime
            quantize_graph(folder / f"{name}.onnx", bench_calibration(pose), graph)
        precision = int8_precision()
        entries.append(_Entry(name, runtime, graph_runner(runtime, graph, torch.get_num_threads(), precision),
                              pose.codec, precision))  # fmt: skip
    return entries


def bench_calibration(pose: PoseModel, count: int = 32) -> torch.Tensor:
    """Crops of rendered people (clpose.data.synthetic) that calibrate a network of random weights: its int8 speed
    is measured, not its accuracy (`eval --int8` checks a trained network's)."""
    crops = []
    for seed in range(count):
        image, figure = render_sample(np.random.default_rng([seed, 98]), 256)
        lo, hi = figure.joints.min(0), figure.joints.max(0)
        crops.append(pose.crop(image, np.array([*lo, *(hi - lo)]))[0])
    return torch.stack(crops)


def _entry(
    name: str, runtime: str, pose: PoseModel, settings: BenchSettings, device: torch.device, folder: Path
) -> _Entry:
    """What is timed for `name` in `runtime`: the prepared torch model, or its ONNX graph (exported here, checked
    against PyTorch by that runtime) in ONNX Runtime or OpenVINO."""
    if RUNTIMES[runtime].runner is None:  # the PyTorch module itself
        forward = _timed(_prepare(pose.model, settings, device), settings, device)
        return _Entry(name, runtime, forward, pose.codec, settings.precision)
    precision = runtime_precision(runtime, settings.precision)
    graph = folder / f"{name}.onnx"
    export_onnx(pose, graph, dynamic_batch=True, check=parity_check(runtime))
    runner = graph_runner(runtime, graph, torch.get_num_threads(), precision)
    return _Entry(name, runtime, runner, pose.codec, precision)


def _row(
    name: str,
    batch: int,
    size: tuple[float, float] | None,
    settings: BenchSettings,
    device: torch.device,
    latencies: list[float] | None = None,
    decode_s: float | None = None,
    limit: float | None = None,
    runtime: str = "torch",
    precision: Precision | None = None,
) -> BenchResult:
    params, macs = size if size else (None, None)
    precision = precision or settings.precision
    entry = RUNTIMES.get(runtime)
    torch_row = entry is not None and entry.runner is None  # the PyTorch module itself, not a graph
    row = BenchResult(
        name,
        format_hw(settings.input_hw),
        batch,
        runtime,
        params,
        macs,
        None if macs is None else 2 * macs,
        device=str(device),
        precision=precision.name,
        precision_reason=precision.reason,
        precision_native=precision.native,
        channels_last=settings.channels_last and torch_row,
        compiled=settings.compile and torch_row,
        cuda_graphs=settings.cuda_graphs and torch_row,
    )
    if latencies:
        lat = sorted(latencies)
        p50 = statistics.median(lat)
        row.fps, row.latency_ms_p50 = batch / p50, p50 * 1e3
        row.latency_ms_p90 = lat[math.ceil(0.9 * len(lat)) - 1] * 1e3  # nearest-rank percentile
        row.decode_ms = None if decode_s is None else decode_s * 1e3
        if macs is not None and limit:
            row.limit_fraction = 2 * macs * batch / p50 / limit
    return row


def _blocks(runs: int, rounds: int = 5) -> list[int]:
    """`runs` split into up to `rounds` turns per runtime (one runtime: the same run-by-run interleaving)."""
    rounds = max(1, min(rounds, runs))
    return [runs // rounds + (i < runs % rounds) for i in range(rounds)]


def _time_models(
    entries: list[_Entry],
    plan: dict[str, list[int]],
    sizes: dict[str, tuple[float, float]],
    settings: BenchSettings,
    device: torch.device,
    limits: dict[str, tuple[float, str]],
    show_progress: bool,
) -> list[BenchResult]:
    rows = []
    total = len(entries) * len(settings.batches) * (settings.warmup + settings.runs + 1)
    grad_mode = torch.inference_mode() if settings.inference_mode else torch.enable_grad()
    with _progress(total, show_progress) as step, grad_mode, settings.precision.autocast(device):
        for index in range(len(settings.batches)):
            inputs = [_input(plan[e.model][index], settings, device) for e in entries]
            for entry, x in zip(entries, inputs, strict=True):  # warm-up (and compilation) before any timed run
                for _ in range(settings.warmup):
                    entry.forward(x)
                    step(f"warm-up {entry.model} ({entry.runtime})")
            times: list[list[float]] = [[] for _ in entries]
            for block in _blocks(settings.runs):
                for runtime in dict.fromkeys(e.runtime for e in entries):
                    turn = [i for i, e in enumerate(entries) if e.runtime == runtime]
                    for i in turn:  # the runtime's threads wake up; the previous runtime's leave the cores
                        entries[i].forward(inputs[i])
                    for _ in range(block):
                        for i in turn:
                            entry = entries[i]
                            times[i].append(time_once(lambda f=entry.forward, x=inputs[i]: f(x), device))
                            step(f"timing {entry.model} ({entry.runtime})")
            for entry, x, samples in zip(entries, inputs, times, strict=True):
                out = final_output(entry.forward(x))
                decode = statistics.median(
                    time_once(lambda o=out, c=entry.codec: c.decode_output(o), device) for _ in range(20)
                )
                step(f"decode {entry.model} ({entry.runtime})")
                limit = limits[entry.precision.name][0]
                batch = plan[entry.model][index]
                row = _row(
                    entry.model, batch, sizes.get(entry.model), settings, device, samples, decode, limit,
                    entry.runtime, entry.precision,
                )  # fmt: skip
                if isinstance(entry.forward, GraphedForward):  # what ran, not what was asked: a capture can fail
                    row.cuda_graphs = entry.forward.replays(x)
                rows.append(row)
    return rows
