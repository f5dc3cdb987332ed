"""A single-shot detector's network as an ONNX graph for `--runtime`, and the decoding torchvision does after it.

torchvision's SSD family (`ssdlite320_mobilenet_v3_large`) resizes every frame to one fixed size, so its network is
one static graph: the normalisation, the backbone and the head, giving per anchor 4 box deltas and the class logits
(`SSDNetwork`). That graph is exported once per weights file into the user's graph cache and checked against torch by
the runtime that runs it, as the pose network's graph is (clpose.engine.graph_cache: the same lock, the same record of
checks). Everything else stays in torch, in `SSDDecoder`: the anchors (computed once), the box decoding with the
model's own box coder, the softmax, the person class, the thresholds, the NMS and the scaling back to the frame,
so the boxes are torchvision's own (`model([image])`, person class) whatever runs the network.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import clip_boxes_to_image, nms

from clpose import __version__
from clpose.console import console
from clpose.engine.graph_cache import NoGraphCache, remember, reuse_checked, user_cache
from clpose.engine.onnx_graph import MIN_OPSET, GraphCheck, write_onnx
from clpose.errors import ClposeError, first_line
from clpose.io import atomic_path, file_lock, sha256, write_json
from clpose.skeletons import COCO_PERSON

# Parity of the exported graph: box deltas and logits are O(1-10); fp32 kernels of the runtimes and torch sum in other
# orders (differences ~1e-6 relative), a wrong graph moves them by 1e-1 or more. Relative to the output's largest value.
OUTPUT_TOLERANCE = 1e-3
OUTPUT_NAME = "deltas_and_logits"


def exportable(model: nn.Module) -> bool:
    """Whether `model`'s network runs as one static graph here (torchvision's SSD family: a fixed input size)."""
    return isinstance(model, SSD) and model.transform.fixed_size is not None


def input_hw(model: SSD) -> tuple[int, int]:
    """The network's input size (H, W): torchvision resizes every frame to it (its fixed_size is W, H)."""
    width, height = model.transform.fixed_size
    return int(height), int(width)


class SSDNetwork(nn.Module):
    """The exported part of an SSD: images (N, 3, H, W), RGB in [0, 1] at the fixed size -> (N, A, 4 + C): per anchor,
    the box deltas then the C class logits (one output, so that every runtime's single-output runner runs it)."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.hw = input_hw(model)
        t = model.transform
        self.register_buffer("mean", torch.tensor(t.image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.backbone((images - self.mean) / self.std)
        return [features] if isinstance(features, torch.Tensor) else list(features.values())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(images))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)


def frame_tensor(image_bgr: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """A BGR uint8 frame as the network's input (1, 3, H, W): RGB in [0, 1], resized bilinearly as torchvision's
    transform resizes (half-pixel centres, no antialiasing; it normalises first, then resizes: both are linear, so the
    order changes only the rounding). OpenCV's float resize gives torch's interpolate to float rounding (1e-7 down,
    6e-6 up) in a fraction of its time on a video frame (bench_detectors.py times the whole call)."""
    small = cv2.resize(image_bgr.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(small[:, :, ::-1].transpose(2, 0, 1)))[None] / 255


class SSDDecoder:
    """torchvision's SSD.postprocess_detections and transform.postprocess for the person class alone.

    The one difference from torchvision: it keeps its best `detections_per_img` boxes over all classes, so a person box
    can fall out there because that many boxes of other classes scored higher; here only person boxes compete.
    Filtering by score before the top-k and the NMS keeps exactly the boxes torchvision keeps above that score (both
    keep the highest scores, and NMS drops a box only for a higher-scoring one)."""

    def __init__(self, model: SSD, network: SSDNetwork) -> None:
        self.hw = input_hw(model)
        self.box_coder = model.box_coder
        self.score_thresh, self.nms_thresh = float(model.score_thresh), float(model.nms_thresh)
        self.topk, self.per_image = int(model.topk_candidates), int(model.detections_per_img)
        with torch.no_grad():  # the anchors depend only on the input size and the feature maps' sizes: made once
            images = network.mean.new_zeros(1, 3, *self.hw)
            features = network.features(images)
            self.anchors = model.anchor_generator(ImageList(images, [self.hw]), features)[0]

    def __call__(
        self, out: torch.Tensor, frame_hw: tuple[int, int], threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Person boxes (N, 4) [x1, y1, x2, y2] in frame pixels and scores (N,), best first, from one image's
        network output (A, 4 + C)."""
        scores = F.softmax(out[:, 4:], dim=-1)[:, COCO_PERSON]
        keep = torch.where((scores > self.score_thresh) & (scores >= threshold))[0]
        scores, idx = scores[keep].topk(min(self.topk, len(keep)))
        keep = keep[idx]
        # decoding and clipping are per anchor: only the kept anchors are decoded
        boxes = self.box_coder.decode_single(out[keep, :4], self.anchors[keep])
        boxes = clip_boxes_to_image(boxes, self.hw)
        kept = nms(boxes, scores, self.nms_thresh)[: self.per_image]
        return resize_boxes(boxes[kept], list(self.hw), list(frame_hw)), scores[kept]

    def input(self, image_bgr: np.ndarray) -> torch.Tensor:
        """A frame as the network's input: `frame_tensor` at this network's size."""
        return frame_tensor(image_bgr, self.hw)


