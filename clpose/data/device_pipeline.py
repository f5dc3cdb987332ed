"""The GPU data pipeline (`data.pipeline: gpu`): the workers only read file bytes and draw the augmentation; the
training device decodes, crops, jitters, normalises and encodes the whole batch.

The random draws are the CPU pipeline's (TopDownDataset.crop_geometry with the same (seed, epoch, index)
generator), so a seed gives the same samples on both pipelines up to interpolation: OpenCV's warpAffine rounds
its bilinear weights to 1/32 of a pixel, `grid_sample` does not (tests/test_device_pipeline.py measures the
difference). Keypoints and targets are the same numbers (the keypoints are transformed in the worker, the targets
come from the codec's `encode_batch`, bit-identical to `encode`). Everything here also runs on CPU tensors, which
is how it is tested where no GPU is.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from clpose.codecs import Codec
from clpose.console import warn
from clpose.data.dataset import LUMA_RGB, TopDownDataset, decode_image, normalize_batch
from clpose.data.transforms import warp_batch


class RawSamples(Dataset):
    """What a worker does for the GPU pipeline: the image file's bytes, the crop's affine matrix, flip and jitter
    draws, and the keypoints in crop pixels (a few microseconds of arithmetic besides the file read)."""

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ds = self.dataset
        path = ds.image_file(i)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""  # decoded as a failure on the device side, which warns and gives the sample weight 0
        affine, flipped, jitter = ds.crop_geometry(i)
        keypoints, visible = ds.crop_keypoints(i, affine, flipped)
        return {
            "data": torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8),
            "path": path,
            "affine": torch.from_numpy(affine),
            "jitter": torch.tensor(jitter if jitter is not None else (1.0, 1.0, 1.0), dtype=torch.float64),
            "jittered": jitter is not None,
            "keypoints": torch.from_numpy(keypoints),  # float64: encode_batch computes in float64, as encode does
            "visible": torch.from_numpy(np.asarray(visible, dtype=np.float64)),
            "meta": ds.meta(i, affine, flipped),
        }


def collate_raw(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack everything but the encoded files (of different lengths) and their paths, which stay lists."""
    batch = default_collate([{k: v for k, v in item.items() if k not in ("data", "path")} for item in items])
    batch["data"] = [item["data"] for item in items]
    batch["path"] = [item["path"] for item in items]
    return batch


class DevicePipeline:
    """A batch of RawSamples -> the batch the CPU pipeline would give, on `device`.

    Args:
        codec: the recipe's codec (its `encode_batch` makes the targets on the device).
        device: where the work happens (CUDA for speed; a CPU device works, slowly, for tests).
    """

    def __init__(self, codec: Codec, device: torch.device | str) -> None:
        self.codec = codec
        self.input_hw = tuple(codec.input_hw)
        self.device = torch.device(device)
        self._warned: set[str] = set()

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        images, ok = decode_batch(raw["data"], self.device)
        for path, good in zip(raw["path"], ok, strict=True):
            if not good and path not in self._warned:
                self._warned.add(path)
                warn(f"skipping image {path}: it cannot be decoded (the sample gets weight 0)")
        crops = warp_batch(images, raw["affine"], self.input_hw)  # the host's matrices: no copy back from the GPU
        jittered = raw["jittered"].to(self.device)
        if bool(jittered.any()):
            crops = torch.where(
                jittered[:, None, None, None], jitter_batch(crops, raw["jitter"].to(self.device)), crops
            )
        visible = raw["visible"].to(self.device) * torch.tensor(ok, device=self.device)[:, None]
        keypoints = raw["keypoints"].to(self.device)
        targets = self.codec.encode_batch(keypoints, visible)
        return {
            "image": normalize_batch(crops),
            "targets": targets,
            "keypoints": keypoints.to(torch.float32),
            "visible": visible.to(torch.float32),
            "meta": raw["meta"],
        }


def decode_batch(files: list[torch.Tensor], device: torch.device) -> tuple[list[torch.Tensor], list[bool]]:
    """RGB uint8 (3, H, W) images on `device` and whether each decoded (a failure gives a 1x1 black image).

    On CUDA, JPEGs are decoded together by nvJPEG (torchvision.io.decode_jpeg); other formats, and files nvJPEG
    refuses, are decoded on the host by `decode_image` (the CPU pipeline's decoder), which is also what a CPU
    device uses, so there the pixels are the CPU pipeline's exactly.
    """
    images: list[torch.Tensor | None] = [None] * len(files)
    if device.type == "cuda":
        jpeg = [i for i, f in enumerate(files) if len(f) > 2 and f[0] == 0xFF and f[1] == 0xD8]
        if jpeg:
            from torchvision.io import ImageReadMode, decode_jpeg

            try:
                decoded = decode_jpeg([files[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
                for i, image in zip(jpeg, decoded, strict=True):
                    images[i] = image
            except (RuntimeError, TypeError):  # one damaged file fails a batch (or torchvision < 0.19: no lists)
                for i in jpeg:
                    with contextlib.suppress(RuntimeError):  # damaged: the host tries below (OpenCV reads some)
                        images[i] = decode_jpeg(files[i], mode=ImageReadMode.RGB, device=device)
    ok = [True] * len(files)
    for i, f in enumerate(files):
        if images[i] is None:
            bgr = decode_image(f.numpy()) if len(f) else None
            if bgr is None:
                ok[i] = False
                images[i] = torch.zeros(3, 1, 1, dtype=torch.uint8, device=device)
            else:
                images[i] = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))).to(device)
    return images, ok  # type: ignore[return-value]


def jitter_batch(crops: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """The CPU pipeline's colour jitter (dataset.jitter_matrix) on RGB crops (B, 3, H, W) with integer values:
    brightness b, contrast c and saturation s as one affine colour map per crop, rounded and clipped to 0..255
    as OpenCV's saturating uint8 transform does. `factors` is (B, 3): (b, c, s)."""
    b, c, s = (factors[:, i].to(torch.float32)[:, None, None] for i in range(3))
    luma = torch.tensor(LUMA_RGB, dtype=torch.float32, device=crops.device)
    eye = torch.eye(3, dtype=torch.float32, device=crops.device)
    sat = s * eye + (1 - s) * luma[None, None, :]  # (B, 3, 3): x -> g + s (x - g), g the luma
    mean = b[:, 0, 0] * torch.einsum("bchw,c->b", crops, luma) / (crops.shape[2] * crops.shape[3])
    matrix = c * b * sat
    out = torch.einsum("bij,bjhw->bihw", matrix, crops) + ((1 - c[:, 0, 0]) * mean)[:, None, None, None]
    return out.round_().clamp_(0, 255)


class DeviceLoader:
    """A DataLoader of RawSamples whose batches come out through a DevicePipeline: what the training loop
    iterates when `data.pipeline` is gpu (it sees the same batches as from the CPU pipeline)."""

    def __init__(self, loader: Any, pipeline: DevicePipeline) -> None:
        self.loader, self.pipeline = loader, pipeline

    def __iter__(self) -> Any:
        for raw in self.loader:
            yield self.pipeline(raw)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def sampler(self) -> Any:
        return self.loader.sampler


def resolve_pipeline(choice: str, device: torch.device) -> str:
    """auto -> gpu on CUDA (the workers cannot keep a GPU fed: docs/benchmarks.md measures their data wait), cpu
    elsewhere (on a CPU the worker processes are the parallelism)."""
    if choice == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return choice
