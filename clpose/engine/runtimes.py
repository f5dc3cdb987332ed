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
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from clpose.console import console, warn
from clpose.engine.graph_cache import NoGraphCache, cached_graph
from clpose.engine.onnx_graph import MAP_TOLERANCE
from clpose.engine.posemodel import PoseModel
from clpose.engine.runners import distribution_version
from clpose.engine.runtime_names import RUNTIMES, RuntimeEntry, ranked, runtime_choices
from clpose.errors import ClposeError, first_line
from clpose.precision import Precision, int8_precision

if TYPE_CHECKING:
    from clpose.engine.int8 import CalibrationSource

TORCH = "torch"  # the registered runtime that runs the PyTorch module itself (RUNTIMES' entry without a runner)


def installed(runtime: str) -> bool:
    """Whether the registered runtime's package can be imported here (torch always can)."""
    return RUNTIMES[runtime].installed()


def package_version(runtime: str) -> str:
    """The installed version of the runtime's package (torch's for the runtime that needs none)."""
    package = RUNTIMES[runtime].package if runtime in RUNTIMES else runtime
    return torch.__version__ if package is None else distribution_version(package)


@dataclass(frozen=True)
class RuntimeChoice:
    """A resolved `--runtime`: its name and why it was chosen (shown on screen)."""

    name: str
    why: str


def choose_runtime(requested: str, device: torch.device | str) -> RuntimeChoice:
    """What `--runtime REQUESTED` means on `device`. An explicit runtime that is not installed, or a non-torch one
    on a GPU, is a ClposeError; `auto` falls back to torch and says why."""
    if requested not in runtime_choices():
        raise ClposeError(f"--runtime {requested!r}: expected one of {', '.join(runtime_choices())}")
    device = torch.device(device)
    if device.type != "cpu":  # only the runtime that runs the PyTorch module itself runs on a GPU
        if requested == "auto" or RUNTIMES[requested].runner is None:
            return RuntimeChoice(TORCH, f"{requested}: the network runs on {device}")
        raise ClposeError(
            f"--runtime {requested} runs on the CPU; on --device {device} the network runs in torch "
            "(--runtime torch or auto, or --device cpu)"
        )
    if requested == "auto":
        order = ranked("auto_rank")
        found = next((name for name in order if installed(name)), TORCH)
        if found == order[0]:
            return RuntimeChoice(found, "auto: the fastest runtime measured on CPUs (docs/benchmarks.md)")
        missing = RUNTIMES[order[0]]
        return RuntimeChoice(found, f"auto: {order[0]} is not installed ({missing.install} runs CPU inference faster)")
    entry = RUNTIMES[requested]
    if not installed(requested):
        raise ClposeError(f"--runtime {requested}: the {entry.package} package is not installed: {entry.install}")
    return RuntimeChoice(requested, "as asked")


def runtime_precision(runtime: str, precision: Precision) -> Precision:
    """The precision `runtime` runs in when torch would run in `precision` (resolved from --amp on this CPU): its
    entry's rule."""
    return RUNTIMES[runtime].precision(precision)


def compile_context(enabled: bool = True, cpu: bool = True) -> contextlib.AbstractContextManager:
    """Inductor "freezing" for inference: weights become constants, convolutions get pre-packed weights and folded
    batch norms; on the CPU also the C++ wrapper, which calls the kernels from C++ instead of Python (what each gains
    is in docs/benchmarks.md, "Runtimes").
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
    and the seconds it took are kept (shown at the end of a run). Each newly compiled shape's maps are compared with
    the network's own on that first batch (`check_compiled`): compiled code that computes something else is refused."""

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
            with torch.no_grad():
                check_compiled(out, self.model(x), size)
        return _rows(out, n)


# under bf16/fp16 autocast the compiled and the eager code round to 8-11 bits, alike but not identically
REDUCED_MAP_TOLERANCE = 5e-2


def check_compiled(compiled: Any, eager: Any, size: int) -> None:
    """Raise a ClposeError where the compiled network's maps are not the network's own: non-finite, or further
    from them than the ONNX graphs' parity check allows (onnx_graph.MAP_TOLERANCE times the largest |map| where
    maps exceed 1; REDUCED_MAP_TOLERANCE under bf16/fp16). torch 2.14's inductor code for AVX2 CPUs returns wrong
    maps for some graphs, and a wrong map is a wrong keypoint that looks like any other."""
    for c, e in zip(_outputs(compiled), _outputs(eager), strict=True):
        reduced = e.dtype in (torch.bfloat16, torch.float16)
        c, e = c.detach().float(), e.detach().float()
        if not torch.isfinite(e).all():  # the network's own non-finite maps: PoseModel.maps says so, for both
            continue
        allowed = (REDUCED_MAP_TOLERANCE if reduced else MAP_TOLERANCE) * max(1.0, float(e.abs().max()))
        diff = float((c - e).abs().max()) if torch.isfinite(c).all() else math.inf
        if diff > allowed:
            how = "non-finite maps" if math.isinf(diff) else f"maps differ by {diff:.3g} (tolerance {allowed:.3g})"
            raise ClposeError(
                f"torch.compile's code for batches of {size} does not compute what the network does ({how}; torch "
                f"{torch.__version__}): run without --compile"
            )


