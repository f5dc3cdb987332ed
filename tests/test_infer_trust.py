"""`clpose infer` results that must be what they look like (issue 31): photos in the frame a viewer sees (all eight
EXIF orientations, boxes in that frame too), integer image ids of a boxes file read one way or refused, person boxes
that cannot be a person skipped and named (every box source) and drawn without overflow, the true time of each frame
of a variable-frame-rate video, and folders, camera indices and bracketed names that ended in tracebacks or were
printed wrong."""

from __future__ import annotations

import io
import itertools
import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import one_line_error
from PIL import Image, ImageOps
from test_inference import make_checkpoint
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.dataset import decode_image
from clpose.drawing import FAR, draw_pose
from clpose.errors import ClposeError
from clpose.inference.detector import BoxesFile
from clpose.inference.photos import upright
from clpose.inference.predictor import MIN_AREA_INSIDE, Predictor, box_problem
from clpose.inference.smoothing import PoseTracker
from clpose.inference.video import Source
from clpose.skeletons import SKELETONS

runner = CliRunner()
COORDINATES = "0-based pixels of the image as displayed (EXIF orientation applied; each image's tag in orientation)"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "c.pt", model="clnet_resnet10")


def _infer(ckpt: Path, source: Path, *args: str) -> tuple[object, dict]:
    """`clpose infer SOURCE` on the CPU with torch, one frame per forward (the same shape each time, so the same
    pixels give bit-identical keypoints), and its JSON."""
    js = source.parent / f"{source.stem}.out.json"
    argv = ["infer", str(source), "--checkpoint", str(ckpt), "--device", "cpu", "--runtime", "torch", "--batch", "1"]
    result = runner.invoke(app, [*argv, "--json", str(js), *args])
    assert result.exit_code == 0, result.output
    return result, json.loads(js.read_text())


# ----------------------------------------------------------------------------------------- class 2: EXIF photos


def _with_orientation(rgb: np.ndarray, tag: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = tag
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _stored(displayed: np.ndarray, tag: int) -> np.ndarray:
    """What a camera stores for a picture that shows `displayed` under Orientation `tag` (the inverse turn)."""
    inverse = {6: 8, 8: 6}.get(tag, tag)  # every other orientation is its own inverse
    return upright(displayed, inverse)


@pytest.mark.parametrize("tag", range(1, 9))
def test_upright_turns_as_pillow_reads_each_orientation(tag: int) -> None:
    rgb = np.random.default_rng(tag).integers(0, 255, (5, 7, 3), dtype=np.uint8)  # not square: turns show
    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(_with_orientation(rgb, tag, "PNG")))))
    np.testing.assert_array_equal(upright(rgb, tag), shown)
    np.testing.assert_array_equal(upright(_stored(rgb, tag), tag), rgb)


def _figure(h: int = 48, w: int = 80) -> np.ndarray:
    """An upright picture with no symmetry, so every turn and mirror of it is another picture."""
    image = np.full((h, w, 3), 40, np.uint8)
    cv2.rectangle(image, (8, 5), (30, 40), (220, 180, 60), -1)
    cv2.circle(image, (55, 14), 9, (60, 90, 240), -1)
    cv2.line(image, (40, 44), (76, 30), (250, 250, 250), 3)
    return image


