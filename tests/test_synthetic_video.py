"""Synthetic clips with ground truth for `--detect-every` (issue 33): figures that run, turn, enter and leave the
frame, each with a stable `person` id, and the demo's clip unchanged (clpose/data/synthetic_video.py,
clpose/data/prepare/synthetic.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare.synthetic import read_clip_truth, write_video
from clpose.data.synthetic import Pose, background, draw_figure, pose_joints, random_palette, random_pose
from clpose.data.synthetic_video import ClipSpec, check_clip, in_frame, present, render_video_frames, script_clip
from clpose.errors import ClposeError
from clpose.io import json_text

runner = CliRunner()
PELVIS = 6
# 3 people at 1 frame width per second (12.8 px per frame): person 0 stays, 1 leaves, 2 enters
FAST = {"width": 320, "height": 180, "people": 3, "motion": "fast", "speed": 1.0, "enter": 1, "leave": 1}


@pytest.fixture(scope="module")
def fast_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 30, seed=0, **FAST)


def _truth(clip: Path) -> dict:
    return json.loads(clip.with_suffix(".json").read_text())


def _ids(frame: dict) -> list[int]:
    return [person["person"] for person in frame["people"]]


def test_people_enter_and_leave_at_the_frames_the_ground_truth_names(fast_clip: Path) -> None:
    truth = _truth(fast_clip)
    # the schedule of seed 0, exactly: person 2 enters at frame 18, person 1 has left from frame 19 on
    assert truth["people"] == [
        {"person": 0, "enters": 0, "leaves": None},
        {"person": 1, "enters": 0, "leaves": 19},
        {"person": 2, "enters": 18, "leaves": None},
    ]
    assert [_ids(f) for f in truth["frames"]] == [[0, 1]] * 18 + [[0, 1, 2]] + [[0, 2]] * 11
    for frame in truth["frames"]:  # in the ground truth: at least one joint inside the frame, v as they lie
        for person in frame["people"]:
            kp = np.array(person["keypoints"])
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < 320) & (kp[:, 1] >= 0) & (kp[:, 1] < 180)
            assert inside.any() and np.array_equal(kp[:, 2], np.where(inside, 2.0, 0.0))


@pytest.mark.parametrize(
    "spec",
    [
        ClipSpec(30, 160, 120, 25.0, 4, "fast", 1.0, 2, 1),
        ClipSpec(24, 320, 180, 10.0, 3, "fast", 2.5, 1, 2),
        ClipSpec(140, 320, 180, 25.0, 3, "walk", None, 1, 1),
        ClipSpec(40, 120, 200, 25.0, 2, "fast", 1.5, 1, 1),  # portrait
    ],
    ids=["fast-160x120", "fast-10fps", "walk", "portrait"],
)
def test_every_seed_gives_one_unbroken_stay_in_the_frame_per_person(spec: ClipSpec) -> None:
    """Whatever the seed: those who stay are in every frame, those who enter are out until they enter and in from then
    on, those who leave in until they leave and out from then on; every pelvis moves exactly `step` per frame."""
    check_clip(spec)
    for seed in range(12):
        _, actors = script_clip(np.random.default_rng([seed, 7]), spec)
        joints = np.array([[actor.joints(t) for actor in actors] for t in range(spec.frames)])
        inside = present(in_frame(joints, spec.width, spec.height))  # (F, P)
        for p, role in enumerate(spec.roles()):
            frames = np.flatnonzero(inside[:, p])
            first, end = int(frames[0]), int(frames[-1]) + 1
            assert len(frames) == end - first, (seed, p, inside[:, p])  # no gap
            assert (first > 0) == (role == "enter") and (end < spec.frames) == (role == "leave"), (seed, p, role)
        steps = np.linalg.norm(np.diff(joints[:, :, PELVIS], axis=0), axis=-1)
        np.testing.assert_allclose(steps, spec.step, rtol=0, atol=1e-9)


def test_fast_figures_move_the_asked_distance_every_frame_and_turn(fast_clip: Path) -> None:
    truth = _truth(fast_clip)
    assert truth["motion"] == {"name": "fast", "speed": 1.0, "step": 12.8}  # 1 x 320 px / 25 frames/s
    pelvis: dict[int, list] = {}
    for frame in truth["frames"]:
        for person in frame["people"]:
            pelvis.setdefault(person["person"], []).append((frame["frame"], person["keypoints"][PELVIS][:2]))
    for p, track in pelvis.items():
        frames, xy = np.array([t for t, _ in track]), np.array([q for _, q in track])
        assert np.array_equal(np.diff(frames), np.ones(len(frames) - 1)), p
        # the keypoints are rounded to 3 decimals: 2 x 0.0005 per axis at most
        np.testing.assert_allclose(np.linalg.norm(np.diff(xy, axis=0), axis=1), 12.8, rtol=0, atol=1.5e-3)
    turns = np.diff(np.sign(np.diff(np.array([q for _, q in pelvis[0]])[:, 0])))
    assert np.count_nonzero(turns) >= 1  # the one who stays in 30 frames of 1.2 s turns back at least once


def test_the_boxes_file_has_the_ground_truths_people_frame_by_frame(fast_clip: Path) -> None:
    truth = _truth(fast_clip)
    boxes = json.loads(fast_clip.with_suffix(".boxes.json").read_text())
    by_frame: dict[int, list[int]] = {}
    for box in boxes:
        by_frame.setdefault(box["image_id"], []).append(box["person"])
        assert box["category_id"] == 1 and box["score"] == 1.0 and len(box["bbox"]) == 4
    assert by_frame == {f["frame"]: _ids(f) for f in truth["frames"] if f["people"]}


def test_the_truth_reads_back_as_arrays_by_person(fast_clip: Path, tmp_path: Path) -> None:
    clip = read_clip_truth(fast_clip.with_suffix(".json"))
    truth = _truth(fast_clip)
    assert clip.keypoints.shape == (30, 3, 16, 3) and (clip.width, clip.height, clip.fps) == (320, 180, 25.0)
    assert clip.enters == [0, 0, 18] and clip.leaves == [None, 19, None] and clip.step == 12.8
    assert clip.present[:, 2].tolist() == [False] * 18 + [True] * 12
    assert clip.keypoints[20, 2].tolist() == truth["frames"][20]["people"][1]["keypoints"]
    assert not clip.keypoints[19, 1].any() and not clip.keypoints[17, 2].any()
    old = {k: v for k, v in truth.items() if k != "people"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ClposeError, match=r"has no key 'people'"):
        read_clip_truth(tmp_path / "old.json")
    truth["frames"][3]["people"][0]["person"] = -1  # would index the last person
    (tmp_path / "bad.json").write_text(json.dumps(truth))
    with pytest.raises(ClposeError, match=r"frame 3: person -1 is none of the 3 people"):
        read_clip_truth(tmp_path / "bad.json")


def test_the_same_seed_gives_the_same_clip(tmp_path: Path) -> None:
    spec = ClipSpec(30, 160, 120, 25.0, 3, "fast", 1.0, 1, 1)
    runs = [[f.copy() for f, _, _ in render_video_frames(np.random.default_rng([seed, 7]), spec)] for seed in (4, 4, 5)]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not np.array_equal(runs[0][0], runs[2][0])
    kwargs = {**FAST, "width": 160, "height": 120}
    a, b = (write_video(tmp_path / f"{name}.mp4", 30, seed=4, **kwargs) for name in ("a", "b"))
    for suffix in (".json", ".boxes.json"):
        assert a.with_suffix(suffix).read_bytes() == b.with_suffix(suffix).read_bytes()


# The demo's clip as clpose rendered it before clips had person ids (commit a93c3dd's render_video_frames and
# write_video, kept here word for word): the default clip must stay these pixels and these keypoints.
def _old_lerp(a: Pose, b: Pose, u: float) -> Pose:
    return Pose(
        a.lean + (b.lean - a.lean) * u,
        a.neck + (b.neck - a.neck) * u,
        a.arms + (b.arms - a.arms) * u,
        a.legs + (b.legs - a.legs) * u,
        a.facing,
        a.lengths,
    )


def _old_frames(rng: np.random.Generator, frames: int, width: int, height: int, people: int):
    scene = background(rng, height, width)
    actors = []
    for p in range(people):
        size = rng.uniform(0.55, 0.8) * height
        start = np.array([width * (0.25 + 0.5 * p / max(1, people - 1)) + rng.normal(0, 20), height * 0.55])
        drift = rng.normal(0, width * 0.15, 2) * np.array([1.0, 0.15])
        a, b = random_pose(rng), random_pose(rng)
        b.facing, b.lengths = a.facing, a.lengths
        a.lean, b.lean = rng.normal(0, 0.1, 2)
        actors.append((size, start, drift, a, b, rng.uniform(1.5, 3.0), random_palette(rng), int(rng.integers(0, 2))))
    for t in range(frames):
        img = scene.copy()
        ids = np.zeros((height, width), np.uint8)
        all_joints, all_vis = [], []
        for size, start, drift, a, b, period, palette, back in actors:
            phase = t / max(1, frames - 1)
            u = 0.5 - 0.5 * math.cos(2 * math.pi * phase * period)
            joints = pose_joints(_old_lerp(a, b, u), start + drift * phase, size)
            ids[:] = 0
            draw_figure(img, joints, size, rng, ids, palette, back, a.facing)
            vis = np.array([2 if 0 <= x < width and 0 <= y < height else 0 for x, y in joints])
            all_joints.append(joints)
            all_vis.append(vis)
        yield cv2.GaussianBlur(img, (3, 3), 0.6), np.array(all_joints), np.array(all_vis)


def _old_truth(seed: int, frames: int, width: int, height: int, people: int) -> tuple[str, str, list[np.ndarray]]:
    truth, images = [], []
    for frame, joints, vis in _old_frames(np.random.default_rng([seed, 7]), frames, width, height, people):
        images.append(frame)
        keypoints = [np.round(np.concatenate([j, v[:, None]], 1), 3).tolist() for j, v in zip(joints, vis, strict=True)]
        truth.append({"frame": len(truth), "people": [{"keypoints": kp} for kp in keypoints]})
    record = {"fps": 25.0, "width": width, "height": height, "skeleton": "synthetic", "frames": truth}
    rng, boxes = np.random.default_rng([seed, 8]), []
    for frame in truth:
        for person in frame["people"]:
            kp = np.array(person["keypoints"])[:, :2]
            lo, hi = kp.min(0), kp.max(0)
            size = hi - lo
            lo = lo - 0.08 * size + rng.normal(0, 0.02, 2) * size
            size = size * (1.16 + rng.normal(0, 0.02, 2))
            bbox = [round(float(v), 2) for v in (*lo, *size)]
            boxes.append({"image_id": frame["frame"], "category_id": 1, "bbox": bbox, "score": 1.0})
    return json_text(record, indent=None), json_text(boxes, indent=None), images


@pytest.mark.parametrize(
    ("seed", "frames", "width", "height", "people"),
    [(0, 100, 640, 360, 2), (3, 12, 160, 96, 2), (0, 6, 160, 120, 1), (5, 20, 160, 120, 3)],
    ids=["demo", "infer-tests", "runtimes-tests", "three"],
)
def test_the_default_clip_is_the_clip_clpose_always_rendered(
    tmp_path: Path, seed: int, frames: int, width: int, height: int, people: int
) -> None:
    """Byte for byte once the keys added for person ids ("motion", "people", each "person") are taken out."""
    clip = write_video(tmp_path / "clip.mp4", frames, seed=seed, width=width, height=height, people=people)
    truth, boxes = _truth(clip), json.loads(clip.with_suffix(".boxes.json").read_text())
    assert truth.pop("motion") == {"name": "drift", "speed": None, "step": None}
    assert truth.pop("people") == [{"person": p, "enters": 0, "leaves": None} for p in range(people)]
    for frame in truth["frames"]:
        assert [person.pop("person") for person in frame["people"]] == list(range(people))
    assert [box.pop("person") for box in boxes] == list(range(people)) * frames
    old_truth, old_boxes, old_images = _old_truth(seed, frames, width, height, people)
    assert json_text(truth, indent=None) == old_truth and json_text(boxes, indent=None) == old_boxes
    spec = ClipSpec(frames, width, height, people=people)
    images = [image for image, _, _ in render_video_frames(np.random.default_rng([seed, 7]), spec)]
    assert all(np.array_equal(a, b) for a, b in zip(images, old_images, strict=True))


def test_prepare_renders_a_harder_clip_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["prepare", "synthetic", "--out", str(out), "--train", "2", "--val", "1", "--size", "64", "--workers", "1"]
    clip = ["--video", str(out / "clip.mp4"), "--frames", "30", "--video-size", "320x180", "--video-people", "3"]
    moves = ["--video-motion", "fast", "--video-speed", "1", "--video-enter", "1", "--video-leave", "1"]
    result = runner.invoke(app, [*args, *clip, *moves])
    assert result.exit_code == 0, result.output
    assert (out / "clip.json").read_bytes() == write_video(tmp_path / "api.mp4", 30, seed=0, **FAST).with_suffix(
        ".json"
    ).read_bytes()
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert size == (320, 180) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert "3 people, fast" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--frames", "0"], "--frames must be >= 1, got 0"),
        (["--frames", "100001"], "--frames must be at most 100000, got 100001"),
        (["--video-people", "0"], "--video-people must be in [1, 32], got 0"),
        (["--video-people", "33"], "--video-people must be in [1, 32], got 33"),
        (["--video-size", "1280x721"], "the height must be an even number of pixels in [32, 8192]"),
        (["--video-size", "16x16"], "the width must be an even number of pixels in [32, 8192]"),
        (["--video-size", "1280"], "--video-size '1280' is not WIDTHxHEIGHT in pixels"),
        (["--video-size", "-2x4"], "--video-size '-2x4' is not WIDTHxHEIGHT in pixels"),
        (["--video-fps", "0"], "--video-fps must be in (0, 1000], got 0"),
        (["--video-fps", "nan"], "--video-fps must be in (0, 1000], got nan"),
        (["--video-motion", "jog"], "--video-motion 'jog': expected one of drift, walk, fast"),
        (["--video-speed", "1"], "--video-speed sets how fast figures walk or run: give --video-motion walk or"),
        (["--video-motion", "fast", "--video-speed", "0"], "--video-speed must be in (0, 10], got 0"),
        (["--video-motion", "fast", "--video-speed", "8"], "--video-speed 8 at --video-fps 25 moves a figure 0.32 of"),
        (["--video-motion", "walk", "--video-enter", "-1"], "--video-enter must be >= 0, got -1"),
        (["--video-enter", "1"], "--video-enter needs figures that walk in or out: add --video-motion walk or fast"),
        (["--video-leave", "1"], "--video-leave needs figures that walk in or out"),
        (["--video-motion", "fast", "--video-enter", "2", "--video-leave", "1"], "are 3 people, more than the 2 of"),
        (["--video-motion", "fast", "--frames", "1", "--video-enter", "1"], "--video-enter needs --frames >= 2"),
        (["--video-motion", "walk", "--video-leave", "1"], "may need 130 frames to walk out of a 640x360 frame; give"),
    ],
)
def test_clip_options_out_of_range_are_one_line_errors_before_any_work(
    tmp_path: Path, options: list[str], message: str
) -> None:
    out = tmp_path / "d"
    result = runner.invoke(app, ["prepare", "synthetic", "--out", str(out), "--video", str(out / "c.mp4"), *options])
    one_line_error(result, message)
    assert not out.exists()


@pytest.mark.parametrize("option", [["--video-people", "3"], ["--video-motion", "fast"], ["--video-size", "64x64"]])
def test_clip_options_without_a_clip_are_refused(tmp_path: Path, option: list[str]) -> None:
    result = runner.invoke(app, ["prepare", "synthetic", "--out", str(tmp_path / "d"), *option])
    one_line_error(result, f"{option[0]} describes the --video clip: give --video PATH too")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"people": 2.5}, "--video-people must be a whole number, got 2.5"),
        ({"width": 321}, "the width must be an even"),
        ({"motion": "fast", "speed": float("inf")}, r"--video-speed must be in \(0, 10\], got inf"),
    ],
)
def test_write_video_checks_its_arguments_as_the_command_does(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ClposeError, match=message):
        write_video(tmp_path / "c.mp4", 4, **kwargs)
    assert not list(tmp_path.iterdir())
