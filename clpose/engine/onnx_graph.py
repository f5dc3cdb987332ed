"""A PoseModel's network as an ONNX graph, checked against PyTorch before anyone uses it.

`export_onnx` writes the network (its last stage; with `with_decode` followed by the codec's batched decode, so the
graph returns keypoints (N, K, 2) in crop pixels and scores (N, K)) to a temporary file, runs random and real crops
through the file and through PyTorch, and moves the file into place only when they agree. `clpose export` and the
ONNX Runtime / OpenVINO runtimes of `infer`, `eval` and `bench` (clpose.engine.runtimes) both go through it, so a
deployed graph and the one the runtimes score are made and checked the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
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
# differences are ~1e-6 of activations ~1, so 1e-3 (times the largest |map| where maps exceed 1) leaves a wide
# margin and still catches a wrong graph (a layer or channel out of place changes maps by 1e-1 or more). Keypoints
# move by offset differences x stride (< 1e-3 px); 0.05 px is far below any accuracy that matters and above float32
# noise.
MAP_TOLERANCE = 1e-3
KEYPOINT_TOLERANCE = 0.05
MIN_OPSET = 18
EXPORT_EXTRA = "pip install 'clpose[export]'"

# runs a file's graph: (path) -> (fp32 input batch -> the graph's outputs as arrays)
GraphCheck = Callable[[Path], Callable[[torch.Tensor], list[np.ndarray]]]


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
    keypoint_diff: float  # over the keypoints whose decode is stable (see check_parity)
    inputs: str
    unstable: int = 0  # keypoints within the maps' difference of a discrete choice of the decode: not compared


def graph_module(pose: PoseModel, with_decode: bool = False) -> nn.Module:
    """What is exported: the network's last stage, or the network and the decode."""
    model = pose.model.eval()
    module = WithDecode(model, pose.codec) if with_decode else FinalStage(model)
    return module.eval()


def parity_inputs(pose: PoseModel) -> dict[str, torch.Tensor]:
    """Two random crops and two real-looking ones (a rendered synthetic person cropped around its figure: no files)."""
    crops = []
    for seed in (0, 1):
        image, figure = render_sample(np.random.default_rng([seed, 99]), 256)
        lo, hi = figure.joints.min(0), figure.joints.max(0)
        crops.append(pose.crop(image, np.array([*lo, *(hi - lo)]))[0])
    return {
        "random": torch.randn(2, 3, *pose.input_hw, generator=torch.Generator().manual_seed(0)),
        "real": torch.stack(crops),
    }


def export_onnx(
    pose: PoseModel,
    out: Path,
    dynamic_batch: bool = False,
    with_decode: bool = False,
    opset: int = MIN_OPSET,
    check: GraphCheck | None = None,
) -> list[Parity]:
    """Write `pose`'s network as ONNX to `out` once it reproduces PyTorch (fp32) within the tolerances above;
    `check` runs the written file (default: ONNX Runtime). Returns the parity measurements."""
    module = graph_module(pose, with_decode)
    examples = parity_inputs(pose)
    with atomic_path(out) as tmp:
        write_onnx(module, examples["random"], tmp, dynamic_batch, with_decode, opset)
        run = (check or onnxruntime_check)(tmp)
        return [
            check_parity(module, run, x, name, pose.codec, with_decode, dynamic_batch) for name, x in examples.items()
        ]


def verify_onnx(pose: PoseModel, path: Path, check: GraphCheck, dynamic_batch: bool = True) -> list[Parity]:
    """The parity check of `export_onnx` on a graph written before (maps, no decode), run by `check`."""
    module = graph_module(pose)
    run = check(path)
    examples = parity_inputs(pose)
    return [check_parity(module, run, x, name, pose.codec, False, dynamic_batch) for name, x in examples.items()]


