"""The `clpose vis` pictures (skeletons are drawn by clpose.drawing, which `infer` uses too).

`vis targets` shows, for a few samples, what the network is asked to predict: the augmented crop with its
keypoints and skeleton, the stride-S grid, and for a few joints the sparse heatmap, the cells of Omega
(activation >= tau, outlined), each such cell's offset as an arrow from the cell centre, and the decoded
keypoint against the ground truth with its error in pixels. `vis dataset` tiles augmented samples.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from clpose.codecs import Codec
from clpose.data.dataset import TopDownDataset, denormalize, read_image
from clpose.data.records import Records
from clpose.data.transforms import apply_affine, person_affine, warp
from clpose.drawing import draw_pose
from clpose.errors import ClposeError
from clpose.io import atomic_path, write_image

GT_BGR, PRED_BGR = (60, 255, 60), (255, 60, 255)


def _label(image: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    """`image` with a dark title bar on top."""
    bar = np.full((height, image.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def _zoom(points: np.ndarray, zoom: int) -> np.ndarray:
    """Crop pixel coordinates (centres at integers) to the pixel coordinates of a `zoom` x resized crop."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * zoom - 0.5


def _grid(image: np.ndarray, stride: int, zoom: int) -> None:
    h, w = image.shape[:2]
    for x in range(0, w // zoom + 1, stride):
        cv2.line(image, (x * zoom, 0), (x * zoom, h - 1), (200, 200, 200), 1)
    for y in range(0, h // zoom + 1, stride):
        cv2.line(image, (0, y * zoom), (w - 1, y * zoom), (200, 200, 200), 1)


def _decode(codec: Codec, sample: dict) -> np.ndarray:
    keypoints, _ = codec.decode_targets(sample["targets"])
    return keypoints[0].numpy()


def _joint_panel(
    base: np.ndarray, sample: dict, codec: Codec, k: int, name: str, decoded: np.ndarray, zoom: int
) -> np.ndarray:
    heat = codec.target_map(sample["targets"], k)
    h, w = base.shape[:2]
    s = codec.stride
    up = np.zeros((h, w), np.float32)
    hp, wp = heat.shape
    up[: hp * s * zoom, : wp * s * zoom] = cv2.resize(
        heat, (wp * s * zoom, hp * s * zoom), interpolation=cv2.INTER_NEAREST
    )
    colored = cv2.applyColorMap((np.clip(up, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    panel = cv2.addWeighted(base, 0.45, colored, 0.55, 0)
    _grid(panel, s, zoom)
    gt = _zoom(sample["keypoints"][k].numpy(), zoom)
    for centre, tip in codec.votes(sample["targets"], k):  # the cells that vote for the joint, and where they point
        c = _zoom(centre, zoom)
        x0, y0 = round((centre[0] - s / 2) * zoom), round((centre[1] - s / 2) * zoom)  # the cell's zoomed corner
        cv2.rectangle(panel, (x0, y0), (x0 + s * zoom, y0 + s * zoom), (255, 255, 255), 2)
        b = _zoom(tip, zoom)
        cv2.arrowedLine(
            panel,
            (round(c[0]), round(c[1])),
            (round(b[0]), round(b[1])),
            (255, 255, 255),
            1,
            cv2.LINE_AA,
            tipLength=0.15,
        )
    g = (round(gt[0]), round(gt[1]))
    cv2.drawMarker(panel, g, GT_BGR, cv2.MARKER_CROSS, 14, 2)
    p = _zoom(decoded[k], zoom)
    cv2.circle(panel, (round(p[0]), round(p[1])), 6, PRED_BGR, 2, cv2.LINE_AA)
    err = float(np.linalg.norm(decoded[k] - sample["keypoints"][k].numpy()))
    return _label(panel, f"{name}: decoded - truth = {err:.3f} px")


def render_targets(dataset: TopDownDataset, index: int, zoom: int = 2, joints: int = 4) -> np.ndarray:
    """One picture of sample `index`: the crop with skeleton and grid, then `joints` joint panels."""
    sample = dataset[index]
    codec, skeleton = dataset.codec, dataset.skeleton
    crop = denormalize(sample["image"])
    h, w = crop.shape[:2]
    base = cv2.resize(crop, (w * zoom, h * zoom), interpolation=cv2.INTER_LINEAR)
    weights = sample["targets"]["keypoint_weights"].numpy()
    overview = base.copy()
    _grid(overview, codec.stride, zoom)
    draw_pose(overview, _zoom(sample["keypoints"].numpy(), zoom), skeleton, weights, threshold=0.5)
    decoded = _decode(codec, sample)
    usable = np.flatnonzero(weights > 0)
    err = np.linalg.norm(decoded - sample["keypoints"].numpy(), axis=1)[usable]
    meta = sample["meta"]
    title = (
        f"#{index} image {meta['image_id']}{' flipped' if meta['flipped'] else ''}: {len(usable)}/{len(weights)} "
        f"keypoints in crop, max decode error {err.max() if len(err) else 0:.3f} px"
    )
    panels = [_label(overview, f"crop, keypoints, {codec.stride}-px grid")]
    chosen = (
        usable[np.linspace(0, len(usable) - 1, min(joints, len(usable))).round().astype(int)] if len(usable) else []
    )
    for k in chosen:
        panels.append(_joint_panel(base, sample, codec, int(k), skeleton.keypoints[k], decoded, zoom))
    return _label(np.concatenate(panels, axis=1), title, 26)


def render_dataset_sheet(dataset: TopDownDataset, indices: list[int], columns: int = 4) -> np.ndarray:
    """Augmented samples with their keypoints, tiled `columns` wide."""
    tiles = []
    for i in indices:
        sample = dataset[i]
        crop = denormalize(sample["image"])
        draw_pose(
            crop, sample["keypoints"].numpy(), dataset.skeleton, sample["targets"]["keypoint_weights"].numpy(), 0.5
        )
        flip = " flip" if sample["meta"]["flipped"] else ""
        tiles.append(_label(crop, f"#{i}{flip}", 18))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not write_image(tmp, image):
            raise OSError(f"could not write {path}")


def available(records: Records) -> list[int]:
    """Indices of the people whose image file exists (samples of a partial download can still be drawn)."""
    exists = [(records.image_dir / img["file"]).is_file() for img in records.images]
    people = [i for i in range(len(records)) if exists[records.image_index[i]]]
    if not people:
        raise ClposeError(f"none of the {len(records.images)} images of {records.path} exist under {records.image_dir}")
    return people


def pick(candidates: list[int], num: int, seed: int) -> list[int]:
    """`num` distinct sample indices out of `candidates`, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(candidates, size=min(num, len(candidates)), replace=False).tolist())


__all__ = ["render_dataset_sheet", "render_targets"]


def render_predictions(
    predictor, records: Records, indices: list[int], columns: int = 4, side: int = 256, threshold: float = 0.3
) -> np.ndarray:
    """Predicted skeletons on people of `records` (their own boxes), each tile the person's padded box."""
    tiles = []
    for i in indices:
        image = read_image(records.image_path(i))
        box = records.boxes[i] if not np.isnan(records.boxes[i]).any() else None
        (pose,) = predictor.predict(image, None if box is None else box[None])
        affine = person_affine(records.centers[i], records.scales[i], (side, side), predictor.pose.box_padding)
        tile = warp(image, affine, (side, side))
        draw_pose(tile, apply_affine(pose.keypoints, affine), predictor.skeleton, pose.scores, threshold)
        tiles.append(_label(tile, f"#{i} mean score {pose.scores.mean():.2f}", 18))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    return np.concatenate([np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)])
