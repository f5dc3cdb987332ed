"""What runs a trained network: PyTorch, ONNX Runtime or OpenVINO (`--runtime` of `infer`, `eval` and `bench`).

Only the network's forward pass changes hands. Cropping, the flip test, the decode and the mapping back to image
pixels stay the PoseModel's (clpose.engine.posemodel), so a runtime cannot drift in accuracy by its own pre- or
post-processing. ONNX Runtime and OpenVINO run the graph that `clpose export` writes (clpose.engine.onnx_graph),
exported on first use into a `cache/` folder beside the checkpoint and checked against PyTorch by the runtime that
will run it (clpose.engine.graph_cache: a retrained best.pt or another input size gets a fresh graph, and a stale or
damaged one is never run).

Precision follows the CPU as `amp: auto` does (clpose.precision): OpenVINO runs bf16 where the CPU has it natively
(AMX or AVX512-BF16, and no oneDNN cap below them) and fp32 elsewhere; ONNX Runtime's CPU convolutions are fp32
only. Threads follow `--threads` (torch's thread count by default).

`auto` picks OpenVINO on the CPU when it is installed: measured faster than PyTorch both on a CPU with AMX and with
the process's CPUID masked to AVX2 (docs/benchmarks.md, "Runtimes"); otherwise PyTorch, with one line saying what
to install. On a GPU it is PyTorch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from clpose.console import console, warn
from clpose.engine.graph_cache import NoGraphCache, cached_graph
from clpose.engine.posemodel import PoseModel
from clpose.engine.runtime_names import DEPLOY_EXTRA, RUNTIME_CHOICES
from clpose.errors import ClposeError, first_line
from clpose.precision import Precision, int8_precision

if TYPE_CHECKING:
    from clpose.engine.int8 import CalibrationSource


def installed(runtime: str) -> bool:
    """Whether the runtime's package can be imported here (torch always can)."""
    return runtime == "torch" or importlib.util.find_spec(runtime) is not None


def package_version(runtime: str) -> str:
    try:
        return version(runtime)
    except PackageNotFoundError:
        return "?"


@dataclass(frozen=True)
class RuntimeChoice:
    """A resolved `--runtime`: its name and why it was chosen (shown on screen)."""

    name: str
    why: str


def choose_runtime(requested: str, device: torch.device | str) -> RuntimeChoice:
    """What `--runtime REQUESTED` means on `device`. An explicit runtime that is not installed, or a non-torch one
    on a GPU, is a ClposeError; `auto` falls back to torch and says why."""
    if requested not in RUNTIME_CHOICES:
        raise ClposeError(f"--runtime {requested!r}: expected one of {', '.join(RUNTIME_CHOICES)}")
    device = torch.device(device)
    if device.type != "cpu":
        if requested in ("auto", "torch"):
            return RuntimeChoice("torch", f"{requested}: the network runs on {device}")
        raise ClposeError(
            f"--runtime {requested} runs on the CPU; on --device {device} the network runs in torch "
            "(--runtime torch or auto, or --device cpu)"
        )
    if requested == "auto":
        if installed("openvino"):
            return RuntimeChoice("openvino", "auto: the fastest runtime measured on CPUs (docs/benchmarks.md)")
        return RuntimeChoice("torch", f"auto: OpenVINO is not installed ({DEPLOY_EXTRA} runs CPU inference faster)")
    if not installed(requested):
        raise ClposeError(f"--runtime {requested}: the {requested} package is not installed: {DEPLOY_EXTRA}")
    return RuntimeChoice(requested, "as asked")


