"""Export a checkpoint to ONNX or TorchScript, optionally with the decode, and check parity with PyTorch.

With `with_decode` the exported graph returns keypoints (N, K, 2) in crop pixels and scores (N, K): the
codec's batched decode traced into the graph, so a deployment needs no post-processing beyond mapping crop
pixels back to the image (the crop's inverse affine). The export is written to a temporary file, checked
against PyTorch on random and real inputs, and only then moved into place (ONNX: clpose.engine.onnx_graph, which
the ONNX Runtime and OpenVINO runtimes of `infer`, `eval` and `bench` use too).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from clpose.engine.onnx_graph import (
    KEYPOINT_TOLERANCE,
    MAP_TOLERANCE,
    Parity,
    as_numpy,
    check_parity,
    export_onnx,
    graph_module,
    parity_inputs,
)
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.io import atomic_path, json_text

if TYPE_CHECKING:
    from clpose.engine.int8 import CalibrationSource

__all__ = ["KEYPOINT_TOLERANCE", "MAP_TOLERANCE", "Parity", "export", "export_int8"]


def export(
    checkpoint: Path,
    out: Path,
    fmt: str = "onnx",
    input_hw: tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    with_decode: bool = False,
    opset: int = 18,
) -> tuple[Path, list[Parity]]:
    """Export and check parity; returns the written path and the parity measurements."""
    # fp32 on the CPU: the exported graph is fp32 whatever the model trained in, and the parity check compares it
    # with the same graph in PyTorch
    pose = PoseModel.from_checkpoint(checkpoint, "cpu", amp="off", input_hw=input_hw)
    if fmt == "onnx":
        return out, export_onnx(pose, out, dynamic_batch, with_decode, opset)
    if fmt != "torchscript":
        raise ClposeError(f"unknown export format {fmt!r}; valid: onnx, torchscript")
    module, examples = graph_module(pose, with_decode), parity_inputs(pose)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():  # PyTorch deprecates TorchScript; the CLI says so once
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
            # the codecs' shape checks are constant for one input size: what the tracer warns about is intended
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            with torch.no_grad():
                traced = torch.jit.trace(module, examples["random"], check_trace=False)
            # serialised in memory and written by Python: torch's C++ file writer aborts the process on a
            # failed write (a full disk, a file-size limit: exit 134 and a partial file left behind), Python
            # raises an OSError that the atomic write cleans up and the CLI reports in one line
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            with buffer.getbuffer() as data:  # no copy of a model that may be hundreds of MB
                tmp.write_bytes(data)
            buffer.seek(0)
            loaded = torch.jit.load(buffer)  # the parity check runs the bytes just written
        parity = [
            check_parity(module, lambda x: as_numpy(loaded(x)), x, name, pose.codec, with_decode, dynamic_batch)
            for name, x in examples.items()
        ]
    return out, parity


def export_int8(
    checkpoint: Path,
    out: Path,
    input_hw: tuple[int, int] | None = None,
    runtime: str = "auto",
    calibration: CalibrationSource | None = None,
) -> tuple[Path, dict]:
    """The checkpoint's int8 graph (maps out, any batch size; made, checked and cached as `--int8` makes it for
    infer and eval) copied to `out`, with its record (calibration, check, versions) beside it as OUT.json; returns
    the written graph and the record."""
    import shutil

    from clpose.engine.runtimes import use_runtime
    from clpose.io import staged

    pose = PoseModel.from_checkpoint(checkpoint, "cpu", amp="off", input_hw=input_hw)
    info = use_runtime(pose, checkpoint, runtime, int8=True, calibration=calibration)
    made = info.int8 or {}
    record = {"format": "clpose-int8-onnx", "runtime_checked": info.runtime, **made, "outputs": ["maps"]}
    with staged() as stage:
        shutil.copyfile(made["graph"], stage.path(out))
        stage.write_text(int8_record_path(out), json_text(record))
    return out, record


def int8_record_path(out: Path) -> Path:
    """Where `export --int8` writes the int8 graph's record: beside it, OUT.json (the output guard checks it too)."""
    return Path(out).with_suffix(".json")