def test_exif_photos_give_the_keypoints_of_the_upright_photo(ckpt: Path, tmp_path: Path) -> None:
    """Real JPEGs of the same picture stored in each of the 8 orientations, with the tag that shows it upright:
    each gives exactly the keypoints of the upright photo (a PNG of the JPEG's own pixels turned by Pillow), with
    the whole image and with a boxes file whose boxes are in the displayed frame, and its annotated PNG is the
    upright one. Before, the stored pixels were read: other keypoints, and annotations turned against the photo."""
    folder, box = tmp_path / "photos", [20.0, 4.0, 30.0, 40.0]  # x, y, w, h of the displayed 80x48 picture
    folder.mkdir()
    entries = []
    for tag in range(1, 9):
        jpeg = _with_orientation(_stored(_figure()[:, :, ::-1], tag), tag, "JPEG")
        (folder / f"t{tag}.jpg").write_bytes(jpeg)
        stored_bgr = decode_image(jpeg)  # the JPEG's own pixels, as stored
        assert stored_bgr.shape[:2] == ((48, 80) if tag <= 4 else (80, 48))
        shown = np.asarray(ImageOps.exif_transpose(_pil_with_tag(stored_bgr[:, :, ::-1], tag)))[:, :, ::-1]
        assert _nearest_turn(shown) == 1  # the upright picture, up to the JPEG's loss, of all its turns and mirrors
        cv2.imwrite(str(folder / f"u{tag}.png"), shown)
        entries += [{"image_id": f"{p}{tag}", "category_id": 1, "bbox": box, "score": 1.0} for p in "tu"]
    (tmp_path / "boxes.json").write_text(json.dumps(entries))
    for boxes in ("full", str(tmp_path / "boxes.json")):
        _, data = _infer(ckpt, folder, "--boxes", boxes, "--out", str(tmp_path / "annotated"))
        people = {r["image"]: r["people"] for r in data["frames"]}
        for tag in range(1, 9):
            photo, upright_photo = people[f"t{tag}.jpg"], people[f"u{tag}.png"]
            assert len(photo) == 1 and photo[0]["box"] == upright_photo[0]["box"]
            assert photo[0]["keypoints"] == upright_photo[0]["keypoints"]
            assert photo[0]["scores"] == upright_photo[0]["scores"]
            drawn = cv2.imread(str(tmp_path / "annotated" / f"t{tag}.jpg"), cv2.IMREAD_UNCHANGED)
            assert drawn.shape == (48, 80, 3)  # the annotated photo as displayed (it carries no orientation tag)
        assert people["t6.jpg"][0]["box"] == (box if boxes != "full" else [0, 0, 80, 48])
        assert data["coordinates"] == COORDINATES
        assert {r["image"]: r["orientation"] for r in data["frames"]} == {
            **{f"t{t}.jpg": t for t in range(1, 9)},
            **{f"u{t}.png": 1 for t in range(1, 9)},
        }


def _nearest_turn(image: np.ndarray) -> int:
    """Which orientation of _figure() `image` is closest to (1: upright)."""
    turns = {t: upright(_figure(), t) for t in range(1, 9)}
    return min((np.abs(image.astype(int) - v).mean(), t) for t, v in turns.items() if v.shape == image.shape)[1]


def _pil_with_tag(rgb: np.ndarray, tag: int) -> Image.Image:
    return Image.open(io.BytesIO(_with_orientation(rgb, tag, "PNG")))


def test_a_single_exif_photo_and_its_boxes_are_in_the_displayed_frame(ckpt: Path, tmp_path: Path) -> None:
    """`clpose infer photo.jpg` as a phone stores a portrait photo (Orientation 6): the keypoints, the boxes and the
    annotated image are those of the upright photo, and the JSON says which tag was applied."""
    jpeg = _with_orientation(_stored(_figure()[:, :, ::-1], 6), 6, "JPEG")
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    shown = upright(decode_image(jpeg), 6)
    cv2.imwrite(str(tmp_path / "upright.png"), shown)
    box = [[10.0, 2.0, 40.0, 44.0]]
    for name in ("photo.jpg", "upright.png"):
        (tmp_path / f"{name}.boxes.json").write_text(json.dumps([{"image_id": 0, "bbox": box[0], "score": 0.9}]))
    results = {}
    for name in ("photo.jpg", "upright.png"):
        boxes = str(tmp_path / f"{name}.boxes.json")
        _, data = _infer(ckpt, tmp_path / name, "--boxes", boxes, "--out", str(tmp_path / f"a_{name}.png"))
        results[name] = data["frames"][0]
    assert results["photo.jpg"]["people"] == results["upright.png"]["people"]
    a, b = (cv2.imread(str(tmp_path / f"a_{n}.png")) for n in ("photo.jpg", "upright.png"))
    np.testing.assert_array_equal(a, b)
    assert results["photo.jpg"]["orientation"] == 6 and results["upright.png"]["orientation"] == 1