def runtime_precision(runtime: str, precision: Precision) -> Precision:
    """The precision `runtime` runs in when torch would run in `precision` (resolved from --amp on this CPU)."""
    if runtime == "torch" or precision.name == "fp32":
        return precision
    if runtime == "openvino" and precision.name == "bf16" and precision.native and openvino_has_bf16():
        return replace(precision, reason=f"{precision.reason}; OpenVINO's bf16 kernels")
    if runtime == "openvino":
        why = "OpenVINO runs fp32 where bf16 is not native" if precision.name == "bf16" else "OpenVINO on the CPU"
        return Precision("fp32", precision.requested, f"{precision.reason}; {why}")
    return Precision("fp32", precision.requested, f"{precision.reason}; ONNX Runtime's CPU convolutions are fp32")


def openvino_has_bf16() -> bool:
    """OpenVINO's own answer: BF16 among the CPU plugin's optimisation capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OnnxRuntimeRunner:
    """A batch of crops through ONNX Runtime's CPU execution provider."""

    autocast = False  # the graph runs in its own precision
    last_stage_only = True

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: the crops, decode and drawing of the same process need the cores
        # between batches (spinning cost the other runtimes of `bench` and torch up to half their speed, measured)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ClposeError(f"onnxruntime cannot load {path}: {first_line(e)}") from None
        self.input = self.session.get_inputs()[0].name
        self.name = f"onnxruntime {package_version('onnxruntime')}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (maps,) = self.session.run(None, {self.input: _array(x)})
        return torch.from_numpy(maps)


class OpenVinoRunner:
    """A batch of crops through OpenVINO's CPU plugin, compiled for latency in bf16 or fp32."""

    autocast = False
    last_stage_only = True

    def __init__(self, path: Path, threads: int, bf16: bool) -> None:
        import openvino as ov

        config = {
            "INFERENCE_NUM_THREADS": threads,
            # always said: OpenVINO's own default follows the CPU's flags and ignores a oneDNN cap (ONEDNN_MAX_CPU_ISA),
            # under which its bf16 default fails to compile
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as e:
            raise ClposeError(f"OpenVINO cannot compile {path}: {first_line(e)}") from None
        self.request = self.compiled.create_infer_request()
        self.name = f"openvino {package_version('openvino')}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        result = self.request.infer({0: _array(x)})
        return torch.from_numpy(np.array(result[0]))  # a copy: the request reuses its output buffer


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def compile_context(enabled: bool = True, cpu: bool = True) -> contextlib.AbstractContextManager:
    """Inductor "freezing" for inference: weights become constants, convolutions get pre-packed weights and folded
    batch norms (1.2x in fp32, 2x in bf16 for CLNet-ResNet-50 on the CPU, docs/benchmarks.md); on the CPU also the
    C++ wrapper, which calls the kernels from C++ instead of Python (1.08x for CLNet-R50 and SimpleBaseline-R50 at
    batch 1 in bf16 on an AMX Xeon, 1.01-1.03x in fp32 masked to AVX2: docs/benchmarks.md "Runtimes").
    Compilation happens at the first call of each input shape, so every call runs inside this context."""
    if not enabled:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    # a CUDA build of torch compiling for the CPU warns that no CUDA runtime exists: true and irrelevant here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return inductor_config.patch(freezing=True, cpp_wrapper=cpu)


@dataclass
class CompiledRunner:
    """torch.compile'd network (inductor, freezing). Batches are padded to the next power of two, so a video whose
    number of people changes compiles a handful of shapes, not one per count; each first call of a shape compiles,
    and the seconds it took are kept (shown at the end of a run)."""

    model: nn.Module
    compiled: Callable[[torch.Tensor], Any] = field(init=False)
    compile_seconds: dict[int, float] = field(default_factory=dict)
    autocast = True  # compiled under the PoseModel's autocast
    last_stage_only = False

    def __post_init__(self) -> None:
        self.compiled = torch.compile(self.model.eval())
        self.name = f"torch {torch.__version__} (compiled)"

    def __call__(self, x: torch.Tensor) -> Any:
        n = x.shape[0]
        size = 1 << max(0, n - 1).bit_length()
        if size > n:
            x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))]).contiguous(
                memory_format=torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
            )
        first = size not in self.compile_seconds
        if first:
            console.print(f"compiling the network for batches of {size} (torch.compile, once per batch size) ...")
        start = time.perf_counter()
        with compile_context(cpu=x.device.type == "cpu"):
            out = self.compiled(x)
        if first:
            self.compile_seconds[size] = time.perf_counter() - start
            console.print(f"compiled in {self.compile_seconds[size]:.1f} s")
        return _rows(out, n)


