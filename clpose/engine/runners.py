"""Runners of an exported ONNX graph: a batch of crops through ONNX Runtime or OpenVINO on the CPU, with the
attributes the PoseModel reads (`name`, `autocast`, `last_stage_only`). The runtime registry
(clpose.engine.runtime_names) makes them; clpose.engine.runtimes attaches one to a PoseModel."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from clpose.errors import ClposeError, first_line


def distribution_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


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
        # between batches (spinning cost the other runtimes of `bench` and torch much of their speed:
        # docs/benchmarks.md, "Runtimes")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ClposeError(f"onnxruntime cannot load {path}: {first_line(e)}") from None
        self.input = self.session.get_inputs()[0].name
        self.name = f"onnxruntime {distribution_version('onnxruntime')}"

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
        self.name = f"openvino {distribution_version('openvino')}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        result = self.request.infer({0: _array(x)})
        return torch.from_numpy(np.array(result[0]))  # a copy: the request reuses its output buffer


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