# ---------------------------------------------------------------------- class 3: integer image ids, one reading


def _dets(ids: list[int]) -> list[dict]:
    return [{"image_id": i, "category_id": 1, "bbox": [float(i), 5.0, 20.0, 30.0], "score": 0.9} for i in ids]


def _file(tmp_path: Path, ids: list[int], ids_rule: str = "auto") -> BoxesFile:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(_dets(ids)))
    return BoxesFile(path, ids=ids_rule)


def _got(boxes: BoxesFile, names: list[str] | None, frames: int = 0, count: int = 0) -> list[list[float]]:
    """The box x (= the entry's id) each frame gets: names of a folder, or `frames` frames of a video."""
    boxes.match(names, count)
    if names is None:
        return [boxes.boxes(i, f"frame {i}")[0][:, 0].tolist() for i in range(frames)]
    return [boxes.boxes(i, n)[0][:, 0].tolist() for i, n in enumerate(names)]


FFMPEG = [f"{i:05d}.png" for i in range(1, 6)]  # ffmpeg -i v.mp4 %05d.png numbers frames from 1
FRAMES = [f"frame_{i:04d}.png" for i in range(1, 6)]  # ffmpeg -i v.mp4 frame_%04d.png


@pytest.mark.parametrize(
    ("names", "ids", "rule", "expected"),
    [
        (FFMPEG, [0, 1, 2, 3, 4], "auto", [[0.0], [1.0], [2.0], [3.0], [4.0]]),  # 0-based: id 0 names no file
        (FFMPEG, [0, 2, 4], "auto", [[0.0], [], [2.0], [], [4.0]]),  # 0-based, frames without people
        (FFMPEG, [1, 2, 3, 4, 5], "auto", [[1.0], [2.0], [3.0], [4.0], [5.0]]),  # the numbers: 5 is no position
        (FFMPEG, [1, 3], "index", [[], [1.0], [], [3.0], []]),  # told: positions
        (FFMPEG, [1, 3], "number", [[1.0], [], [3.0], [], []]),  # told: the numbers in the names
        ([f"{i}.png" for i in range(3)], [0, 1, 2], "auto", [[0.0], [1.0], [2.0]]),  # numbers = positions
        (["a.jpg", "b.jpg", "c.jpg"], [2, 0], "auto", [[0.0], [], [2.0]]),  # names without numbers: positions
        (["5.jpg", "x.jpg"], [5], "auto", [[5.0], []]),  # before: 5.jpg and (as position 5) nothing else; one rule
        (["000000000139.jpg", "000000000285.jpg"], [139, 285, 632], "auto", [[139.0], [285.0]]),  # COCO ids
        (["000000000139.jpg", "000000000285.jpg"], [7, 9], "auto", [[], []]),  # neither: warned at the end
        (FRAMES, [0, 1, 2], "auto", [[0.0], [1.0], [2.0], [], []]),  # 0 is no name's number: positions
        (FRAMES, [1, 5], "number", [[1.0], [], [], [], [5.0]]),  # frame_0001.png holds 1
    ],
    ids=[
        "0-based",
        "0-based sparse",
        "1-based",
        "index",
        "number",
        "agree",
        "no numbers",
        "mixed",
        "coco",
        "none",
        "frame_ 0-based",
        "frame_ numbers",
    ],
)
def test_integer_ids_are_read_one_way_for_every_image(
    tmp_path: Path, names: list[str], ids: list[int], rule: str, expected: list[list[float]]
) -> None:
    assert _got(_file(tmp_path, ids, rule), names) == expected