def _rows(out: Any, n: int) -> Any:
    if isinstance(out, torch.Tensor):
        return out[:n]
    return type(out)(o[:n] for o in out)


# -- attaching a runtime to a PoseModel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeInfo:
    """What runs the network, said once on screen: runtime, why, precision, threads."""

    runtime: str
    version: str
    why: str
    precision: Precision
    threads: int
    compiled: bool = False
    channels_last: bool = False
    int8: dict[str, Any] | None = None  # the int8 graph, its calibration and its check (clpose.engine.int8)

    def describe(self) -> str:
        extras = [f"{self.threads} threads"]
        extras += ["channels_last"] if self.channels_last else []
        extras += ["torch.compile"] if self.compiled else []
        return (
            f"runtime: {self.runtime} {self.version} ({self.why}; {', '.join(extras)}); "
            f"precision: {self.precision.describe()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "version": self.version,
            "why": self.why,
            "precision": self.precision.name,
            "threads": self.threads,
            "compiled": self.compiled,
            "channels_last": self.channels_last,
            "int8": self.int8,
        }


MAX_THREADS = 1024  # more is a typo (torch's own limit is 2^31 - 1, where it fails with an overflow)


def check_threads(threads: int | None) -> int:
    """--threads: set torch's CPU threads (crops, decode, the torch runtime) and return the count runtimes use."""
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise ClposeError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def use_runtime(
    pose: PoseModel,
    checkpoint: Path,
    requested: str = "torch",
    threads: int | None = None,
    compile_: bool = False,
    channels_last: bool = True,
    int8: bool = False,
    calibration: CalibrationSource | None = None,
) -> RuntimeInfo:
    """Make `pose` run its network through `requested` (clpose.engine.runtimes.RUNTIME_CHOICES) and say how; with
    `int8`, its int8 graph, quantised on the crops of `calibration` (default: the recipe's own data) and checked
    (clpose.engine.int8).

    torch on the CPU runs channels_last where `channels_last` (oneDNN's convolutions want NHWC: 1.07x in fp32, 1.7x in
    bf16 for CLNet-ResNet-50, docs/benchmarks.md; `eval` keeps the recipe's memory format instead, so that it
    reproduces the training's validation number to the last digit) and, with `compile_`, torch.compile'd; the other
    runtimes run the checkpoint's cached ONNX graph."""
    count = check_threads(threads)
    if int8:
        return _use_int8(pose, checkpoint, requested, count, compile_, calibration)
    choice = choose_runtime(requested, pose.device)
    if compile_ and choice.name != "torch":
        raise ClposeError(f"--compile compiles the torch runtime; --runtime {requested} runs {choice.name}")
    if choice.name == "torch":
        return _use_torch(pose, choice, count, compile_, channels_last)
    precision = runtime_precision(choice.name, pose.precision)
    try:
        graph = cached_graph(checkpoint, pose, check=parity_check(choice.name), runtime=choice.name)
    except ClposeError as e:  # no graph cache, or a graph that cannot be made or does not reproduce torch
        if requested != "auto":
            raise
        why = "needs a graph cache" if isinstance(e, NoGraphCache) else "could not run this network"
        choice = RuntimeChoice("torch", f"auto: {choice.name} {why} ({first_line(e)})")
        warn(f"--runtime {choice.why}: running torch")
        return _use_torch(pose, choice, count, compile_, channels_last)
    pose.runner, pose.precision = graph_runner(choice.name, graph, count, precision), precision
    return RuntimeInfo(choice.name, package_version(choice.name), choice.why, precision, count)


