"""Affine maths of the top-down pipeline: one 2x3 matrix per sample maps the person box onto the crop.

The matrix composes, in this order: move the box centre to the origin, rotate, shear, scale the box to the
crop, mirror (flip), move the origin to the crop centre ((W - 1) / 2, (H - 1) / 2). Coordinates are OpenCV
pixel coordinates (pixel centres at integers), so a flip of the crop is x' = W - 1 - x, which is what the
codecs' flip-back assumes. The same matrix warps the image (cv2.warpAffine on the host; `warp_batch`, one
grid_sample over many crops, on a device) and moves the keypoints; its inverse maps predictions back to the image.
Nothing else in clpose writes affine maths.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PIXEL_STD = 200.0  # records store box sizes as scale = size / 200 (the convention of the MPII annotations)


def fit_aspect(size_wh: np.ndarray, aspect: float) -> np.ndarray:
    """Grow the box width or height so that width / height == aspect (the whole box stays in view)."""
    w, h = float(size_wh[0]), float(size_wh[1])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([w, h])


def box_size(scale: np.ndarray, output_hw: tuple[int, int], padding: float) -> np.ndarray:
    """Box size (w, h) in pixels for a record's scale: x 200, padded, fitted to the crop's aspect ratio."""
    return fit_aspect(np.asarray(scale, dtype=np.float64) * PIXEL_STD * padding, output_hw[1] / output_hw[0])


def box_to_center_scale(box_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A COCO box [x, y, w, h] to (centre, scale = size / 200), as the SimpleBaseline/HRNet code does."""
    x, y, w, h = (float(v) for v in box_xywh)
    return np.array([x + 0.5 * w, y + 0.5 * h]), np.array([w, h]) / PIXEL_STD


def get_affine(
    center: np.ndarray,
    size_wh: np.ndarray,
    output_hw: tuple[int, int],
    rotation: float = 0.0,
    shear: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """The 2x3 matrix taking image pixels to crop pixels.

    Args:
        center: box centre (x, y) in the image.
        size_wh: box width and height in image pixels (mapped onto the whole crop).
        output_hw: crop size (H, W).
        rotation: degrees; the box is rotated counter-clockwise in the image, so the crop's content turns
            clockwise.
        shear: (sx, sy) shear factors applied in the rotated box frame.
        flip: mirror the crop horizontally.
    """
    h_out, w_out = output_hw
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # linear part: mirror @ scale @ shear @ rotate, written out (this runs for every training sample)
    sx = (-1.0 if flip else 1.0) * w_out / float(size_wh[0])
    sy = h_out / float(size_wh[1])
    shx, shy = shear
    a, b = cos + shx * sin, -sin + shx * cos  # shear @ rotate, first row
    c, d = shy * cos + sin, -shy * sin + cos  # second row
    linear = np.array([[sx * a, sx * b], [sy * c, sy * d]])
    shift = np.array([(w_out - 1) / 2, (h_out - 1) / 2]) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, shift[:, None]], axis=1)


def person_affine(center: np.ndarray, scale: np.ndarray, output_hw: tuple[int, int], padding: float) -> np.ndarray:
    """The plain (unaugmented) crop of a person: the record's centre and scale, padded and fitted to the crop's aspect
    ratio. Evaluation, the PoseModel and the pictures all crop with this."""
    return get_affine(center, box_size(scale, output_hw, padding), output_hw)