# -- the graph in the user's cache -----------------------------------------------------------------------------------


def graph_key(weights_sha256: str, builder: str, network: SSDNetwork, hw: tuple[int, int]) -> str:
    """What a detector's graph depends on: the weights' bytes, the builder and its structure, the input size, and the
    exporter's versions."""
    parts = [
        weights_sha256,
        builder,
        repr(network),
        f"{hw[0]}x{hw[1]}",
        f"opset {MIN_OPSET}",
        f"clpose {__version__}",
        f"torch {torch.__version__}",
        f"torchvision {torchvision.__version__}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def graph_folder() -> Path:
    """The user's graph cache, or NoGraphCache (one line naming it) where it cannot be written or is a symbolic link
    (the graphs, records and locks would go wherever it points)."""
    folder = user_cache() / "graphs"
    if folder.is_symlink():
        raise NoGraphCache(f"{folder} is a symbolic link: clpose keeps graphs only in a folder of its own")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise NoGraphCache(
            f"no folder to keep the detector's graph in: {folder} cannot be written ({e.strerror or first_line(e)}); "
            "set XDG_CACHE_HOME to a writable folder, or run with --runtime torch"
        ) from None
    return folder


@dataclass
class OutputParity:
    diff: float  # max |graph - torch| over the outputs, relative to the largest |torch| (at least 1)
    inputs: str


def parity_inputs(hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A random image and a rendered synthetic person (no files), at the network's input size."""
    from clpose.data.synthetic import render_sample

    image, _ = render_sample(np.random.default_rng([0, 99]), max(hw))
    return {
        "random": torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0)),
        "real": frame_tensor(image, hw),
    }


def check_outputs(network: SSDNetwork, path: Path, check: GraphCheck) -> list[OutputParity]:
    """The graph at `path`, run by `check`, against torch on `parity_inputs`; a ClposeError past OUTPUT_TOLERANCE."""
    run = check(path)
    found = []
    for name, x in parity_inputs(network.hw).items():
        with torch.no_grad():
            expected = network(x).numpy()
        got = np.asarray(run(x)[0])
        if got.shape != expected.shape:
            raise ClposeError(f"the detector's graph {path} gives outputs {got.shape}, torch {expected.shape}")
        diff = float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))
        if not diff <= OUTPUT_TOLERANCE:  # NaN fails too
            raise ClposeError(
                f"the detector's graph {path} does not reproduce torch on {name} inputs: outputs differ by {diff:.3g} "
                f"of their scale (tolerance {OUTPUT_TOLERANCE})"
            )
        found.append(OutputParity(diff, name))
    return found


def cached_graph(builder: str, weights_sha256: str, network: SSDNetwork, runtime: str, check: GraphCheck) -> Path:
    """The detector's ONNX graph in the user's graph cache: exported and checked by `check` (the runtime that will run
    it, in fp32) on first use, reused while its record names these weights and its bytes are those recorded, and
    checked again before it runs unless this user's clpose checked these bytes with `runtime` (as
    clpose.engine.graph_cache does for the pose network)."""
    key = graph_key(weights_sha256, builder, network, network.hw)
    path = graph_folder() / f"{builder}-{key}.onnx"
    with file_lock(path):
        checked = reuse_checked(
            path, _fresh(path, key), key, runtime, lambda: _worst(check_outputs(network, path, check)),
            f"does not reproduce the {builder} weights",
        )  # fmt: skip
        if not checked:
            _export(builder, weights_sha256, network, path, key, runtime, check)
    return path


def _export(
    builder: str, weights_sha256: str, network: SSDNetwork, path: Path, key: str, runtime: str, check: GraphCheck
) -> None:
    size = f"{network.hw[0]}x{network.hw[1]}"
    console.print(f"exporting the {builder} network to ONNX for this runtime (once per weights file): {path}")
    start = time.perf_counter()
    network.eval()
    with atomic_path(path) as tmp:
        write_onnx(network, torch.zeros(1, 3, *network.hw), tmp, False, False, MIN_OPSET, output_names=[OUTPUT_NAME])
        parity = check_outputs(network, tmp, check)
    graph_sha = sha256(path)
    write_json(
        path.with_suffix(".json"),
        {
            "key": key,
            "builder": builder,
            "weights_sha256": weights_sha256,
            "input_size": size,
            "graph_sha256": graph_sha,
            "clpose": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "opset": MIN_OPSET,
            "parity": [asdict(p) for p in parity],
        },
    )
    remember(graph_sha, key, runtime)
    console.print(f"exported in {time.perf_counter() - start:.1f} s; {_worst(parity)}")


def _worst(parity: list[OutputParity]) -> str:
    return f"max |outputs - torch| {max(p.diff for p in parity):.1e} of their scale (fp32)"


def _fresh(path: Path, key: str) -> str | None:
    """The SHA-256 of a graph made for this key whose bytes are those recorded, else None (made again)."""
    try:
        record: Any = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("key") == key and path.is_file()):
        return None
    graph_sha = sha256(path)
    return graph_sha if record.get("graph_sha256") == graph_sha else None