@pytest.mark.parametrize(
    ("ids", "count", "rule", "expected"),
    [
        ([0, 1, 2], 3, "auto", [[0.0], [1.0], [2.0]]),
        ([2, 3], 4, "auto", [[], [], [2.0]]),  # no 0, but neither starting at 1 nor ending at the count: indices
        ([0, 1, 2, 3, 4], 3, "auto", [[0.0], [1.0], [2.0]]),  # a file of a longer video
        ([1, 2, 3], 3, "number", [[1.0], [2.0], [3.0]]),  # told: 1-based frame numbers
        ([1, 2], 3, "index", [[], [1.0], [2.0]]),  # told: 0-based, frame 0 without an entry
        ([0, 2], 0, "auto", [[0.0], [], [2.0]]),  # a camera: no count, indices
    ],
)
def test_video_frames_read_frame_indices_unless_told(
    tmp_path: Path, ids: list[int], count: int, rule: str, expected: list[list[float]]
) -> None:
    assert _got(_file(tmp_path, ids, rule), None, frames=3, count=count) == expected


@pytest.mark.parametrize(
    ("names", "ids", "count", "fragments"),
    [
        (FFMPEG, [1, 2, 3], 0, ["as the number in each file name (id 1 = 00001.png; 3 of 3 ids", "(id 0 = 00001.png"]),
        (FFMPEG, [2, 4], 0, ["two ways", "--boxes-ids number or --boxes-ids index"]),
        (["a.jpg", "7.jpg", "9.jpg"], [0, 7, 9, 2], 0, ["2 of 4 ids name an image", "(id 0 = a.jpg; 2 of 4)"]),
        (None, [1, 2, 3], 3, ["run from 1 to 3 on a video of 3 frames", "--boxes-ids number (1-based)"]),
        # 1-based ids over the first part of a clip: each frame would get the next one's boxes
        (None, [1, 2], 3, ["run from 1 to 2 on a video of 3 frames", "frame 0 has no entry", "--boxes-ids index"]),
        (None, [1, 2, 3], 0, ["run from 1 to 3 on a video,", "frame 0 has no entry"]),  # a camera
        (None, [2, 3], 3, ["run from 2 to 3 on a video of 3 frames", "0-based, the last has no frame"]),
        # ffmpeg's frame_%04d.png: the number ends the name
        (FRAMES, [1, 2, 3], 0, ["(id 1 = frame_0001.png; 3 of 3 ids", "(id 0 = frame_0001.png"]),
        (["clip-001.jpg", "clip-002.jpg", "clip-003.jpg"], [2, 1], 0, ["(id 1 = clip-001.jpg; 2 of 2 ids"]),
    ],
    ids=[
        "ffmpeg 1-3",
        "ffmpeg sparse",
        "mixed",
        "video 1-based",
        "video 1-based part",
        "camera 1-based",
        "video 1-based end",
        "frame_0001",
        "clip-001",
    ],
)
def test_ids_that_fit_two_readings_are_refused_naming_both(
    tmp_path: Path, names: list[str] | None, ids: list[int], count: int, fragments: list[str]
) -> None:
    """Before, frames 00001.png... with 0-based ids got the next frame's boxes with a vague warning at the end."""
    with pytest.raises(ClposeError) as error:
        _file(tmp_path, ids).match(names, count)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"boxes file {tmp_path / 'boxes.json'}: ")
    for fragment in fragments:
        assert fragment in str(error.value)


def test_two_images_of_one_number_are_refused_when_ids_are_numbers(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match=r"name both 1\.jpg and 001\.png \(number 1\); key the entries by file_name"):
        _file(tmp_path, [1], "number").match(["001.png", "1.jpg"][::-1])