def warp(image: np.ndarray, matrix: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    """The crop (H, W): the image through a 2x3 matrix, bilinear, black outside the image."""
    dsize = (int(output_hw[1]), int(output_hw[0]))  # OpenCV's (width, height): clpose's only (W, H)
    return cv2.warpAffine(image, matrix, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (or a stack (..., 2, 3) of them)."""
    m = np.asarray(matrix, dtype=np.float64)
    linear, shift = m[..., :2], m[..., 2:]
    inv = np.linalg.inv(linear)
    return np.concatenate([inv, -inv @ shift], axis=-1)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (..., K, 2) through a 2x3 matrix (or one matrix per leading index, (..., 2, 3))."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]


def half_body_box(
    keypoints: np.ndarray, upper_body: tuple[int, ...], rng: np.random.Generator, aspect: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """The half-body augmentation of the HRNet code: a box around the labelled joints of the upper or the
    lower body. Returns (centre, size (w, h) in pixels), or None when the chosen half has fewer than two
    labelled joints (the caller keeps the person's own box).

    A transcription of `JointsDataset.half_body_transform` in leoxiaobin/deep-high-resolution-net.pytorch,
    lib/dataset/JointsDataset.py at commit 2ad80f22b5b37fb296152bf5f6341885e8d9087c (the only commit touching
    that file), lines 65-108:

    - joints with joints_vis > 0 are split into upper (ids in upper_body_ids) and lower (the rest);
    - `if np.random.randn() < 0.5 and len(upper_joints) > 2`: the upper body (probability P(N(0, 1) < 0.5)
      = 0.6915, and only with at least 3 labelled upper joints); else the lower body
      `if len(lower_joints) > 2 else upper_joints`; then `if len(selected_joints) < 2: return None, None`.
      The normal variate is drawn first, on every call, as there (here from `rng`, so each sample's draws are
      deterministic);
    - centre = the mean of the selected joints (not the middle of their box);
    - w, h = max - min of the selected joints, fitted to the aspect ratio (w > aspect h: h = w / aspect;
      w < aspect h: w = h * aspect); scale = [w / 200, h / 200] * 1.5. HRNet's get_affine_transform
      (lib/utils/transforms.py, same commit) maps scale * 200 pixels onto the crop, so the size in pixels
      is [w, h] * 1.5.

    In HRNet's __getitem__ (same file, lines 145-157) the half-body (c, s) replace the record's and the scale
    augmentation `s = s * np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)` follows; the 1.25 padding is
    applied only when the record is made (lib/dataset/coco.py `_xywh2cs`, same commit), never to this box,
    so the caller must not pad it either. HRNet computes in float32, clpose in float64. One deviation: when
    all the selected joints coincide (a zero-size box, which HRNet passes on to a degenerate warp) this
    returns None.
    """
    labelled = keypoints[:, 2] > 0
    upper = np.zeros(len(keypoints), dtype=bool)
    upper[list(upper_body)] = True
    upper_pts = keypoints[labelled & upper, :2]
    lower_pts = keypoints[labelled & ~upper, :2]
    if rng.standard_normal() < 0.5 and len(upper_pts) > 2:
        pts = upper_pts
    else:
        pts = lower_pts if len(lower_pts) > 2 else upper_pts
    if len(pts) < 2:
        return None
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if not (w > 0 or h > 0):
        return None
    # fit_aspect is HRNet's rule: its `else` also covers w == aspect * h, where w = h * aspect leaves w as it is
    return center, fit_aspect(np.array([w, h]), aspect) * 1.5


def warp_batch(
    images: list[torch.Tensor],
    affines: torch.Tensor,
    output_hw: tuple[int, int],
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crops (B, 3, H, W) float32 with integer values 0..255 through the 2x3 matrices `affines` (source -> crop
    pixels, cv2 convention), bilinear, black outside the image, as `transforms.warp` does.

    Crop b comes from images[b], or with `image_index` from images[image_index[b]] (several people of one video
    frame). One crop per image: the images are padded with black into one canvas (black is what cv2's
    BORDER_CONSTANT blends with at the border too) and one `grid_sample` makes every crop. Several crops per image:
    each image is sampled once with the grids of its crops stacked, so a frame is never copied per person.
    """
    device = images[0].device  # the crops are made where the images are; affines may stay on the host
    if image_index is None:
        h_max = max(int(im.shape[1]) for im in images)
        w_max = max(int(im.shape[2]) for im in images)
        canvas = torch.zeros(len(images), 3, h_max, w_max, dtype=torch.float32, device=device)
        for b, im in enumerate(images):
            canvas[b, :, : im.shape[1], : im.shape[2]] = im
        grid = sampling_grid(affines, output_hw, (h_max, w_max), device)
        crops = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        h, w = output_hw
        crops = torch.empty(len(affines), 3, h, w, dtype=torch.float32, device=device)
        for i, im in enumerate(images):
            rows = torch.nonzero(image_index == i).flatten()
            if len(rows) == 0:
                continue
            grid = sampling_grid(affines[rows.cpu()], output_hw, (int(im.shape[1]), int(im.shape[2])), device)
            out = F.grid_sample(
                im[None].float(), grid.reshape(1, len(rows) * h, w, 2), "bilinear", "zeros", align_corners=False
            )
            crops[rows] = out.reshape(3, len(rows), h, w).transpose(0, 1)
    return crops.round_().clamp_(0, 255)  # warpAffine returns uint8 pixels


def sampling_grid(
    affines: torch.Tensor, output_hw: tuple[int, int], source_hw: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """grid_sample's (B, H, W, 2) grid on `device`: for every crop pixel the source position of the inverse affine,
    in the normalised coordinates of align_corners=False (pixel i's centre at (2 i + 1) / size - 1). The matrices
    are inverted on the host (2x3 each)."""
    h, w = output_hw
    inverse = torch.from_numpy(invert_affine(affines.detach().cpu().numpy())).to(device)  # (B, 2, 3)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (H, W, 3), crop pixel centres
    source = torch.einsum("hwk,bjk->bhwj", points, inverse)  # (B, H, W, 2) source pixels (x, y)
    size = torch.tensor([source_hw[1], source_hw[0]], dtype=torch.float64, device=device)
    return ((2 * source + 1) / size - 1).to(torch.float32)
