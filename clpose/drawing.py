"""A skeleton drawn on an image: limbs coloured by body side, keypoints filled by score (`clpose infer`'s annotated
outputs and the `clpose vis` pictures)."""

from __future__ import annotations

import cv2
import numpy as np

from clpose.skeletons import Skeleton

SIDE_BGR = {"left": (235, 150, 40), "right": (40, 110, 245), "centre": (60, 200, 60)}
FAR = 1e9  # pixels: inside OpenCV's int range (2^31), which it clips to the image itself; far beyond any image


def score_color(score: float) -> tuple[int, int, int]:
    """Red (0) -> yellow (0.5) -> green (1), BGR."""
    s = float(np.clip(score, 0.0, 1.0))
    return (40, int(255 * min(1.0, 2 * s)), int(255 * min(1.0, 2 * (1 - s))))


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Skeleton,
    scores: np.ndarray | None = None,
    threshold: float = 0.3,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw limbs (coloured by body side) and keypoints (filled by score, outlined by side) in place.

    Args:
        keypoints: (K, 2) in `image` pixels.
        scores: (K,) confidences or visibilities; keypoints below `threshold` are not drawn. None draws all.
    """
    k = skeleton.num_keypoints
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.ones(k) if scores is None else np.asarray(scores, dtype=np.float64)
    # OpenCV takes C ints: a keypoint farther off than FAR (NaN, inf, 1e308) is not drawn, nor are its limbs
    ok = (scores >= threshold) & (np.abs(keypoints) <= FAR).all(axis=1)
    size = max(image.shape[:2])
    t = thickness or max(1, round(size / 250))
    radius = max(2, round(size / 120))
    pts = [(round(float(x)), round(float(y))) if ok[j] else (0, 0) for j, (x, y) in enumerate(keypoints)]
    for a, b in skeleton.edges:
        if ok[a] and ok[b]:
            side = skeleton.side(a) if skeleton.side(a) == skeleton.side(b) else "centre"
            cv2.line(image, pts[a], pts[b], SIDE_BGR[side], t, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, pts[j], radius, score_color(scores[j]), -1, cv2.LINE_AA)
        cv2.circle(image, pts[j], radius, SIDE_BGR[skeleton.side(j)], max(1, t // 2 + 1), cv2.LINE_AA)
    return image