def test_infer_on_ffmpeg_frames_with_0_based_ids(ckpt: Path, tmp_path: Path) -> None:
    """The command: 0-based ids on 00001.png... give each frame its own boxes, and the JSON says how ids were read;
    ids that fit both ways stop before any work in one line, and --boxes-ids settles it."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in FFMPEG[:3]:
        cv2.imwrite(str(folder / name), _figure())
    (tmp_path / "dets.json").write_text(json.dumps(_dets([0, 1, 2])))
    _, data = _infer(ckpt, folder, "--boxes", str(tmp_path / "dets.json"))
    assert [[p["box"][0] for p in r["people"]] for r in data["frames"]] == [[0.0], [1.0], [2.0]]
    assert data["boxes_ids"] == "0-based positions of the images in sorted name order"
    (tmp_path / "dets.json").write_text(json.dumps(_dets([1, 2])))
    argv = ["infer", str(folder), "--checkpoint", str(ckpt), "--boxes", str(tmp_path / "dets.json")]
    one_line_error(runner.invoke(app, [*argv, "--json", str(tmp_path / "x.json")]), "two ways", "--boxes-ids")
    assert not (tmp_path / "x.json").exists()
    _, data = _infer(ckpt, folder, "--boxes", str(tmp_path / "dets.json"), "--boxes-ids", "number")
    assert [[p["box"][0] for p in r["people"]] for r in data["frames"]] == [[1.0], [2.0], []]
    assert data["boxes_ids"].startswith("the number in each file name")
    no_file = runner.invoke(app, ["infer", str(folder), "--checkpoint", str(ckpt), "--boxes-ids", "index"])
    one_line_error(no_file, "--boxes-ids index says how a --boxes FILE names images; there is no boxes file here")


# --------------------------------------------------------------- class 5: boxes that cannot be a person, drawing


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ([10, 10, 20, 30], None),
        ([-30, -40, 60, 80], None),  # half out of the frame both ways: 25% inside, a person at the corner
        ([0, 0, 256, 256], None),
        ([-500, -500, 1256, 1256], None),  # 4.2% inside: big, but the image is in the crop
        ([5000, 5000, 100, 200], "lies outside the 256x256 image"),
        ([-200, 10, 200, 20], "lies outside"),  # touches the left edge, no pixel inside
        ([255.5, 10, 100, 20], "lies outside"),  # half a pixel inside
        ([10, 10, 0.5, 30], "lies outside"),  # less than a pixel wide
        ([10, 10, 1e-300, 1e-300], "lies outside"),
        ([0, 0, 1e308, 1e308], "has 0% of its area inside the 256x256 image (at least 1% is needed)"),
        ([-1e308, -1e308, 1e308, 1e308], "lies outside"),
        ([1e308, 0, 1e308, 10], "lies outside"),  # x + w overflows to inf
        ([0, 0, 2600, 2600], "has 0.97% of its area inside"),
        ([10, 10, -5, 30], "needs finite [x, y, w, h] with w, h > 0"),
        ([10, 10, 0, 30], "needs finite"),
        ([float("nan"), 10, 5, 30], "needs finite"),
        ([10, float("inf"), 5, 30], "needs finite"),
    ],
)
def test_the_one_rule_for_person_boxes(box: list[float], problem: str | None) -> None:
    found = box_problem(np.array(box, dtype=np.float64), (256, 256))
    assert found is None if problem is None else (found is not None and problem in found), found


def test_the_rule_keeps_a_box_with_exactly_the_least_share_inside() -> None:
    side = 256 / MIN_AREA_INSIDE**0.5  # (256 / side)^2 of the box lies in the image
    assert box_problem(np.array([0, 0, side, side]), (256, 256)) is None
    assert box_problem(np.array([0, 0, side * 1.001, side]), (256, 256)) is not None


def test_the_predictor_refuses_boxes_that_cannot_be_a_person(ckpt: Path) -> None:
    """The Python API pairs boxes and poses by position: such a box is an error naming the image and the box,
    never a person at (5006, 5180) or null keypoints."""
    predictor = Predictor.from_checkpoint(ckpt, device="cpu", runtime="torch")
    image = np.zeros((256, 256, 3), np.uint8)
    with pytest.raises(ClposeError, match=r"^image 1: box \[5000, 5000, 100, 200\] lies outside the 256x256 image"):
        predictor.predict_batch([image, image], [None, [[5000, 5000, 100, 200]]])
    with pytest.raises(ClposeError, match=r"^image 0: box \[0, 0, 1e\+308, 1e\+308\] has 0% of its area inside"):
        predictor.predict(image, [[10, 10, 50, 50], [0, 0, 1e308, 1e308]])
    (pose,) = predictor.predict(image, [[-30, -40, 60, 80]])  # a person cut by the frame: kept as given
    assert pose.box.tolist() == [-30, -40, 60, 80] and np.isfinite(pose.keypoints).all()


def test_boxes_of_every_source_pass_the_rule_in_infer(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A boxes file and a detector (a stand-in returning what a detector could) on a 256x256 image: the good box is
    a person, the others are skipped, counted, named on the terminal and in the JSON, and the annotated image is
    written (before: a person with keypoints at (5006, 5180), null keypoints, or a cv2 traceback while drawing)."""
    cv2.imwrite(str(tmp_path / "img.png"), np.full((256, 256, 3), 90, np.uint8))
    bad = [[5000, 5000, 100, 200], [0, 0, 1e308, 1e308], [-1e308, 0, 1e308, 1e308]]
    good = [20.0, 30.0, 100.0, 150.0]
    entries = [{"image_id": "img.png", "bbox": b, "score": 0.9} for b in [*bad[:2], good, bad[2]]]
    (tmp_path / "boxes.json").write_text(json.dumps(entries))

    class StandInDetector:
        name = "stand-in"

        def __init__(self, *args: object, **kwargs: object) -> None:
            from clpose.engine.runtimes import RuntimeInfo
            from clpose.precision import Precision

            self.runtime_info = RuntimeInfo("torch", "0", "a stand-in", Precision("fp32", "off", "stand-in"), 1)

        def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.array([*bad[:2], good, bad[2], [50, 50, 0, 0]]), np.full(5, 0.9)

    monkeypatch.setattr("clpose.inference.run.PersonDetector", StandInDetector)
    sources = {"file": ["--boxes", str(tmp_path / "boxes.json")], "detector": ["--detector", "fasterrcnn_resnet50_fpn"]}
    for source, argv in sources.items():
        result, data = _infer(ckpt, tmp_path / "img.png", *argv, "--out", str(tmp_path / f"{source}.png"))
        (record,) = data["frames"]
        assert [p["box"] for p in record["people"]] == [good]
        skipped = bad if source == "file" else [*bad, [50, 50, 0, 0]]
        assert [s["box"] for s in record["skipped_boxes"]] == skipped and data["skipped_boxes"] == len(skipped)
        warning = " ".join(result.stderr.split())
        assert warning.startswith(f"warning: {len(skipped)} person boxes were skipped (each is in the JSON's")
        assert "img.png: [5000, 5000, 100, 200] lies outside the 256x256 image" in warning
        assert "img.png: [0, 0, 1e+308, 1e+308] has 0% of its area inside" in warning
        assert cv2.imread(str(tmp_path / f"{source}.png")).shape == (256, 256, 3)
    assert record["skipped_boxes"][-1]["why"] == "needs finite [x, y, w, h] with w, h > 0"


