"""TopDownDataset: one person per sample -> normalised crop, the codec's targets, and the meta to map back.

Augmentation (training only) follows the strong baselines (docs/datasets.md): random scale, rotation (with a
probability), shear (the paper's addition), horizontal flip with the skeleton's flip pairs, half-body crops
and colour jitter, every probability and range a recipe option. The random numbers of sample i in epoch e
come from a generator seeded with (seed, e, i), so a run is reproducible whatever the number of workers and
whichever worker draws the sample.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import simplejpeg
import torch
from torch.utils.data import DataLoader, Dataset

from clpose.codecs import Codec
from clpose.config import AugmentConfig
from clpose.console import warn
from clpose.data.records import Records
from clpose.data.transforms import apply_affine, box_size, get_affine, half_body_box, person_affine, warp
from clpose.errors import ClposeError
from clpose.skeletons import Skeleton

MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # annotations refer to the raw pixel array


def load_image(path: Any) -> np.ndarray | None:
    """BGR uint8 (H, W, 3) pixels of an image file as stored (EXIF orientation ignored), or None when it is
    missing or cannot be decoded (`decode_image`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return decode_image(data)


def decode_image(data: bytes | np.ndarray) -> np.ndarray | None:
    """BGR uint8 (H, W, 3) pixels of an encoded image, or None when it cannot be decoded.

    JPEGs are decoded by libjpeg-turbo's TurboJPEG API (simplejpeg): the same pixels as cv2.imread, bit for bit,
    in 15% less time (docs/benchmarks.md), which is most of a training sample's cost. Other formats, and JPEGs
    that TurboJPEG refuses (truncated, unusual), go to OpenCV, so the result is always cv2.imread's.
    """
    data = bytes(data) if isinstance(data, np.ndarray) else data
    if not data:  # a zero-byte file: OpenCV asserts on an empty buffer
        return None
    if data[:2] == b"\xff\xd8":
        try:
            return simplejpeg.decode_jpeg(data, colorspace="BGR")
        except ValueError:
            pass
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), READ_FLAGS)
    except cv2.error:  # OpenCV asserts on some damaged files instead of returning None
        return None


def read_image(path: Any, context: str = "") -> np.ndarray:
    """BGR uint8 image, or a ClposeError naming the file (and `context`, e.g. the record it belongs to)."""
    image = load_image(path)
    if image is None:
        raise ClposeError(f"image {path} is missing or cannot be decoded{context}")
    return image


LUMA_RGB = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma: the grey that colour saturation moves towards
_LUMA_BGR = np.array(LUMA_RGB[::-1], dtype=np.float32)
# to RGB, / 255, - mean, / std as one 3x4 colour matrix on a BGR pixel: out = M @ [b, g, r, 1]
_NORMALIZE = np.zeros((3, 4), dtype=np.float32)
_NORMALIZE[[0, 1, 2], [2, 1, 0]] = 1.0 / (255.0 * STD_RGB)
_NORMALIZE[:, 3] = -MEAN_RGB / STD_RGB


