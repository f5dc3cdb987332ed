"""Export a checkpoint to ONNX or TorchScript, optionally with the decode, and check parity with PyTorch.

With `with_decode` the exported graph returns keypoints (N, K, 2) in crop pixels and scores (N, K): the
codec's batched decode traced into the graph, so a deployment needs no post-processing beyond mapping crop
pixels back to the image (the crop's inverse affine). The export is written to a temporary file, checked
against PyTorch on random and real inputs, and only then moved into place.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clpose.codecs import Codec
from clpose.data.synthetic import render_sample
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.io import atomic_path
from clpose.models import final_output

# Tolerances of the parity check. fp32 kernels of onnxruntime and PyTorch sum in different orders: map
# differences are ~1e-6 of activations ~1, so 1e-3 leaves a wide margin and still catches a wrong graph (a
# layer or channel out of place changes maps by 1e-1 or more). Keypoints move by offset differences x stride
# (< 1e-3 px); 0.05 px is far below any accuracy that matters and above float32 noise.
MAP_TOLERANCE = 1e-3
KEYPOINT_TOLERANCE = 0.05
MIN_OPSET = 18


class WithDecode(nn.Module):
    """The network followed by the codec's decode: images -> (keypoints in crop pixels, scores)."""

    def __init__(self, model: nn.Module, codec: Codec) -> None:
        super().__init__()
        self.model, self.codec = model, codec

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.codec.decode_output(final_output(self.model(images)))


class FinalStage(nn.Module):
    """The network's last stage only (multi-stage models return every stage in training)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return final_output(self.model(images))


@dataclass
class Parity:
    map_diff: float
    keypoint_diff: float
    inputs: str


def _real_inputs(pose: PoseModel) -> torch.Tensor:
    """Two real-looking crops: a rendered synthetic person scene cropped around its figure (no files needed)."""
    crops = []
    for seed in (0, 1):
        image, figure = render_sample(np.random.default_rng([seed, 99]), 256)
        lo, hi = figure.joints.min(0), figure.joints.max(0)
        crops.append(pose.crop(image, np.array([*lo, *(hi - lo)]))[0])
    return torch.stack(crops)


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
    model, codec = pose.model.eval(), pose.codec
    module = WithDecode(model, codec) if with_decode else FinalStage(model)
    module.eval()
    examples = {
        "random": torch.randn(2, 3, *pose.input_hw, generator=torch.Generator().manual_seed(0)),
        "real": _real_inputs(pose),
    }
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _export_onnx(module, examples["random"], tmp, dynamic_batch, with_decode, opset)
            run = _onnx_runner(tmp)
        elif fmt == "torchscript":
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
            run = lambda x: _as_numpy(loaded(x))  # noqa: E731
        else:
            raise ClposeError(f"unknown export format {fmt!r}; valid: onnx, torchscript")
        parity = [_parity(module, run, x, name, codec, with_decode, dynamic_batch) for name, x in examples.items()]
    return out, parity


def _export_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, with_decode: bool, opset: int
) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError:
        raise ClposeError("ONNX export needs the export extra: pip install 'clpose[export]'") from None
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        # torch's exporter builds opset 18 graphs; other versions go through onnx's version converter, which fails
        # (and used to leave a traceback with exit code 0) outside this range
        raise ClposeError(
            f"--opset {opset}: this exporter writes opsets {MIN_OPSET} to {newest} (onnx {onnx.__version__})"
        )
    outputs = ["keypoints", "scores"] if with_decode else ["maps"]
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["images"],
            output_names=outputs,
            dynamic_shapes=dynamic,
            verbose=False,
        )
        program.save(str(path))


def _onnx_runner(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ClposeError("the ONNX parity check needs onnxruntime: pip install 'clpose[export]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def _as_numpy(out) -> list[np.ndarray]:
    return [o.detach().numpy() for o in out] if isinstance(out, (list, tuple)) else [out.detach().numpy()]


def _parity(
    module: nn.Module, run, x: torch.Tensor, name: str, codec: Codec, with_decode: bool, dynamic_batch: bool
) -> Parity:
    """Max abs differences of the maps and of the decoded keypoints against PyTorch."""
    if dynamic_batch:
        x = torch.cat([x, x[:1]])  # a batch size the export did not see
    with torch.no_grad():
        expected = _as_numpy(module(x))
    got = run(x)
    if with_decode:
        maps_diff = float("nan")
        kp_diff = float(np.abs(got[0] - expected[0]).max())
    else:
        maps_diff = float(np.abs(got[0] - expected[0]).max())
        kp_ref = codec.decode_output(torch.from_numpy(expected[0]))[0].numpy()
        kp_got = codec.decode_output(torch.from_numpy(np.asarray(got[0])))[0].numpy()
        kp_diff = float(np.abs(kp_got - kp_ref).max())
    if not (maps_diff <= MAP_TOLERANCE or with_decode) or not kp_diff <= KEYPOINT_TOLERANCE:
        raise ClposeError(
            f"the export does not reproduce PyTorch on {name} inputs: maps differ by {maps_diff:.3g} "
            f"(tolerance {MAP_TOLERANCE}), keypoints by {kp_diff:.3g} px (tolerance {KEYPOINT_TOLERANCE})"
        )
    return Parity(maps_diff, kp_diff, name)
