"""Detection every N frames (`--detect-every N`): between two detections, a person's box is taken from their own
keypoints of the frame before, as rtmlib's PoseTracker does (Tau-J/rtmlib, rtmlib/tools/solution/pose_tracker.py
at faf6438: `det_frequency`, `pose_to_bbox` with expansion 1.25).

The next box of a person is the box of their confident keypoints (score >= --kpt-threshold): rtmlib uses every
keypoint (unconfident ones are where the network guessed, and a box stretched to a guess drifts) and enlarges it 1.25
times. Here the box keeps the size the detector gave that person, and its centre keeps the detector's offset from
the keypoints' centre (as a fraction of the keypoints' box), measured at the detection frame: the network sees a
followed person cropped as it saw them detected, and a box rebuilt from keypoints each frame does not grow or shrink
with their errors. On the synthetic clip of docs/inference.md (figures running 15 px a frame), rtmlib's rule cost
12.4 PCK points at N = 5 and 15.5 at N = 10, this one 3.7 and 6.0 (`benchmarks/bench_detect_every.py`, seed 1). A
person whose box did not come from a detector (none here) gets rtmlib's 1.25. The box also moves on by the
keypoints' motion of the last frame (constant velocity).

A person is dropped, and the next frame is a detection frame, when fewer than two keypoints are confident, when the
mean keypoint score falls below --track-score (rtmlib keeps every person until the next scheduled detection), when
the box no longer overlaps the frame by the rule every box meets (clpose.inference.predictor.box_problem: the person
left), or when two followed boxes have locked onto one person (`same_person`: where two people cross, both crops find
the one in front and would follow it together until the next detection; the other one is lost). So a person who
walks in is found at the next detection, at most N frames later, and a lost one at the very next frame; an empty
scene is detected every N frames, not on every frame.
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


@dataclass(frozen=True)
class Shape:
    """The box a detector gave a person, measured against their keypoints' box on that frame: its size in pixels
    (`size`; None: rtmlib's 1.25 x the keypoints' box, for a box no detector gave) and its centre's offset from the
    keypoints' centre as a fraction of the keypoints' box size (`offset`)."""

    size: np.ndarray | None
    offset: np.ndarray

    @staticmethod
    def of(box: np.ndarray, tight: np.ndarray) -> Shape:
        extent = np.maximum(tight[2:], 1.0)
        offset = np.clip((box[:2] + box[2:] / 2 - (tight[:2] + tight[2:] / 2)) / extent, -0.5, 0.5)
        return Shape(np.asarray(box[2:], dtype=np.float64), offset)

    def box(self, tight: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """The box of this shape about the keypoints' box `tight`, moved by `shift` pixels."""
        extent = np.maximum(tight[2:], 1.0)
        size = self.size if self.size is not None else EXPANSION * extent
        centre = tight[:2] + tight[2:] / 2 + self.offset * extent + shift
        return np.array([*(centre - size / 2), *size])


RTMLIB = Shape(None, np.zeros(2))  # a person whose box is not a detector's: rtmlib's rule


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
    detected: bool = False  # whether the frame being predicted is a detection frame
    shapes: list[Shape] = field(default_factory=list)  # per followed box: the shape its detector gave it
    centres: list[np.ndarray] = field(default_factory=list)  # per followed box: its keypoints' centre this frame

    def detect_now(self) -> bool:
        """Whether the next frame is a detection frame (and count it)."""
        detect = self.boxes is None or self.since >= self.every
        if detect:
            self.detections, self.since = self.detections + 1, 0
        else:
            self.tracked += 1
        self.since += 1
        self.detected = detect
        return detect

    def update(
        self,
        image_hw: tuple[int, int],
        people: list[tuple[np.ndarray, np.ndarray, float]] | list[tuple[np.ndarray, np.ndarray, float, np.ndarray]],
    ) -> None:
        """The boxes of the next frame from this frame's people, (keypoints (K, 2) in image pixels, scores (K,),
        box score[, the box they were cropped from]) each, in the order of the frame's boxes (a tracked frame's are
        this follower's `boxes`), as the network gave them (before smoothing); a person dropped makes the next frame
        a detection frame. A followed box keeps its detection's box score and shape."""
        kept, box_scores, shapes, centres, lost = [], [], [], [], False
        followed: list[tuple[np.ndarray, np.ndarray]] = []
        # the best-scored first, so that of two crops locked onto one person the better one is kept
        order = sorted(range(len(people)), key=lambda i: -float(np.mean(people[i][1])))
        for i in order:
            kp, sc, box_score = people[i][:3]
            confident = sc >= self.kpt_threshold
            why = None
            if int(confident.sum()) < MIN_CONFIDENT:
                why = f"fewer than {MIN_CONFIDENT} keypoints scored {self.kpt_threshold:g}"
            elif float(sc.mean()) < self.track_score:
                why = f"mean keypoint score below {self.track_score:g}"
            elif any(same_person(other, (kp, confident), SAME_PERSON) for other in followed):
                why = "followed onto a person already followed (two people crossed)"
            else:
                tight = keypoint_box(kp, confident, 1.0)
                centre = tight[:2] + tight[2:] / 2
                shape, shift = self._shape_and_shift(i, people[i], tight, centre)
                box = shape.box(tight, shift)
                why = box_problem(box, image_hw)
            if why is None:
                followed.append((kp, confident))
                kept.append(box)
                box_scores.append(box_score)
                shapes.append(shape)
                centres.append(centre)
            else:
                lost = True
                self.dropped.append(why)
        # nobody in view and nobody lost: nobody to follow until the next scheduled detection (not a detection on
        # every frame, which would make an empty scene the slowest one)
        self.boxes = None if lost else (np.stack(kept) if kept else np.zeros((0, 4)))
        self.box_scores = np.asarray(box_scores, dtype=np.float64)
        self.shapes, self.centres = shapes, centres

    def _shape_and_shift(
        self, i: int, person: tuple, tight: np.ndarray, centre: np.ndarray
    ) -> tuple[Shape, np.ndarray]:
        """The person's box shape (measured on a detection frame, carried on a tracked one) and the motion to add."""
        if not self.detected and i < len(self.shapes):
            return self.shapes[i], centre - self.centres[i]  # constant velocity: the last frame's motion again
        if len(person) > 3:
            return Shape.of(np.asarray(person[3], dtype=np.float64), tight), np.zeros(2)
        return RTMLIB, np.zeros(2)
