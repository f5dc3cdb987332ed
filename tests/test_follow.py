"""Detection every N frames (clpose.inference.follow) and the overlapped loop (clpose.inference.pipeline), by hand:
which frames are detected, the boxes followed from keypoints, when a person is dropped, frames in order, every frame
written after a stop, and a writer's error raised in the calling thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from clpose.inference.follow import EXPANSION, SAME_PERSON, BoxFollower, keypoint_box, same_person
from clpose.inference.pipeline import FrameReader, OutputWriter


def _person(x: float, y: float, score: float = 0.9, k: int = 4) -> tuple[np.ndarray, np.ndarray, float]:
    """Four keypoints at the corners of a 20 x 40 rectangle whose top-left is (x, y)."""
    kp = np.array([[x, y], [x + 20, y], [x, y + 40], [x + 20, y + 40]], dtype=np.float64)[:k]
    return kp, np.full(k, score), 0.8


def test_the_followed_box_is_the_confident_keypoints_enlarged_as_rtmlib() -> None:
    kp = np.array([[10.0, 20.0], [30.0, 20.0], [10.0, 60.0], [500.0, 500.0]])
    confident = np.array([True, True, True, False])  # the fourth is a guess: it does not stretch the box
    box = keypoint_box(kp, confident)
    # keypoints span x 10..30, y 20..60: centre (20, 40), half-size (10, 20) x 1.25
    np.testing.assert_allclose(box, [20 - 12.5, 40 - 25.0, 25.0, 50.0])
    assert EXPANSION == 1.25


def test_detections_every_n_frames_and_boxes_followed_between() -> None:
    follower = BoxFollower(every=3, kpt_threshold=0.3, track_score=0.3)
    plan = []
    for frame in range(7):
        plan.append(follower.detect_now())
        follower.update((480, 640), [_person(100 + 5 * frame, 50)])
        if frame == 0:
            np.testing.assert_allclose(follower.boxes, [[97.5, 45.0, 25.0, 50.0]])  # followed into frame 1
            assert follower.box_scores.tolist() == [0.8]  # the detection's score goes along
    assert plan == [True, False, False, True, False, False, True]
    assert (follower.detections, follower.tracked) == (3, 4)


@pytest.mark.parametrize(
    ("person", "why"),
    [
        (_person(100, 50, score=0.2), "fewer than 2 keypoints scored 0.3"),
        (_person(100, 50, k=1), "fewer than 2 keypoints scored 0.3"),
        ((_person(100, 50)[0], np.array([0.9, 0.9, 0.05, 0.05]), 0.8), "mean keypoint score below 0.5"),
        (_person(700, 50), "lies outside the 640x480 image"),  # walked out of the frame
    ],
)
def test_a_person_lost_makes_the_next_frame_a_detection_frame(person, why: str) -> None:
    follower = BoxFollower(every=10, kpt_threshold=0.3, track_score=0.5)
    assert follower.detect_now()  # the first frame
    follower.update((480, 640), [_person(100, 50, score=0.9), person])
    assert follower.boxes is None and why in follower.dropped[0]
    assert follower.detect_now() and follower.detections == 2  # the very next frame, not 10 frames later


def test_an_empty_scene_is_detected_every_n_frames_not_every_frame() -> None:
    follower = BoxFollower(every=4, kpt_threshold=0.3, track_score=0.3)
    plan = []
    for _ in range(9):
        plan.append(follower.detect_now())
        follower.update((480, 640), [])  # nobody there, nobody lost
    assert plan == [True, False, False, False, True, False, False, False, True]
    assert follower.boxes.shape == (0, 4)


def test_the_reader_keeps_the_order_and_a_stop_ends_it() -> None:
    reader = FrameReader(iter(range(100)), depth=4)
    got = []
    for item in reader:
        got.append(item)
        if item == 10:
            break
    reader.stop()
    assert got == list(range(11))
    assert list(FrameReader(iter(range(20)), depth=3)) == list(range(20))


def test_the_reader_hands_its_error_to_the_caller() -> None:
    def frames():
        yield 1
        raise OSError("the camera went away")

    reader = FrameReader(frames())
    with pytest.raises(OSError, match="the camera went away"):
        list(reader)


def test_the_writer_writes_everything_handed_to_it_in_order_even_after_a_stop() -> None:
    written, gate = [], threading.Event()

    def write(index: int) -> None:
        gate.wait(5)  # the writer is slow: the queue fills while the caller goes on
        written.append(index)

    writer = OutputWriter(write, depth=3)
    handed = []
    for i in range(4):  # 3 wait in the queue, 1 is being written: the pipeline is full
        writer.put(i)
        handed.append(i)
    gate.set()  # ... then Ctrl-C: the caller stops handing over and closes
    writer.close()
    assert written == handed == [0, 1, 2, 3]


def test_a_failed_write_is_raised_in_the_caller_and_the_rest_is_not_written() -> None:
    written = []

    def write(index: int) -> None:
        if index == 2:
            raise OSError(28, "No space left on device")
        written.append(index)

    writer = OutputWriter(write, depth=8)
    for i in range(5):
        writer.put(i)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert written == [0, 1]


def test_the_stages_overlap() -> None:
    """Reading and writing in their threads while the caller works: three 20 ms stages of 10 items take about
    10 x 20 ms, not 10 x 60 ms (time.sleep releases the GIL as OpenCV and the runtimes do)."""

    def frames():
        for i in range(10):
            time.sleep(0.02)
            yield i

    writer = OutputWriter(lambda i: time.sleep(0.02), depth=4)
    start = time.perf_counter()
    for _ in FrameReader(frames(), depth=4):
        time.sleep(0.02)
        writer.put(0)
    writer.close()
    assert time.perf_counter() - start < 0.45  # 0.6 s one after the other


def test_two_crops_locked_onto_one_person_keep_the_better_one_and_detect_next() -> None:
    # one person is 0.1 x sqrt(20 x 40) = 2.83 px: keypoints on average closer than that are one person's
    follower = BoxFollower(every=10, kpt_threshold=0.3, track_score=0.3)
    follower.detect_now()
    kp, sc, _ = _person(100, 50)
    follower.update((480, 640), [(kp + 1.9, np.full(4, 0.8), 0.7), (kp, sc, 0.8)])  # 2.69 px apart: one person
    assert follower.boxes is None and follower.dropped == [
        "followed onto a person already followed (two people crossed)"
    ]
    follower.detect_now()
    follower.update((480, 640), [(kp + 2.1, np.full(4, 0.8), 0.7), (kp, sc, 0.8), _person(140, 50)])  # 2.97 px: two
    assert follower.boxes is not None and len(follower.boxes) == 3 and len(follower.dropped) == 1
    np.testing.assert_allclose(follower.box_scores, [0.8, 0.8, 0.7])  # the better-scored first
    assert SAME_PERSON == 0.1
    confident = np.ones(4, dtype=bool)
    assert same_person((kp, confident), (kp + 1.9, confident), SAME_PERSON)
    assert not same_person((kp, confident), (kp + 2.1, confident), SAME_PERSON)
    few = np.array([True, False, False, False])  # one keypoint in common: no evidence either way
    assert not same_person((kp, few), (kp, few), SAME_PERSON)


def test_a_followed_box_keeps_its_detections_size_and_offset_and_moves_on() -> None:
    follower = BoxFollower(every=10, kpt_threshold=0.3, track_score=0.3)
    assert follower.detect_now()
    kp, sc, _ = _person(100, 50)  # keypoints span x 100..120, y 50..90: centre (110, 70), box 20 x 40
    detector_box = np.array([96.0, 40.0, 30.0, 60.0])  # centre (111, 70): 0.05 of the width right of the keypoints'
    follower.update((480, 640), [(kp, sc, 0.8, detector_box)])
    np.testing.assert_allclose(follower.boxes, [detector_box])  # no motion yet: the detector's box again
    assert not follower.detect_now()
    follower.update((480, 640), [(kp + np.array([6.0, -2.0]), sc, 0.8, follower.boxes[0])])  # moved 6 px right, 2 up
    # the keypoints' centre (116, 68) + the offset 0.05 x 20 + the last motion (6, -2) again; the detector's size
    np.testing.assert_allclose(follower.boxes, [[123 - 15, 66 - 30, 30.0, 60.0]])
    np.testing.assert_allclose(follower.box_scores, [0.8])