def write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_batch: bool,
    with_decode: bool,
    opset: int,
    output_names: list[str] | None = None,
) -> None:
    """`module` as an ONNX graph at `path`; its outputs are named `output_names`, by default those of a pose graph
    (maps, or keypoints and scores `with_decode`)."""
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError:
        raise ClposeError(f"ONNX export needs the export extra: {EXPORT_EXTRA}") from None
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        # torch's exporter builds opset 18 graphs; other versions go through onnx's version converter, which fails
        # (and used to leave a traceback with exit code 0) outside this range
        raise ClposeError(
            f"--opset {opset}: this exporter writes opsets {MIN_OPSET} to {newest} (onnx {onnx.__version__})"
        )
    outputs = output_names or (["keypoints", "scores"] if with_decode else ["maps"])
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example.contiguous(),),
            dynamo=True,
            opset_version=opset,
            input_names=["images"],
            output_names=outputs,
            dynamic_shapes=dynamic,
            verbose=False,
        )
        program.save(str(path))


def onnxruntime_check(path: Path) -> Callable[[torch.Tensor], list[np.ndarray]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ClposeError(f"the ONNX parity check needs onnxruntime: {EXPORT_EXTRA}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def as_numpy(out: torch.Tensor | list | tuple) -> list[np.ndarray]:
    return [o.detach().numpy() for o in out] if isinstance(out, (list, tuple)) else [out.detach().numpy()]


def check_parity(
    module: nn.Module,
    run: Callable[[torch.Tensor], list[np.ndarray]],
    x: torch.Tensor,
    name: str,
    codec: Codec,
    with_decode: bool,
    dynamic_batch: bool,
) -> Parity:
    """Max abs differences of the maps and of the decoded keypoints against PyTorch; a ClposeError past the
    tolerances.

    Maps are compared everywhere. Keypoints are compared where the decode is stable: a keypoint whose maps sit
    within the maps' difference of one of the decode's discrete choices (a cell at tau, two near-equal peaks) may
    jump by up to a cell between two correct fp32 implementations (`Codec.decision_margin`); those are counted in
    `Parity.unstable`, and their maps are still held to the map tolerance."""
    if dynamic_batch:
        x = torch.cat([x, x[:1]])  # a batch size the export did not see
    with torch.no_grad():
        expected = as_numpy(module(x))
        maps = expected[0] if not with_decode else as_numpy(final_output(module.model(x)))[0]
    got = run(x)
    if with_decode:
        maps_diff = float("nan")
        kp_ref, kp_got = expected[0], np.asarray(got[0])
    else:
        maps_diff = float(np.abs(np.asarray(got[0]) - expected[0]).max())
        kp_ref = codec.decode_output(torch.from_numpy(expected[0]))[0].numpy()
        kp_got = codec.decode_output(torch.from_numpy(np.asarray(got[0])))[0].numpy()
    # relative to the maps' size: fp32 sums in another order differ by a few units in the last place of the largest
    # value, so maps reaching |60| (a network trained with a high learning rate) differ by ~1e-3 and are right
    tolerance = MAP_TOLERANCE * max(1.0, float(np.abs(maps).max()))
    changed = maps_diff if maps_diff == maps_diff else tolerance  # with the decode in the graph: the tolerance
    stable = codec.decision_margin(torch.from_numpy(maps)).numpy() > 2 * changed
    moved = np.abs(kp_got - kp_ref).max(-1)  # (N, K) the larger of |dx| and |dy|
    kp_diff = float(moved[stable].max()) if stable.any() else 0.0
    if not (maps_diff <= tolerance or with_decode) or not kp_diff <= KEYPOINT_TOLERANCE:
        raise ClposeError(
            f"the export does not reproduce PyTorch on {name} inputs: maps differ by {maps_diff:.3g} "
            f"(tolerance {tolerance:.3g}), keypoints by {kp_diff:.3g} px (tolerance {KEYPOINT_TOLERANCE})"
        )
    return Parity(maps_diff, kp_diff, name, int((~stable).sum()))