def int8_runtime(requested: str, device: torch.device | str) -> RuntimeChoice:
    """Which runtime runs an int8 graph: OpenVINO or ONNX Runtime (both run NNCF's QDQ graph with int8 kernels,
    measured at the same speed on an AVX2 CPU; OpenVINO uses VNNI and AMX where the CPU has them). torch's own int8
    path (the x86 inductor quantiser) needs torch.compile and is not offered."""
    if torch.device(device).type != "cpu":
        raise ClposeError(f"--int8 runs on the CPU (OpenVINO or ONNX Runtime); on --device {device} use fp16/bf16")
    if requested == "torch":
        raise ClposeError("--int8 runs the int8 graph in openvino or onnxruntime: --runtime torch has no int8 path")
    if requested == "auto":
        for name in ("openvino", "onnxruntime"):
            if installed(name):
                return RuntimeChoice(name, "auto: int8 graphs run in OpenVINO (else ONNX Runtime)")
        raise ClposeError(f"--int8 needs OpenVINO or ONNX Runtime: {DEPLOY_EXTRA}")
    return choose_runtime(requested, device)


def _use_int8(
    pose: PoseModel,
    checkpoint: Path,
    requested: str,
    count: int,
    compile_: bool,
    calibration: CalibrationSource | None,
) -> RuntimeInfo:
    # here, not at the top: the Predictor (which imports this module) loads no scoring code unless --int8 is asked
    from clpose.engine.calibration import default_calibration
    from clpose.engine.int8 import int8_graph

    if compile_:
        raise ClposeError("--compile compiles the torch runtime; --int8 runs an int8 graph in openvino or onnxruntime")
    choice = int8_runtime(requested, pose.device)
    precision = int8_precision()

    def runner_of(path: Path) -> OnnxRuntimeRunner | OpenVinoRunner:
        return graph_runner(choice.name, path, count, precision)

    crops = (calibration or default_calibration)(pose)
    made = int8_graph(checkpoint, pose, crops, choice.name, runner_of, parity_check(choice.name))
    pose.runner, pose.precision = runner_of(made.path), precision
    return RuntimeInfo(choice.name, package_version(choice.name), choice.why, precision, count, int8=made.to_json())


def _use_torch(pose: PoseModel, choice: RuntimeChoice, count: int, compile_: bool, channels_last: bool) -> RuntimeInfo:
    if channels_last and pose.device.type == "cpu" and not pose.channels_last:
        pose.channels_last = True
        pose.model.to(memory_format=torch.channels_last)
    if compile_:
        pose.model.eval()
        pose.runner = CompiledRunner(pose.model)
    return RuntimeInfo("torch", torch.__version__, choice.why, pose.precision, count, compile_, pose.channels_last)


def graph_runner(runtime: str, graph: Path, threads: int, precision: Precision) -> OnnxRuntimeRunner | OpenVinoRunner:
    """The runner of an ONNX graph in `runtime` (onnxruntime or openvino) at `precision` (runtime_precision's)."""
    if runtime == "onnxruntime":
        return OnnxRuntimeRunner(graph, threads)
    if runtime == "openvino":
        return OpenVinoRunner(graph, threads, bf16=precision.name == "bf16")
    raise ClposeError(f"runtime {runtime!r} does not run ONNX graphs (onnxruntime and openvino do)")


def parity_check(runtime: str) -> Callable[[Path], Callable[[torch.Tensor], list[np.ndarray]]]:
    """The parity check of a graph that `runtime` will run: that runtime itself, in fp32."""

    def check(path: Path) -> Callable[[torch.Tensor], list[np.ndarray]]:
        runner = graph_runner(runtime, path, torch.get_num_threads(), Precision("fp32", "off", "parity check"))
        return lambda x: [runner(x).numpy()]

    return check
