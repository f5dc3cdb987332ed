"""Procedural human-like figures in the MPII 16-joint layout: the built-in data of `clpose demo`.

A figure is a kinematic tree (pelvis -> thorax -> neck -> head, shoulders -> elbows -> wrists, hips -> knees
-> ankles) with joint-angle limits and limb-length proportions of a person, drawn as filled capsules and
ellipses. Left limbs are darker and carry a light band, so left and right are told apart by appearance and
not by position (figures face the camera or away from it at random). Figures are scaled, rotated, truncated
by the image border and partly hidden by occluders (those joints get v = 1, joints outside the image v = 0),
on cluttered backgrounds with distractor limbs. A network has to find the joints, not a colour.

Everything is drawn with OpenCV from one numpy Generator, so a seed gives the same images on any machine.
Clips of these figures moving (`clpose prepare synthetic --video`) are scripted in clpose/data/synthetic_video.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

K = 16
# parent of each MPII joint in the tree (pelvis 6 is the root), and the bone each joint ends
R_ANKLE, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANKLE, PELVIS, THORAX, NECK, HEAD = range(10)
R_WRIST, R_ELBOW, R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST = range(10, 16)
# (a, b, thickness as a fraction of the figure height, part) for every capsule
LIMBS = [
    (R_HIP, R_KNEE, 0.085, "legs"),
    (R_KNEE, R_ANKLE, 0.065, "legs"),
    (L_HIP, L_KNEE, 0.085, "legs"),
    (L_KNEE, L_ANKLE, 0.065, "legs"),
    (R_SHOULDER, R_ELBOW, 0.06, "arms"),
    (R_ELBOW, R_WRIST, 0.05, "skin"),
    (L_SHOULDER, L_ELBOW, 0.06, "arms"),
    (L_ELBOW, L_WRIST, 0.05, "skin"),
]
LEFT_JOINTS = {L_HIP, L_KNEE, L_ANKLE, L_SHOULDER, L_ELBOW, L_WRIST}


@dataclass
class Figure:
    """One drawn person: joints (16, 2) in image pixels, visibility (16,) in {0, 1, 2}, head box."""

    joints: np.ndarray
    visibility: np.ndarray
    head_box: np.ndarray  # x1, y1, x2, y2
    height: float


def _unit(angle: float) -> np.ndarray:
    """Direction of `angle` radians, measured from straight down (image y grows downwards)."""
    return np.array([math.sin(angle), math.cos(angle)])


@dataclass
class Pose:
    """Angles (radians) and proportions that define a figure; interpolating two Poses moves it smoothly."""

    lean: float  # torso angle from upright
    neck: float
    arms: np.ndarray  # (2, 2): [right, left] x [shoulder angle from hanging, elbow flexion]
    legs: np.ndarray  # (2, 2): [right, left] x [hip angle from hanging, knee flexion]
    facing: float  # +1 faces the camera (its left on image right), -1 faces away
    lengths: np.ndarray  # (8,) jitter of the limb lengths


def random_pose(rng: np.random.Generator) -> Pose:
    lean = rng.normal(0, 0.25) if rng.random() < 0.85 else rng.uniform(-math.pi, math.pi)
    arms = np.stack([rng.uniform(-0.5, 2.9, 2), rng.uniform(0, 2.5, 2)], axis=1)
    legs = np.stack([rng.normal(0.15, 0.35, 2).clip(-0.6, 1.9), rng.uniform(0, 2.0, 2) ** 1.3], axis=1)
    return Pose(lean, rng.normal(0, 0.15), arms, legs, 1.0 if rng.random() < 0.5 else -1.0, rng.uniform(0.92, 1.08, 8))


def pose_joints(pose: Pose, pelvis: np.ndarray, height: float, rotation: float = 0.0) -> np.ndarray:
    """Joint positions (16, 2) of a pose whose pelvis is at `pelvis` and whose height is `height` px."""
    j = np.zeros((K, 2))
    up = pose.lean + rotation + math.pi  # torso points up
    side = np.array([math.cos(pose.lean + rotation), -math.sin(pose.lean + rotation)])  # figure's right-to-left
    side *= pose.facing  # facing the camera: the figure's left is on the image's right
    lengths = pose.lengths
    j[PELVIS] = pelvis
    j[THORAX] = pelvis + 0.30 * height * _unit(up)
    j[NECK] = j[THORAX] + 0.075 * height * _unit(up + pose.neck)
    j[HEAD] = j[NECK] + 0.13 * height * _unit(up + 1.3 * pose.neck)
    for s, (shoulder, elbow, wrist, hip, knee, ankle) in enumerate(
        [(R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_KNEE, R_ANKLE), (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_KNEE, L_ANKLE)]
    ):
        sign = -1.0 if s == 0 else 1.0  # right side to -side, left side to +side
        out = sign * pose.facing  # abduction turns the limb away from the body
        j[shoulder] = j[THORAX] + sign * 0.11 * height * side + 0.02 * height * _unit(up - math.pi)
        j[hip] = pelvis + sign * 0.07 * height * side
        base = pose.lean + rotation
        upper = base + out * pose.arms[s, 0]
        j[elbow] = j[shoulder] + 0.17 * height * lengths[s] * _unit(upper)
        j[wrist] = j[elbow] + 0.15 * height * lengths[2 + s] * _unit(upper + out * pose.arms[s, 1])
        thigh = base + out * pose.legs[s, 0]
        j[knee] = j[hip] + 0.24 * height * lengths[4 + s] * _unit(thigh)
        j[ankle] = j[knee] + 0.23 * height * lengths[6 + s] * _unit(thigh - out * pose.legs[s, 1] * 0.8)
    return j


def _color(rng: np.random.Generator, low: int = 30, high: int = 230) -> np.ndarray:
    return rng.integers(low, high, 3).astype(np.float64)


def background(rng: np.random.Generator, height: int, width: int | None = None) -> np.ndarray:
    """Gradient + noise + random shapes + distractor limbs, (height, width, 3) BGR uint8."""
    width = width or height
    size = min(height, width)
    a, b = _color(rng, 0, 255), _color(rng, 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * np.linspace(0, 1, width)[None, :] + math.sin(angle) * np.linspace(0, 1, height)[:, None]
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    img = (a + (b - a) * ramp[..., None]).astype(np.float32)
    img += rng.normal(0, rng.uniform(2, 14), (height, width, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(4, 14)):
        color = tuple(int(c) for c in _color(rng, 0, 255))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(size // 40, size // 5))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        else:
            x2, y2 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(img, (x, y), (x2, y2), color, int(rng.integers(1, 6)), cv2.LINE_AA)
    for _ in range(rng.integers(0, 3)):  # distractor limbs: skin- and cloth-coloured capsules, no joints
        p = rng.uniform(0, 1, 2) * (width, height)
        q = p + rng.normal(0, size / 6, 2)
        _capsule(img, p, q, rng.uniform(0.02, 0.05) * size, _skin(rng))
    return img


def _skin(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(60, 200), rng.uniform(90, 210), rng.uniform(130, 240)])  # BGR


def _capsule(
    img: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    thickness: float,
    color: np.ndarray,
    ids: np.ndarray | None = None,
    part: int = 0,
) -> None:
    t = max(1, round(thickness))
    c = tuple(float(v) for v in color)
    pa, pb = (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))
    cv2.line(img, pa, pb, c, t, cv2.LINE_AA)
    cv2.circle(img, pa, max(1, t // 2), c, -1, cv2.LINE_AA)
    cv2.circle(img, pb, max(1, t // 2), c, -1, cv2.LINE_AA)
    if ids is not None:
        cv2.line(ids, pa, pb, part, t)
        cv2.circle(ids, pa, max(1, t // 2), part, -1)
        cv2.circle(ids, pb, max(1, t // 2), part, -1)


def draw_figure(
    img: np.ndarray,
    joints: np.ndarray,
    height: float,
    rng: np.random.Generator,
    ids: np.ndarray,
    palette: dict[str, np.ndarray],
    back_side: int,
    facing: float,
) -> np.ndarray:
    """Draw a figure (back limbs, torso, head, front limbs); returns its head box. `ids` gets part numbers
    1..10 (torso 1, head 2, limbs 3..10) so visibility can be read back per joint.

    What tells left from right, as on a person: the left limbs and the left half of the torso are darker (the
    left limbs also carry a light band), and the head shows a face (eyes, mouth) when the figure faces the
    camera (`facing` +1) and hair when it faces away (-1).
    """
    side_limbs = [[], []]  # right limbs, left limbs
    for n, (a, b, thick, part) in enumerate(LIMBS):
        side_limbs[1 if a in LEFT_JOINTS else 0].append((n, a, b, thick, part))

    def limbs(s: int) -> None:
        for n, a, b, thick, part in side_limbs[s]:
            color = palette[part] * (0.55 if s == 1 else 1.0)
            _capsule(img, joints[a], joints[b], thick * height, color, ids, 3 + n)
            if s == 1:  # a light band across the middle of every left limb
                mid = (joints[a] + joints[b]) / 2
                d = (joints[b] - joints[a]) * 0.12
                _capsule(img, mid - d, mid + d, thick * height * 1.02, np.minimum(palette[part] + 90, 255))
            cv2.circle(
                img,
                tuple(round(v) for v in joints[b]),
                max(1, round(thick * height * 0.45)),
                tuple(float(v) for v in palette["skin"] * (0.8 if s == 1 else 1.0)),
                -1,
                cv2.LINE_AA,
            )

    limbs(back_side)
    torso = np.array([joints[R_SHOULDER], joints[L_SHOULDER], joints[L_HIP], joints[R_HIP]])
    center = torso.mean(axis=0)
    torso = center + (torso - center) * 1.18
    top, bottom = (torso[0] + torso[1]) / 2, (torso[2] + torso[3]) / 2
    for half, shade in (((torso[0], top, bottom, torso[3]), 1.0), ((top, torso[1], torso[2], bottom), 0.6)):
        pts = np.round(np.array(half)).astype(np.int32)  # right half, then the darker left half
        cv2.fillPoly(img, [pts], tuple(float(v) for v in palette["torso"] * shade), cv2.LINE_AA)
        cv2.fillPoly(ids, [pts], 1)
    _capsule(img, joints[THORAX], joints[NECK], 0.05 * height, palette["skin"], ids, 1)
    axis = joints[HEAD] - joints[NECK]
    head_center = joints[NECK] + 0.5 * axis
    length = float(np.linalg.norm(axis))
    angle = math.degrees(math.atan2(axis[1], axis[0]))
    size = (max(1, round(length * 0.62)), max(1, round(length * 0.42)))
    hc = (round(head_center[0]), round(head_center[1]))
    cv2.ellipse(img, hc, size, angle, 0, 360, tuple(float(v) for v in palette["skin"]), -1, cv2.LINE_AA)
    cv2.ellipse(ids, hc, size, angle, 0, 360, 2, -1)
    _face(img, head_center, axis, length, palette, facing)
    limbs(1 - back_side)
    r = max(size)
    return np.array([hc[0] - r, hc[1] - r, hc[0] + r, hc[1] + r], dtype=np.float64)


def _face(img: np.ndarray, center: np.ndarray, axis: np.ndarray, length: float, palette: dict, facing: float) -> None:
    """Eyes and a mouth on a figure facing the camera; hair over the head of one facing away."""
    up = axis / max(length, 1e-6)
    across = np.array([-up[1], up[0]])
    if facing > 0:
        r = max(1, round(length * 0.07))
        for side in (-1, 1):
            eye = center + 0.12 * length * up + side * 0.15 * length * across
            cv2.circle(img, (round(eye[0]), round(eye[1])), r, (40, 40, 40), -1, cv2.LINE_AA)
        a, b = center - 0.15 * length * up - 0.1 * length * across, center - 0.15 * length * up + 0.1 * length * across
        cv2.line(
            img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), (60, 40, 140), max(1, r // 2 + 1), cv2.LINE_AA
        )
    else:
        hair = center + 0.08 * length * up
        angle = math.degrees(math.atan2(up[1], up[0]))
        axes = (max(1, round(length * 0.5)), max(1, round(length * 0.4)))
        cv2.ellipse(
            img,
            (round(hair[0]), round(hair[1])),
            axes,
            angle,
            0,
            360,
            tuple(float(v) for v in palette["hair"]),
            -1,
            cv2.LINE_AA,
        )


def _own_parts() -> list[set[int]]:
    """Part numbers (in the id map) that may cover each joint without hiding it."""
    parts: list[set[int]] = [set() for _ in range(K)]
    for n, (a, b, _, _) in enumerate(LIMBS):
        parts[a].add(3 + n)
        parts[b].add(3 + n)
    for joint in (R_HIP, L_HIP, R_SHOULDER, L_SHOULDER, PELVIS, THORAX, NECK):
        parts[joint] |= {1}
    parts[NECK] |= {2}
    parts[HEAD] |= {1, 2}
    parts[THORAX] |= {2}
    return parts


OWN_PARTS = _own_parts()


def render_sample(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, Figure]:
    """One image (BGR uint8, size x size) with one annotated figure (and sometimes an unannotated one)."""
    img = background(rng, size)
    if rng.random() < 0.15:  # a second, unannotated person in the background
        other = pose_joints(random_pose(rng), rng.uniform(0, size, 2), rng.uniform(0.3, 0.6) * size)
        draw_figure(img, other, 0.45 * size, rng, np.zeros((size, size), np.uint8), random_palette(rng), 0, 1.0)
    height = rng.uniform(0.38, 0.85) * size
    pose = random_pose(rng)
    joints = pose_joints(pose, np.zeros(2), height, rotation=rng.normal(0, 0.2))
    joints += _placement(rng, person_box(joints, height), size)
    ids = np.zeros((size, size), np.uint8)
    head_box = draw_figure(img, joints, height, rng, ids, random_palette(rng), int(rng.integers(0, 2)), pose.facing)
    for _ in range(rng.integers(0, 3) if rng.random() < 0.35 else 0):
        _occluder(img, ids, rng, joints, height)
    visibility = _visibility(joints, ids, size)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return img, Figure(joints, visibility, head_box, height)


def _placement(rng: np.random.Generator, box: np.ndarray, size: int) -> np.ndarray:
    """Offset that puts the box inside the image (80%) or lets up to a third of it leave the image (20%)."""
    allowed = 0.0 if rng.random() < 0.8 else rng.uniform(0.1, 0.33)
    lo = -box[:2] - allowed * box[2:]
    hi = size - box[:2] - box[2:] + allowed * box[2:]
    hi = np.maximum(hi, lo)  # a box larger than the image: any offset in between
    return rng.uniform(lo, hi)


def random_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shirt = _color(rng)
    return {
        "torso": shirt,
        "arms": shirt * rng.uniform(0.8, 1.1),
        "legs": _color(rng),
        "skin": _skin(rng),
        "hair": _color(rng, 10, 90),
    }


def _occluder(img: np.ndarray, ids: np.ndarray, rng: np.random.Generator, joints: np.ndarray, height: float) -> None:
    """A textured rectangle or ellipse over part of the figure; id 255 hides whatever it covers."""
    c = joints[rng.integers(0, K)] + rng.normal(0, 0.1 * height, 2)
    w, h = rng.uniform(0.08, 0.3, 2) * height
    color = tuple(float(v) for v in _color(rng, 0, 255))
    box = np.round([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]).astype(int)
    if rng.random() < 0.5:
        cv2.rectangle(img, tuple(box[:2]), tuple(box[2:]), color, -1)
        cv2.rectangle(ids, tuple(box[:2]), tuple(box[2:]), 255, -1)
    else:
        center, axes = (round(c[0]), round(c[1])), (max(1, round(w / 2)), max(1, round(h / 2)))
        cv2.ellipse(img, center, axes, 0, 0, 360, color, -1, cv2.LINE_AA)
        cv2.ellipse(ids, center, axes, 0, 0, 360, 255, -1)


def _visibility(joints: np.ndarray, ids: np.ndarray, size: int) -> np.ndarray:
    """2 where the joint is drawn by its own parts, 1 where something else covers it, 0 outside the image."""
    vis = np.zeros(K, dtype=np.int64)
    for k, (x, y) in enumerate(joints):
        if not (0 <= x < size and 0 <= y < size):
            continue
        owner = int(ids[int(y), int(x)])
        vis[k] = 2 if owner in OWN_PARTS[k] or owner == 0 else 1
    return vis


def person_box(joints: np.ndarray, height: float) -> np.ndarray:
    """[x, y, w, h] around every joint (also those outside the image) with a margin for limb thickness."""
    lo = joints.min(axis=0) - 0.06 * height
    hi = joints.max(axis=0) + 0.06 * height
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