def test_drawing_survives_keypoints_anywhere() -> None:
    """A limb towards a far keypoint is drawn as OpenCV clips it (the same pixels as towards a nearer point on its
    line); a keypoint beyond FAR (NaN, inf, 1e308, 3e9: past OpenCV's C ints) is not drawn, as if its score were 0
    (before: ValueError on NaN, OverflowError or a cv2 error on the others)."""
    skeleton = SKELETONS["synthetic"]
    a, b = skeleton.edges[0]
    keypoints = np.full((skeleton.num_keypoints, 2), 30.0)
    scores = np.zeros(skeleton.num_keypoints)
    scores[[a, b]] = 1.0

    def drawn(far: list[float], kept: np.ndarray = scores) -> np.ndarray:
        image = np.zeros((64, 64, 3), np.uint8)
        keypoints[b] = far
        return draw_pose(image, keypoints, skeleton, kept)

    np.testing.assert_array_equal(drawn([FAR, FAR / 2 + 15]), drawn([2000.0, 1015.0]))  # one line through (30, 30)
    assert drawn([FAR, 30.0]).any()
    only_a = np.where(np.arange(skeleton.num_keypoints) == a, 1.0, 0.0)
    for value in (1e308, -1e308, float("nan"), float("inf"), 3e9, FAR * 1.0000001):
        np.testing.assert_array_equal(drawn([value, 30.0]), drawn([value, 30.0], only_a))
        np.testing.assert_array_equal(drawn([30.0, value]), drawn([30.0, value], only_a))


