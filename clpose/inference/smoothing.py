"""Temporal smoothing for video: a One-Euro filter per keypoint, and greedy IoU tracking so that the filter
follows the same person from frame to frame.

One-Euro (Casiez, Roussel and Vogel, CHI 2012): an exponential smoother whose cutoff frequency rises with the
signal's speed, cutoff = min_cutoff + beta x |speed|: still keypoints are smoothed hard (jitter disappears),
fast ones lightly (no lag). Measurements whose keypoint score is below a threshold are not fed to the filter:
the keypoint keeps its last filtered position rather than jumping to an unreliable one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from clpose.inference.predictor import Pose


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter over arrays (e.g. K x 2 keypoints), element-wise.

    Args:
        min_cutoff: cutoff frequency (Hz) at rest; lower = smoother.
        beta: speed coefficient (per pixel/s); higher = less lag on fast motion.
        d_cutoff: cutoff of the speed estimate (Hz).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None  # filtered value
        self.dx: np.ndarray | None = None  # filtered speed
        self.t: np.ndarray | None = None  # time of each element's last measurement fed to the filter
        self.started: np.ndarray | None = None  # elements that have had a valid measurement

    def __call__(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """Filtered value of measurement `x` at time `t` (s). Elements where `valid` is False are not fed to the
        filter (value, speed and time stay as they were) and keep their previous filtered value, or show the
        measurement before their first valid one. Each element is the paper's filter of one signal: the period is
        the time since that element's last valid measurement."""
        x = np.asarray(x, dtype=np.float64)
        valid = np.ones(x.shape, dtype=bool) if valid is None else np.broadcast_to(np.asarray(valid, bool), x.shape)
        if self.x is None or self.dx is None or self.t is None or self.started is None:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), np.full(x.shape, float(t))
            self.started = valid.copy()
            return self.x.copy()
        update = valid & self.started
        restart = ~self.started  # not yet a valid measurement: take this one as it is
        te = np.maximum(t - self.t, 1e-6)
        dx = (x - self.x) / te
        dx_hat = self.dx + _alpha(self.d_cutoff, te) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        x_hat = self.x + _alpha(cutoff, te) * (x - self.x)
        self.x = np.where(update, x_hat, np.where(restart, x, self.x))
        self.dx = np.where(update, dx_hat, np.where(restart, 0.0, self.dx))
        self.t = np.where(update | restart, float(t), self.t)
        self.started = self.started | valid
        return self.x.copy()


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of [x, y, w, h] boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Track:
    box: np.ndarray
    last_seen: int
    filter: OneEuro | None = None


@dataclass
class PoseTracker:
    """Greedy IoU association of people across frames (stable track ids), with optional One-Euro smoothing.

    Args:
        smooth: apply a One-Euro filter to each track's keypoints.
        iou_threshold: the least IoU with a track's last box for a person to continue that track.
        max_age: frames a track survives without a match.
        score_threshold: keypoints below this score do not update the filter.
    """

    smooth: bool = False
    min_cutoff: float = 1.0
    beta: float = 0.05
    iou_threshold: float = 0.3
    max_age: int = 10
    score_threshold: float = 0.3
    tracks: dict[int, _Track] = field(default_factory=dict)
    next_id: int = 0

    def update(self, poses: list[Pose], frame: int, t: float) -> list[Pose]:
        """Give each pose a track id (and smoothed keypoints when `smooth`), in place; returns the poses."""
        ids = list(self.tracks)
        pairs = []
        if ids and poses:
            overlap = iou(np.array([self.tracks[i].box for i in ids]), np.array([p.box for p in poses]))
            pairs = sorted(((overlap[r, c], r, c) for r in range(len(ids)) for c in range(len(poses))), reverse=True)
        used_tracks, used_poses = set(), set()
        for value, r, c in pairs:  # greedy: best overlap first
            if value < self.iou_threshold or r in used_tracks or c in used_poses:
                continue
            used_tracks.add(r)
            used_poses.add(c)
            poses[c].track_id = ids[r]
        for c, pose in enumerate(poses):
            if c not in used_poses:
                pose.track_id = self.next_id
                self.tracks[self.next_id] = _Track(pose.box, frame)
                self.next_id += 1
            track = self.tracks[pose.track_id]
            track.box, track.last_seen = pose.box, frame
            if self.smooth:
                if track.filter is None:
                    track.filter = OneEuro(self.min_cutoff, self.beta)
                valid = (pose.scores >= self.score_threshold)[:, None]
                pose.keypoints = track.filter(pose.keypoints, t, valid)
        self.tracks = {i: tr for i, tr in self.tracks.items() if frame - tr.last_seen <= self.max_age}
        return poses