def jitter_matrix(crop_bgr: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Brightness, saturation and contrast as one 3x4 colour matrix on BGR pixels.

    All three are affine in the pixel: brightness x -> b x; saturation x -> g + s (x - g) with g the luma;
    contrast x -> c (x - m) + m with m the mean luma after brightness (saturation keeps the luma).
    """
    sat = saturation * np.eye(3, dtype=np.float32) + (1 - saturation) * np.outer(np.ones(3), _LUMA_BGR)
    mean = brightness * float(np.dot(cv2.mean(crop_bgr)[:3], _LUMA_BGR))
    matrix = np.zeros((3, 4), dtype=np.float32)
    matrix[:, :3] = contrast * brightness * sat
    matrix[:, 3] = (1 - contrast) * mean
    return matrix


def normalize(crop_bgr: np.ndarray, jitter: tuple[float, float, float] | None = None) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB float (3, H, W) with ImageNet mean/std, after optional colour jitter.

    Args:
        jitter: (brightness, contrast, saturation) factors, 1 = unchanged. Jittered values are clipped to
            0..255 (cv2.transform saturates uint8), as a camera would.
    """
    if jitter is not None:
        crop_bgr = cv2.transform(crop_bgr, jitter_matrix(crop_bgr, *jitter))
    x = cv2.transform(crop_bgr.astype(np.float32), _NORMALIZE)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def normalize_batch(crops: torch.Tensor) -> torch.Tensor:
    """RGB crops (B, 3, H, W), 0..255, on any device -> ImageNet-normalised float32, as `normalize` does per crop
    (the device pipeline and the PoseModel's GPU crops)."""
    mean = torch.tensor(MEAN_RGB, device=crops.device)[None, :, None, None]
    std = torch.tensor(STD_RGB, device=crops.device)[None, :, None, None]
    return (crops / 255.0 - mean) / std


def denormalize(image: torch.Tensor) -> np.ndarray:
    """The inverse of `normalize` (without jitter): (3, H, W) tensor -> BGR uint8 (H, W, 3), for drawing."""
    x = image.detach().cpu().numpy().transpose(1, 2, 0) * STD_RGB + MEAN_RGB
    return np.ascontiguousarray(np.clip(x[:, :, ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8))


class TopDownDataset(Dataset):
    """Person crops for training and evaluation.

    Args:
        records: the split's people (clpose.data.records).
        skeleton: keypoint metadata (flip pairs, upper body).
        codec: encodes the crop's keypoints into targets; its input_hw must equal `input_hw`.
        input_hw: crop size (H, W).
        train: apply augmentation.
        augment: augmentation settings (defaults of AugmentConfig when None).
        box_padding: person box enlargement.
        seed: base seed of the per-sample random generators.
    """

    def __init__(
        self,
        records: Records,
        skeleton: Skeleton,
        codec: Codec,
        input_hw: tuple[int, int],
        train: bool = True,
        augment: AugmentConfig | None = None,
        box_padding: float = 1.25,
        seed: int = 0,
    ) -> None:
        if tuple(codec.input_hw) != tuple(input_hw):
            raise ClposeError(f"the codec encodes {codec.input_hw} (HxW) crops but the dataset makes {tuple(input_hw)}")
        if records.keypoints.shape[1] != skeleton.num_keypoints:
            raise ClposeError(
                f"records {records.path} have {records.keypoints.shape[1]} keypoints but skeleton "
                f"{skeleton.name} has {skeleton.num_keypoints}"
            )
        self.records, self.skeleton, self.codec = records, skeleton, codec
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.train = train
        self.augment = augment or AugmentConfig()
        self.box_padding = box_padding
        self.seed = seed
        self.epoch = 0
        self.flip_index = np.array(skeleton.flip_index)
        self._paths = [str(records.image_dir / img["file"]) for img in records.images]  # no Path work per sample
        self._skipped: set[str] = set()  # undecodable images warned about (per worker process)
        self.on_bad_image: Literal["next", "black", "error"] = "next" if train else "error"
        self.first_epoch: int | None = None  # warnings about damaged images are given in this epoch only

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws each epoch (workers get the dataset again every epoch)."""
        self.epoch = epoch
        if self.first_epoch is None:
            self.first_epoch = epoch

    def _augment(self, i: int, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, tuple, bool, tuple]:
        """Draw (centre, box size, rotation, shear, flip, jitter) for sample i (few generator calls: this runs
        for every sample)."""
        a = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, i])
        normal = rng.standard_normal(4)  # scale, rotation, shear x, shear y
        uniform = rng.random(6)  # half-body, rotation, flip, three jitter factors
        h, w = self.input_hw
        center = self.records.centers[i]
        size = box_size(self.records.scales[i], self.input_hw, self.box_padding)
        if uniform[0] < a.half_body_prob and int((keypoints[:, 2] > 0).sum()) > a.half_body_min_keypoints:
            half = half_body_box(keypoints, self.skeleton.upper_body, rng, w / h)
            if half is not None:
                center, size = half
        sf, rf, shf = a.scale_factor, a.rotation_factor, a.shear_factor
        size = size * min(max(normal[0] * sf + 1, 1 - sf), 1 + sf)
        rotation = min(max(normal[1] * rf, -2 * rf), 2 * rf) if uniform[1] < a.rotation_prob else 0.0
        shear = (min(max(normal[2] * shf, -2 * shf), 2 * shf), min(max(normal[3] * shf, -2 * shf), 2 * shf))
        flip = bool(uniform[2] < a.flip_prob)
        j = a.color_jitter
        jitter = tuple(float(v) for v in 1 - j + 2 * j * uniform[3:]) if j > 0 else None
        return center, size, float(rotation), shear, flip, jitter

    def crop_geometry(self, i: int) -> tuple[np.ndarray, bool, tuple | None]:
        """(affine 2x3, flipped, jitter) of sample i: augmented in training, the plain box otherwise."""
        keypoints = self.records.keypoints[i]
        if not self.train:
            return (
                person_affine(self.records.centers[i], self.records.scales[i], self.input_hw, self.box_padding),
                False,
                None,
            )
        center, size, rotation, shear, flip, jitter = self._augment(i, keypoints)
        return get_affine(center, size, self.input_hw, rotation, shear, flip), flip, jitter

    def _image(self, i: int) -> tuple[int, np.ndarray]:
        """(index, pixels) of sample i, by `on_bad_image` when its image cannot be decoded: "next" (training) skips
        it with a warning naming it and the next person whose image decodes takes its place, so one damaged file
        found in the middle of a long run does not end it; "black" (validation during training) gives a black
        image, so the person counts as missed and the run goes on; "error" (`clpose eval`) stops naming the file
        and the record. Warnings are given in the first epoch only (workers start afresh every epoch)."""
        records = self.records
        for attempt in range(min(len(self), 100) if self.on_bad_image == "next" else 1):
            j = (i + attempt) % len(self)
            image = load_image(self._paths[records.image_index[j]])
            if image is not None:
                return j, image
            if self.on_bad_image == "error":
                break
            path = self._paths[records.image_index[j]]
            if path not in self._skipped and self.first_epoch in (None, self.epoch):
                self._skipped.add(path)
                what = "skipping image" if self.on_bad_image == "next" else "a black image for"
                warn(f"{what} {path}: it cannot be decoded (people[{j}] of {records.path})")
            if self.on_bad_image == "black":
                img = records.images[records.image_index[j]]
                return j, np.zeros((max(1, int(img["height"])), max(1, int(img["width"])), 3), np.uint8)
        return i, read_image(records.image_path(i), f" (people[{i}] of {records.path})" if records.path else "")

    def image_file(self, i: int) -> str:
        """The image file of sample i."""
        return self._paths[self.records.image_index[i]]

    def crop_keypoints(self, i: int, affine: np.ndarray, flipped: bool) -> tuple[np.ndarray, np.ndarray]:
        """(K, 2) keypoints of sample i in crop pixels and their (K,) labels, reordered when the crop is flipped."""
        keypoints = apply_affine(self.records.keypoints[i, :, :2], affine)
        visible = self.records.keypoints[i, :, 2]
        if flipped:
            keypoints, visible = keypoints[self.flip_index], visible[self.flip_index]
        return keypoints, visible

    def meta(self, i: int, affine: np.ndarray, flipped: bool) -> dict[str, Any]:
        records = self.records
        return {
            "index": i,
            "image_id": records.image_id(i),
            "affine": torch.from_numpy(affine),
            "center": torch.from_numpy(records.centers[i].copy()),
            "scale": torch.from_numpy(records.scales[i].copy()),
            "box_score": float(records.box_scores[i]),
            "flipped": flipped,
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        i, image = self._image(i)
        affine, flipped, jitter = self.crop_geometry(i)
        crop = warp(image, affine, self.input_hw)
        keypoints, visible = self.crop_keypoints(i, affine, flipped)
        targets = self.codec.encode(keypoints, visible)
        sample: dict[str, Any] = {"targets": {name: torch.from_numpy(value) for name, value in targets.items()}}
        sample["image"] = normalize(crop, jitter)
        sample["keypoints"] = torch.from_numpy(keypoints.astype(np.float32))
        sample["visible"] = torch.from_numpy(visible.astype(np.float32))
        sample["meta"] = self.meta(i, affine, flipped)
        return sample


def worker_init(worker_id: int) -> None:
    """Data-loader workers: one OpenCV thread each (the workers are the parallelism). A forked worker has it
    already (WorkerLoader); calling cv2.setNumThreads there would hang once the parent has used OpenCV's thread
    pool, so only a spawned or forkserver worker (a fresh OpenCV) sets it here."""
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


class WorkerLoader(DataLoader):
    """A DataLoader whose worker processes start with OpenCV on one thread: the parent switches to one thread
    while it forks them and switches back after, which is safe where setting it inside a forked child is not."""

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return super().__iter__()
        finally:
            cv2.setNumThreads(threads)