# ------------------------------------------------------------------- class 5: variable-frame-rate video times


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes_of(data: bytes):
    i = 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        yield kind, data[i + 8 : i + size]
        i += size


def _with_durations(data: bytes, deltas: list[int]) -> bytes:
    """An MP4 whose samples last `deltas` (media time units): its stts rewritten, its edit list made a free box (an
    edit of the old length would cut the longer track). moov comes after mdat, so no chunk offset moves."""
    out = b""
    for kind, body in _boxes_of(data):
        if kind in _CONTAINERS:
            body = _with_durations(body, deltas)
        elif kind == b"stts":
            body = body[:4] + struct.pack(">I", len(deltas)) + b"".join(struct.pack(">II", 1, d) for d in deltas)
        elif kind == b"edts":
            kind = b"free"
        out += struct.pack(">I4s", 8 + len(body), kind) + body
    return out


def _timescale(data: bytes) -> int | None:
    for kind, body in _boxes_of(data):
        if kind == b"mdhd":
            return struct.unpack(">I", body[12:16] if body[0] == 0 else body[20:24])[0]
        if kind in _CONTAINERS and (found := _timescale(body)) is not None:
            return found
    return None


VFR_MS = [0, 40, 80, 300, 340, 700, 740, 780, 1200, 1240]  # frames 40 ms apart, with pauses of 220 to 420 ms


def _vfr_clip(path: Path) -> Path:
    """A 10-frame variable-frame-rate MP4 (no ffmpeg or PyAV here: OpenCV's constant-rate MP4 with its sample
    durations rewritten); OpenCV reads it as 7.8125 fps, the mean rate (10 frames in 1.28 s)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    rng = np.random.default_rng(5)
    for _ in VFR_MS:
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    scale = _timescale(data)
    deltas = [(b - a) * scale // 1000 for a, b in itertools.pairwise(VFR_MS)] + [40 * scale // 1000]
    path.write_bytes(_with_durations(data, deltas))
    return path


def test_variable_frame_rate_frames_keep_their_own_times(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each frame's time is its timestamp (frame 8 at 1.2 s, not 8 / 7.8125 = 1.024 s): in the JSON, and in the
    One-Euro filter; the annotated video holds every frame once at the mean rate, and a warning says so."""
    clip = _vfr_clip(tmp_path / "vfr.mp4")
    seen: list[float] = []
    update = PoseTracker.update

    def spy(self: PoseTracker, poses: list, frame: int, t: float) -> list:
        seen.append(t)
        return update(self, poses, frame, t)

    monkeypatch.setattr(PoseTracker, "update", spy)
    out = tmp_path / "out.mp4"
    result, data = _infer(ckpt, clip, "--smooth", "oneeuro", "--out", str(out))
    expected = [ms / 1000 for ms in VFR_MS]
    assert [f["time"] for f in data["frames"]] == expected and seen == pytest.approx(expected, abs=1e-9)
    assert data["variable_frame_rate"] is True and data["fps"] == 7.8125
    assert data["times"] == "seconds from the first frame: the container's timestamps"
    assert "vfr.mp4 has a variable frame rate (frame 2 is shown at 0.080 s, not 0.256 s)" in " ".join(
        result.stderr.split()
    )
    cap = cv2.VideoCapture(str(out))
    # every frame once, at the mean rate (the MP4 muxer stores it to 1/1000: 7.813)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 10 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.8125, abs=1e-3)