def _outputs(out: Any) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


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

    @property
    def runs_graph(self) -> bool:
        """Whether an ONNX graph runs the network (its registry entry has a runner), not the PyTorch module itself."""
        entry = RUNTIMES.get(self.runtime)
        return entry is not None and entry.runner is not None

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


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's CPU threads set to `count` inside the block and put back after."""
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def torch_threads_beside(info: RuntimeInfo | None) -> int:
    """torch's CPU threads while `info`'s runtime runs the network: 1 where a graph runtime runs it with more than one
    thread, else unchanged. What torch still does there (cutting crops, decoding maps and detections) is small
    tensors; on two or more threads, torch's OpenMP workers keep spinning on the cores after each of its small
    operations while the runtime's own threads want those cores for the network. One thread gave `clpose infer`
    1.10-1.28x the frames/s on two cores (docs/inference.md, "Threads beside the runtime")."""
    if info is None or not info.runs_graph or info.threads <= 1:
        return torch.get_num_threads()
    return 1


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
    """Make `pose` run its network through `requested` (auto or a name in RUNTIMES) and say how; with
    `int8`, its int8 graph, quantised on the crops of `calibration` (default: the recipe's own data) and checked
    (clpose.engine.int8).

    torch on the CPU runs channels_last where `channels_last` (oneDNN's convolutions want NHWC, docs/benchmarks.md
    "Runtimes"; `eval` keeps the recipe's memory format instead, so that it
    reproduces the training's validation number to the last digit) and, with `compile_`, torch.compile'd; the other
    runtimes run the checkpoint's cached ONNX graph."""
    count = check_threads(threads)
    if int8:
        return _use_int8(pose, checkpoint, requested, count, compile_, calibration)
    choice = choose_runtime(requested, pose.device)
    if compile_ and choice.name != TORCH:
        raise ClposeError(f"--compile compiles the torch runtime; --runtime {requested} runs {choice.name}")
    if RUNTIMES[choice.name].runner is None:
        return _use_torch(pose, choice, count, compile_, channels_last)
    precision = runtime_precision(choice.name, pose.precision)
    try:
        graph = cached_graph(checkpoint, pose, check=parity_check(choice.name), runtime=choice.name)
    except ClposeError as e:  # no graph cache, or a graph that cannot be made or does not reproduce torch
        if requested != "auto":
            raise
        why = "needs a graph cache" if isinstance(e, NoGraphCache) else "could not run this network"
        choice = RuntimeChoice(TORCH, f"auto: {choice.name} {why} ({first_line(e)})")
        warn(f"--runtime {choice.why}: running torch")
        return _use_torch(pose, choice, count, compile_, channels_last)
    pose.runner, pose.precision = graph_runner(choice.name, graph, count, precision), precision
    return RuntimeInfo(choice.name, package_version(choice.name), choice.why, precision, count)


def int8_runtime(requested: str, device: torch.device | str) -> RuntimeChoice:
    """Which runtime runs an int8 graph: those whose entry has an int8_rank (OpenVINO and ONNX Runtime both run NNCF's
    QDQ graph with int8 kernels, measured at the same speed on an AVX2 CPU; OpenVINO uses VNNI and AMX where the CPU
    has them). torch's own int8 path (the x86 inductor quantiser) needs torch.compile and is not offered."""
    order = ranked("int8_rank")
    if torch.device(device).type != "cpu":
        raise ClposeError(f"--int8 runs on the CPU ({' or '.join(order)}); on --device {device} use fp16/bf16")
    if requested in RUNTIMES and RUNTIMES[requested].int8_rank is None:
        raise ClposeError(f"--int8 runs the int8 graph in {' or '.join(order)}: --runtime {requested} has no int8 path")
    if requested == "auto":
        for name in order:
            if installed(name):
                return RuntimeChoice(name, f"auto: int8 graphs run in {', else '.join(order)}")
        raise ClposeError(f"--int8 needs {' or '.join(order)}: {RUNTIMES[order[0]].install}")
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

    def runner_of(path: Path) -> Any:
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
    return RuntimeInfo(TORCH, torch.__version__, choice.why, pose.precision, count, compile_, pose.channels_last)


def graph_runner(runtime: str, graph: Path, threads: int, precision: Precision) -> Any:
    """The runner of an ONNX graph in `runtime` at `precision` (runtime_precision's), made by its entry."""
    entry: RuntimeEntry | None = RUNTIMES.get(runtime)
    if entry is None or entry.runner is None:
        graphs = [name for name, e in RUNTIMES.items() if e.runner is not None]
        raise ClposeError(f"runtime {runtime!r} does not run ONNX graphs ({', '.join(graphs)} do)")
    return entry.runner(graph, threads, precision)


def parity_check(runtime: str) -> Callable[[Path], Callable[[torch.Tensor], list[np.ndarray]]]:
    """The parity check of a graph that `runtime` will run: that runtime itself, in fp32."""

    def check(path: Path) -> Callable[[torch.Tensor], list[np.ndarray]]:
        runner = graph_runner(runtime, path, torch.get_num_threads(), Precision("fp32", "off", "parity check"))
        return lambda x: [runner(x).numpy()]

    return check
