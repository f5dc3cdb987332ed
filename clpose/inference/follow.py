"""Detection every N frames (`--detect-every N`): between two detections, a person's box is taken from their own
keypoints of the frame before, as rtmlib's PoseTracker does (Tau-J/rtmlib, rtmlib/tools/solution/pose_tracker.py
at faf6438: `det_frequency`, `pose_to_bbox` with expansion 1.25).

The next box of a person is the box of their confident keypoints (score >= --kpt-threshold) enlarged 1.25 about its
centre (rtmlib uses every keypoint; unconfident ones are where the network guessed, and a box stretched to a guess
drifts); the crop then pads it by the model's box padding as it pads a detector's box. A person is dropped, and the
next frame is a detection frame, when fewer than two keypoints are confident, when the mean keypoint score falls
below --track-score (rtmlib keeps every person until the next scheduled detection), or when the box no longer
overlaps the frame by the rule every box meets (clpose.inference.predictor.box_problem: the person left), or when
two followed boxes have locked onto one person (`same_person`: where two people cross, both crops find the one in
front and would follow it together until the next detection; the other one is lost). So a
person who walks in is found at the next detection, at most N frames later, and a lost one at the very next frame;
an empty scene is detected every N frames, not on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clpose.inference.predictor import box_problem

EXPANSION = 1.25  # rtmlib's pose_to_bbox
MIN_CONFIDENT = 2  # keypoints that make a box with an extent
# two people whose keypoints confident in both lie on average within this fraction of the box size apart are one
# person: two people side by side or one behind the other differ by far more than 0.1 of a body (their joints do
# not coincide), while two crops locked onto one person agree to a few pixels
SAME_PERSON = 0.1


def keypoint_box(keypoints: np.ndarray, confident: np.ndarray, expansion: float = EXPANSION) -> np.ndarray:
    """[x, y, w, h] of the confident keypoints (K, 2), enlarged `expansion` times about its centre."""
    pts = keypoints[confident]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 * expansion
    return np.array([*(centre - half), *(2 * half)])


def same_person(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], threshold: float) -> bool:
    """Whether two people (keypoints (K, 2), confident (K,)) are one: their keypoints confident in both lie on
    average less than SAME_PERSON x the size (the square root of the area) of the first's keypoint box apart."""
    both = a[1] & b[1]
    if int(both.sum()) < MIN_CONFIDENT:
        return False
    size = float(np.sqrt(np.prod(np.ptp(a[0][a[1]], axis=0))))
    return bool(np.linalg.norm(a[0][both] - b[0][both], axis=1).mean() < threshold * max(size, 1.0))


@dataclass
class BoxFollower:
    """Which frames are detected, and the tracked boxes of the others.

    Attributes:
        every: a detection at least every `every` frames (1: every frame, as without it).
        kpt_threshold: keypoints at least this confident make the next box.
        track_score: a person whose mean keypoint score is below this is dropped.
    """

    every: int
    kpt_threshold: float
    track_score: float
    boxes: np.ndarray | None = None  # (M, 4) the tracked people's boxes for the next frame; None: detect it
    box_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) their detections' scores
    since: int = 0  # frames since the last detection
    detections: int = 0
    tracked: int = 0
    dropped: list[str] = field(default_factory=list)  # why people were dropped (for the report)

    def detect_now(self) -> bool:
        """Whether the next frame is a detection frame (and count it)."""
        detect = self.boxes is None or self.since >= self.every
        if detect:
            self.detections, self.since = self.detections + 1, 0
        else:
            self.tracked += 1
        self.since += 1
        return detect

    def update(self, image_hw: tuple[int, int], people: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """The boxes of the next frame from this frame's people, (keypoints (K, 2) in image pixels, scores (K,),
        box score) each, as the network gave them (before smoothing); a person dropped makes the next frame a
        detection frame. A followed box keeps its detection's box score."""
        kept, box_scores, lost = [], [], False
        followed: list[tuple[np.ndarray, np.ndarray]] = []
        # the best-scored first, so that of two crops locked onto one person the better one is kept
        for kp, sc, box_score in sorted(people, key=lambda p: -float(np.mean(p[1]))):
            confident = sc >= self.kpt_threshold
            why = None
            if int(confident.sum()) < MIN_CONFIDENT:
                why = f"fewer than {MIN_CONFIDENT} keypoints scored {self.kpt_threshold:g}"
            elif float(sc.mean()) < self.track_score:
                why = f"mean keypoint score below {self.track_score:g}"
            elif any(same_person(other, (kp, confident), SAME_PERSON) for other in followed):
                why = "followed onto a person already followed (two people crossed)"
            else:
                box = keypoint_box(kp, confident)
                why = box_problem(box, image_hw)
            if why is None:
                followed.append((kp, confident))
                kept.append(box)
                box_scores.append(box_score)
            else:
                lost = True
                self.dropped.append(why)
        # nobody in view and nobody lost: nobody to follow until the next scheduled detection (not a detection on
        # every frame, which would make an empty scene the slowest one)
        self.boxes = None if lost else (np.stack(kept) if kept else np.zeros((0, 4)))
        self.box_scores = np.asarray(box_scores, dtype=np.float64)