def test_constant_rate_frames_are_index_over_fps_and_a_capture_without_timestamps(tmp_path: Path) -> None:
    """A constant-rate clip's times are i / fps; a capture whose timestamps do not rise (a backend
    that reports none) gets the previous time + 1 / fps and says how many were estimated."""
    writer = cv2.VideoWriter(str(tmp_path / "cfr.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 20, (32, 24))
    for i in range(4):
        writer.write(np.full((24, 32, 3), 60 * i, np.uint8))
    writer.release()
    source = Source(str(tmp_path / "cfr.avi"))
    assert [f.time for f in source] == pytest.approx([0.0, 0.05, 0.1, 0.15], abs=1e-9)
    assert source.estimated_times == 0

    class NoTimestamps:
        def __init__(self, cap: cv2.VideoCapture) -> None:
            self.cap = cap

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_POS_MSEC else self.cap.get(prop)

        def __getattr__(self, name: str):
            return getattr(self.cap, name)

    source = Source(str(tmp_path / "cfr.avi"))
    source._cap = NoTimestamps(source._cap)
    assert [f.time for f in source] == pytest.approx([0.0, 0.05, 0.1, 0.15], abs=1e-9)
    assert source.estimated_times == 3


def test_gif_frames_are_timed_by_their_durations(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=[20, 1000, 20], loop=0)
    assert [f.time for f in Source(str(tmp_path / "a.gif"))] == [0.0, 0.02, 1.02]


# ------------------------------------------------------------------ class 8: folders, camera indices, brackets


@pytest.mark.skipif(os.name != "posix", reason="symlinks and named pipes")
def test_a_folder_with_links_pipes_and_folders_named_like_images(ckpt: Path, tmp_path: Path) -> None:
    """Each entry that is not a readable file is skipped and named with why; a pipe is never opened (it would block
    forever); before, a symlink loop ended the run with a traceback."""
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _figure())
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "x.jpg").symlink_to("y.jpg")
    (folder / "y.jpg").symlink_to("x.jpg")
    (folder / "gone.jpg").symlink_to("nowhere.jpg")
    (folder / "dir.png").mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result, data = _infer(ckpt, folder, "--out", str(tmp_path / "out"))
    assert [r["image"] for r in data["frames"]] == ["a.png"]
    assert data["failed_files"] == ["bad.jpg", "dir.png", "gone.jpg", "loop.png", "pipe.png", "x.jpg", "y.jpg"]
    assert (
        "7 images could not be read and were skipped (truncated, damaged or empty): bad.jpg; (a folder): dir.png; "
        "(a broken symlink): gone.jpg; (a symlink loop): loop.png, x.jpg, y.jpg; (not a regular file): pipe.png"
    ) in " ".join(result.stdout.split())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_source_that_is_a_symlink_loop_is_one_line(ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    result = runner.invoke(app, ["infer", str(tmp_path / "loop.jpg"), "--checkpoint", str(ckpt)])
    one_line_error(
        result, f"{tmp_path / 'loop.jpg'} is a symlink that leads nowhere (a loop, or its target is missing)"
    )


def test_a_folder_that_cannot_be_listed_is_one_line(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pics").mkdir()

    def refused(self: Path):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refused)
    result = runner.invoke(app, ["infer", str(tmp_path / "pics"), "--checkpoint", str(ckpt)])
    one_line_error(result, f"folder {tmp_path / 'pics'} cannot be listed ([Errno 13] Permission denied")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("99999999999999999999", "camera 99999999999999999999: an index from 0 to 2147483647 is needed"),
        ("2147483648", "camera 2147483648: an index from 0 to 2147483647 is needed"),
        ("\u00b2", "\u00b2 does not exist (expected an image"),  # "²".isdigit() is True; int() refused it
        ("\u0663", "\u0663 does not exist (expected an image"),  # an Arabic-Indic 3 is not camera 3
    ],
)
def test_camera_indices_are_ascii_digits_in_range(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the sources are names of nothing here
    one_line_error(runner.invoke(app, ["infer", source, "--checkpoint", str(ckpt)]), message)


def test_bracketed_names_are_printed_as_they_are(ckpt: Path, tmp_path: Path) -> None:
    """rich read `[x]` in `out [x].png` as markup and printed `out .png`; names of skipped files too."""
    folder = tmp_path / "in [b]"
    folder.mkdir()
    cv2.imwrite(str(folder / "a [red]x[b].png"), _figure())
    (folder / "bad [x].jpg").write_bytes(b"")
    out = tmp_path / "out [x]"
    result, _ = _infer(ckpt, folder, "--out", str(out))
    text = " ".join(result.stdout.split())
    assert f"wrote {out} (1 annotated images)" in text
    assert "1 images could not be read and were skipped (truncated, damaged or empty): bad [x].jpg" in text
    assert (out / "a [red]x[b].png").is_file()
