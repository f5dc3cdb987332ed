"""Synthetic clips with ground truth (`clpose prepare synthetic --video`): figures that drift, walk or run, turn,
enter the frame part-way through and leave it.

A clip is scripted before a pixel is drawn: every figure's pelvis position and gait per frame come from one numpy
Generator (`script_clip`), so a seed gives the same clip on any machine. A figure is *in* a frame when at least one
of its 16 joints lies inside the image; the ground truth lists only those (`present`).

Walking and running figures (MOTIONS "walk", "fast") keep their pelvis inside a band of the frame and move exactly
`ClipSpec.step` pixels every frame, turning at scheduled frames and at the band's edges. A figure that enters or
leaves crosses the frame's edge straight and level with its pose held (its gait runs only while its pelvis is in the
band), so its joints cross the edge one after the other and never back: it is in every frame from the one it enters
on, and in none from the one it has left on. "drift" is the demo's clip, as it always was: each figure sways between
two poses while drifting slowly across the whole clip (it may graze the edge).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from clpose.config import check_option
from clpose.data.synthetic import Pose, background, draw_figure, pose_joints, random_palette, random_pose
from clpose.errors import ClposeError


@dataclass(frozen=True)
class Motion:
    """How the figures of a clip move: `speed` in frame widths per second (None: the demo's slow drift), `stride`
    gait cycles per second, `turns` the range of seconds between two turns."""

    what: str
    speed: float | None = None
    stride: float = 0.0
    turns: tuple[float, float] = (0.0, 0.0)

    @property
    def help(self) -> str:
        if self.speed is None:
            return self.what
        return (
            f"{self.what} {self.speed:g} frame widths per second, turning every {self.turns[0]:g}-{self.turns[1]:g} s"
        )


MOTIONS: dict[str, Motion] = {
    "drift": Motion("each figure sways between two poses while it drifts slowly across the frame (the demo's clip)"),
    "walk": Motion("figures walk at", 0.15, 1.0, (2.0, 5.0)),
    "fast": Motion("figures run at", 0.6, 2.2, (0.4, 1.2)),
}
MAX_PEOPLE = 32
MAX_FRAMES = 100_000  # an hour at 25 frames/s; the script holds every frame's positions
SIZES = (32, 8192)  # pixels, each side of a frame
MAX_STEP = 0.25  # of the frame width per frame: a figure turned back at the band's edge is inside it again
FIGURE = (0.4, 0.6)  # a walking figure's height, of the frame's shorter side
REACH = 0.8  # no joint is farther from the pelvis than 0.8 x the figure's height (its bones on the way, at most)
BAND_Y = (0.45, 0.65)  # where a walking figure's pelvis stays, of the frame height
MAX_SLOPE = 0.3  # radians off horizontal a walking figure heads


@dataclass(frozen=True)
class ClipSpec:
    """What a clip shows: `frames` frames of width x height at `fps`, `people` figures moving as MOTIONS[motion]
    says (`speed` in frame widths per second replaces the motion's), the last `enter` of them entering part-way
    through and the `leave` before those leaving."""

    frames: int
    width: int = 640
    height: int = 360
    fps: float = 25.0
    people: int = 2
    motion: str = "drift"
    speed: float | None = None
    enter: int = 0
    leave: int = 0

    @property
    def pace(self) -> float | None:
        """Frame widths per second a walking figure travels: `speed`, or the motion's (None for "drift")."""
        return self.speed if self.speed is not None else MOTIONS[self.motion].speed

    @property
    def step(self) -> float | None:
        """Pixels a walking figure's pelvis moves every frame, exactly (None for "drift")."""
        return None if self.pace is None else self.pace * self.width / self.fps

    def roles(self) -> list[str]:
        """Each person's part, by id: "stay", "leave" or "enter"."""
        return ["stay"] * (self.people - self.enter - self.leave) + ["leave"] * self.leave + ["enter"] * self.enter

    def frames_to_leave(self) -> int:
        """Frames a figure may need, at most, from heading out to being out: half the frame to the nearer edge, then
        its farthest joint past it, whatever its size and pose."""
        assert self.step is not None
        farthest = REACH * FIGURE[1] * min(self.width, self.height)
        return math.ceil((self.width / 2 + farthest) / self.step) + 1


def check_clip(spec: ClipSpec) -> None:
    """A ClposeError naming the option (as `clpose prepare synthetic` spells it) unless `spec` can be rendered as
    asked: the one check of a clip's options, made by the command before any work and by `write_video`."""
    counts = [("--frames", spec.frames), ("--video-people", spec.people), ("--video-enter", spec.enter)]
    counts += [("--video-leave", spec.leave), ("--video-size", spec.width), ("--video-size", spec.height)]
    for option, value in counts:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ClposeError(f"{option} must be a whole number, got {value!r}")
    check_option("--frames", spec.frames, ">= 1")
    if spec.frames > MAX_FRAMES:
        raise ClposeError(f"--frames must be at most {MAX_FRAMES}, got {spec.frames}")
    check_option("--video-people", spec.people, f"[1, {MAX_PEOPLE}]")
    for side, value in (("width", spec.width), ("height", spec.height)):
        if not SIZES[0] <= value <= SIZES[1] or value % 2:
            raise ClposeError(
                f"--video-size {spec.width}x{spec.height}: the {side} must be an even number of pixels in "
                f"[{SIZES[0]}, {SIZES[1]}] (the mp4v codec crops an odd side), got {value}"
            )
    check_option("--video-fps", spec.fps, "(0, 1000]")
    if spec.motion not in MOTIONS:
        raise ClposeError(f"--video-motion {spec.motion!r}: expected one of {', '.join(MOTIONS)}")
    walking = MOTIONS[spec.motion].speed is not None
    if spec.speed is not None:
        if not walking:
            raise ClposeError("--video-speed sets how fast figures walk or run: give --video-motion walk or fast")
        check_option("--video-speed", spec.speed, "(0, 10]")
    for option, count in (("--video-enter", spec.enter), ("--video-leave", spec.leave)):
        check_option(option, count, ">= 0")
        if count and not walking:
            raise ClposeError(f"{option} needs figures that walk in or out: add --video-motion walk or fast")
    if spec.enter + spec.leave > spec.people:
        raise ClposeError(
            f"--video-enter {spec.enter} and --video-leave {spec.leave} are {spec.enter + spec.leave} people, "
            f"more than the {spec.people} of --video-people"
        )
    if walking:
        step = spec.step or 0.0
        if step > MAX_STEP * spec.width:
            raise ClposeError(
                f"--video-speed {spec.pace:g} at --video-fps {spec.fps:g} moves a figure "
                f"{step / spec.width:.3g} of the frame width per frame (at most {MAX_STEP:g})"
            )
    if spec.enter and spec.frames < 2:
        raise ClposeError(f"--video-enter needs --frames >= 2 (people enter after the first frame), got {spec.frames}")
    if spec.leave and spec.frames_to_leave() > spec.frames - 1:
        raise ClposeError(
            f"--video-leave: a figure at {spec.pace:g} frame widths per second may "
            f"need {spec.frames_to_leave()} frames to walk out of a {spec.width}x{spec.height} frame; give --frames "
            f">= {spec.frames_to_leave() + 1} or a higher --video-speed"
        )


@dataclass
class Actor:
    """One figure of a clip: its looks, and per frame its pelvis (F, 2) and its gait (F,), 0 at pose a, 1 at b."""

    size: float
    poses: tuple[Pose, Pose]
    palette: dict[str, np.ndarray]
    back: int
    pelvis: np.ndarray
    gait: np.ndarray

    def joints(self, t: int) -> np.ndarray:
        """Joint positions (16, 2) in frame `t`."""
        return pose_joints(lerp_pose(*self.poses, self.gait[t]), self.pelvis[t], self.size)


def lerp_pose(a: Pose, b: Pose, u: float) -> Pose:
    return Pose(
        a.lean + (b.lean - a.lean) * u,
        a.neck + (b.neck - a.neck) * u,
        a.arms + (b.arms - a.arms) * u,
        a.legs + (b.legs - a.legs) * u,
        a.facing,
        a.lengths,
    )


def _upright_poses(rng: np.random.Generator) -> tuple[Pose, Pose]:
    a, b = random_pose(rng), random_pose(rng)
    b.facing, b.lengths = a.facing, a.lengths
    a.lean, b.lean = rng.normal(0, 0.1, 2)  # upright walkers
    return a, b


def script_clip(rng: np.random.Generator, spec: ClipSpec) -> tuple[np.ndarray, list[Actor]]:
    """The clip's fixed background (H, W, 3) and its figures, person id = position in the list."""
    check_clip(spec)
    scene = background(rng, spec.height, spec.width)
    if spec.step is None:
        return scene, [_drifter(rng, spec, p) for p in range(spec.people)]
    return scene, [_walker(rng, spec, role) for role in spec.roles()]


def _drifter(rng: np.random.Generator, spec: ClipSpec, p: int) -> Actor:
    """The demo's figure: the draws and the arithmetic of every earlier clpose, so a seed keeps its clip."""
    width, height, people = spec.width, spec.height, spec.people
    size = rng.uniform(0.55, 0.8) * height
    start = np.array([width * (0.25 + 0.5 * p / max(1, people - 1)) + rng.normal(0, 20), height * 0.55])
    drift = rng.normal(0, width * 0.15, 2) * np.array([1.0, 0.15])
    poses = _upright_poses(rng)
    period = rng.uniform(1.5, 3.0)
    palette, back = random_palette(rng), int(rng.integers(0, 2))
    phases = [t / max(1, spec.frames - 1) for t in range(spec.frames)]
    pelvis = np.array([start + drift * phase for phase in phases])
    gait = np.array([0.5 - 0.5 * math.cos(2 * math.pi * phase * period) for phase in phases])
    return Actor(size, poses, palette, back, pelvis, gait)


def _walker(rng: np.random.Generator, spec: ClipSpec, role: str) -> Actor:
    """A figure that walks or runs at `spec.step` px per frame; `role` "enter" comes in from outside the frame,
    "leave" heads out of it at a scheduled frame and does not come back."""
    width, height, step, motion = spec.width, spec.height, spec.step or 0.0, MOTIONS[spec.motion]
    size = rng.uniform(*FIGURE) * min(width, height)
    poses = _upright_poses(rng)
    stride, phase0 = motion.stride * rng.uniform(0.8, 1.2), rng.uniform(0, 1)
    palette, back = random_palette(rng), int(rng.integers(0, 2))
    margin = 0.25 * size
    band = (np.array([margin, BAND_Y[0] * height]), np.array([width - margin, BAND_Y[1] * height]))
    y = rng.uniform(band[0][1], band[1][1])
    if role == "enter":
        start, heading = _entry(rng, spec, poses, size, lerp_at(phase0), y)
        slope, exit_at = 0.0, None
    else:
        start, heading = np.array([rng.uniform(band[0][0], band[1][0]), y]), float(rng.choice([-1.0, 1.0]))
        slope = rng.uniform(-MAX_SLOPE, MAX_SLOPE)
        last = spec.frames - 1 - spec.frames_to_leave()
        exit_at = int(rng.integers(last // 2, last + 1)) if role == "leave" else None
    pelvis, clock, pos, turn_at, leaving = np.zeros((spec.frames, 2)), np.zeros(spec.frames), start, None, False
    for t in range(spec.frames):
        inside = bool(np.all(pos >= band[0]) and np.all(pos <= band[1]))
        if t > 0:  # the gait runs while the pelvis is in the band, and holds outside it
            clock[t] = clock[t - 1] + inside
        pelvis[t] = pos
        if t == exit_at:  # head for the nearer edge, level: from here on it only walks out
            heading, slope, leaving = (1.0 if pos[0] > width / 2 else -1.0), 0.0, True
        if inside and not leaving:
            if turn_at is None or t >= turn_at:
                if turn_at is not None:
                    heading, slope = float(rng.choice([-1.0, 1.0])), rng.uniform(-MAX_SLOPE, MAX_SLOPE)
                turn_at = t + max(1, round(rng.uniform(*motion.turns) * spec.fps))
            heading, slope = _stay_in(pos, heading, slope, step, band, width)
        pos = pos + step * np.array([heading * math.cos(slope), math.sin(slope)])
    gait = np.array([lerp_at(phase0 + stride * c / spec.fps) for c in clock])
    return Actor(size, poses, palette, back, pelvis, gait)


def lerp_at(phase: float) -> float:
    """The gait (0 at pose a, 1 at pose b) at a phase in cycles."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * phase)


def _entry(
    rng: np.random.Generator, spec: ClipSpec, poses: tuple[Pose, Pose], size: float, gait: float, y: float
) -> tuple[np.ndarray, float]:
    """Pelvis at frame 0 and heading of a figure that comes in from the left or the right, level, its pose held:
    its leading joint (of those whose height is inside the frame) is half a step outside the edge in the frame
    before the one it enters at and half a step inside in that frame."""
    step = spec.step or 0.0
    enters = int(rng.integers(1, max(1, 2 * (spec.frames - 1) // 3) + 1))
    heading = float(rng.choice([-1.0, 1.0]))
    joints = pose_joints(lerp_pose(*poses, gait), np.array([0.0, y]), size)  # the heights exactly as drawn
    offsets = joints[(joints[:, 1] >= 0) & (joints[:, 1] < spec.height), 0]  # the pelvis's own is among them
    # from the left the rightmost joint leads, from the right the leftmost
    x = -offsets.max() + 0.5 * step if heading > 0 else spec.width - offsets.min() - 0.5 * step
    return np.array([x - heading * step * enters, y]), heading


def _stay_in(
    pos: np.ndarray, heading: float, slope: float, step: float, band: tuple[np.ndarray, np.ndarray], width: float
) -> tuple[float, float]:
    """The heading and slope nearest the wanted ones whose next step stays inside the band: as is, turned back,
    mirrored up or down, both, or level towards the middle (always inside: a step is at most a quarter of the
    width, the band at least 0.7 of it)."""
    for h, s in ((heading, slope), (-heading, slope), (heading, -slope), (-heading, -slope)):
        nxt = pos + step * np.array([h * math.cos(s), math.sin(s)])
        if np.all(nxt >= band[0]) and np.all(nxt <= band[1]):
            return h, s
    return (1.0 if pos[0] < width / 2 else -1.0), 0.0


def in_frame(joints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Visibility (..., 16) of joints (..., 16, 2): 2 inside the image, 0 outside (a clip marks no occlusion)."""
    x, y = joints[..., 0], joints[..., 1]
    return np.where((x >= 0) & (x < width) & (y >= 0) & (y < height), 2, 0)


def present(visibility: np.ndarray) -> np.ndarray:
    """Which figures (P,) are in the frame, from their visibility (P, 16): at least one joint inside the image."""
    return (np.asarray(visibility) > 0).any(axis=-1)


def render_video_frames(
    rng: np.random.Generator, spec: ClipSpec
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield, per frame, the image (H, W, 3) BGR uint8, every figure's joints (P, 16, 2) and visibility (P, 16)
    (all 0 for a figure outside the frame), person id = index along P."""
    scene, actors = script_clip(rng, spec)
    ids = np.zeros((spec.height, spec.width), np.uint8)
    for t in range(spec.frames):
        img = scene.copy()
        all_joints = []
        for actor in actors:
            joints = actor.joints(t)
            ids[:] = 0
            draw_figure(img, joints, actor.size, rng, ids, actor.palette, actor.back, actor.poses[0].facing)
            all_joints.append(joints)
        joints = np.array(all_joints)
        yield cv2.GaussianBlur(img, (3, 3), 0.6), joints, in_frame(joints, spec.width, spec.height)
