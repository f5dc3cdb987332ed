"""RUNTIMES: what can run a trained network (`--runtime` of infer, eval, bench and export), one `RuntimeEntry` each.

This module imports neither torch nor a runtime's package (the CLI reads it at start-up to list the choices);
clpose.engine.runtimes attaches the chosen one to a PoseModel. Adding a runtime that runs the checkpoint's ONNX graph
is one entry, also from outside the package (`RUNTIMES[name] = RuntimeEntry(...)`): its name is then a choice of
every `--runtime`, `auto` considers it by its rank, and its runner is built from the entry.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEPLOY_EXTRA = "pip install 'clpose[deploy]'"


@dataclass(frozen=True)
class RuntimeEntry:
    """A registered runtime.

    Attributes:
        summary: what it runs, for `--runtime`'s help.
        package: the Python package it needs (None: torch, always there); a missing one is named with how to install.
        runner: (ONNX graph, threads, Precision) -> a callable from a batch of crops to the network's maps, with
            `name`, `autocast` and `last_stage_only` attributes (clpose.engine.runners); None for
            the runtime that runs the PyTorch module itself.
        precision: torch's precision on this CPU (`--amp`, resolved) -> the precision the runtime runs in.
        auto_rank: where `auto` tries it on the CPU (lowest installed first); None: `auto` never picks it.
        int8_rank: the same for `--int8` (it runs NNCF's int8 QDQ graph); None: no int8 path.
        int8_smoothed: it runs the int8 ladder's last rung (clpose.engine.int8.LADDER: float residual additions
            between int8 convolutions) faster than its fp32 graph; where not, `--int8` stops before that rung.
        install: how to get its package (named in the error when it is missing).
    """

    summary: str
    package: str | None = None
    runner: Callable[[Path, int, Any], Any] | None = None
    precision: Callable[[Any], Any] = lambda precision: precision
    auto_rank: int | None = None
    int8_rank: int | None = None
    int8_smoothed: bool = False
    install: str = DEPLOY_EXTRA

    def installed(self) -> bool:
        return self.package is None or importlib.util.find_spec(self.package) is not None


def _onnxruntime_runner(graph: Path, threads: int, precision: Any) -> Any:
    from clpose.engine.runners import OnnxRuntimeRunner

    return OnnxRuntimeRunner(graph, threads)


def _openvino_runner(graph: Path, threads: int, precision: Any) -> Any:
    from clpose.engine.runners import OpenVinoRunner

    return OpenVinoRunner(graph, threads, bf16=precision.name == "bf16")


def _onnxruntime_precision(precision: Any) -> Any:
    from clpose.precision import Precision

    if precision.name == "fp32":
        return precision
    return Precision("fp32", precision.requested, f"{precision.reason}; ONNX Runtime's CPU convolutions are fp32")


def _openvino_precision(precision: Any) -> Any:
    from dataclasses import replace

    from clpose.engine.runners import openvino_has_bf16
    from clpose.precision import Precision

    if precision.name == "fp32":
        return precision
    if precision.name == "bf16" and precision.native and openvino_has_bf16():
        return replace(precision, reason=f"{precision.reason}; OpenVINO's bf16 kernels")
    why = "OpenVINO runs fp32 where bf16 is not native" if precision.name == "bf16" else "OpenVINO on the CPU"
    return Precision("fp32", precision.requested, f"{precision.reason}; {why}")


RUNTIMES: dict[str, RuntimeEntry] = {
    "torch": RuntimeEntry("PyTorch itself (the reference; channels_last on the CPU, --compile)", auto_rank=1),
    "onnxruntime": RuntimeEntry(
        "the checkpoint's ONNX graph in ONNX Runtime (fp32)",
        "onnxruntime",
        _onnxruntime_runner,
        _onnxruntime_precision,
        int8_rank=1,  # runs the smoothed rung's graph slower than fp32 (docs/benchmarks.md): not offered
    ),
    "openvino": RuntimeEntry(
        "the checkpoint's ONNX graph in OpenVINO (bf16 where the CPU has it natively)",
        "openvino",
        _openvino_runner,
        _openvino_precision,
        auto_rank=0,  # the fastest measured on CPUs with and without AVX-512 (docs/benchmarks.md "Runtimes")
        int8_rank=0,  # uses VNNI and AMX where the CPU has them
        int8_smoothed=True,
    ),
}


def runtime_choices() -> list[str]:
    """What `--runtime` accepts: auto and every registered runtime."""
    return ["auto", *RUNTIMES]


def ranked(rank: str) -> list[str]:
    """The registered runtimes that `auto` ("auto_rank") or `--int8` ("int8_rank") may pick, in the order tried."""
    names = [name for name, entry in RUNTIMES.items() if getattr(entry, rank) is not None]
    return sorted(names, key=lambda name: getattr(RUNTIMES[name], rank))


def runtime_help(default: str) -> str:
    """`--runtime`'s help, from the entries; `default` says what the command runs without the option."""
    listed = "; ".join(f"{name}: {entry.summary}" for name, entry in RUNTIMES.items())
    return (
        f"What runs the network. {listed}; auto: the first installed of {', '.join(ranked('auto_rank'))} on the CPU "
        "(the fastest measured, docs/benchmarks.md), torch on a GPU. ONNX graphs are exported once into cache/ "
        f"beside the checkpoint. Default: {default}."
    )
