"""`clpose infer --boxes FILE`: which entries of a COCO results-format boxes file belong to a frame, the
warning when the file and the frames do not meet, and malformed entries as one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.errors import ClposeError
from clpose.inference.detector import BoxesFile

runner = CliRunner()
HINT = "expected frame indices, file names or COCO ids such as 000000397133.jpg"


def _boxes(tmp_path: Path, entries: list[dict], name: str = "boxes.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def _det(image_id: object, x: float, score: float = 0.9, **extra: object) -> dict:
    return {"image_id": image_id, "category_id": 1, "bbox": [x, 5.0, 20.0, 30.0], "score": score, **extra}


def _xs(found: tuple[np.ndarray, np.ndarray]) -> list[float]:
    """The x of each box found (the tests tell boxes apart by x)."""
    return found[0][:, 0].tolist()


def _on_images(boxes: BoxesFile, names: list[str]) -> list[list[float]]:
    """The x of the boxes each image of a folder of `names` (in this order) gets."""
    boxes.match(names)
    return [_xs(boxes.boxes(i, n)) for i, n in enumerate(names)]


def _on_video(boxes: BoxesFile, frames: int, count: int = 0) -> list[list[float]]:
    boxes.match(None, count)
    return [_xs(boxes.boxes(i, f"frame {i}")) for i in range(frames)]


def test_integer_ids_match_coco_file_names_in_a_folder(tmp_path: Path) -> None:
    """A standard COCO detections file on a folder of COCO images: 397133 is 000000397133.jpg, not the 397134th
    image of the folder (before, every image got no box, silently)."""
    dets = [_det(397133, 1.0), _det(397133, 2.0, 0.3), _det(37777, 3.0), _det(252219, 4.0)]
    boxes = BoxesFile(_boxes(tmp_path, dets), threshold=0.5)
    names = ["000000000139.jpg", "000000037777.jpg", "000000397133.jpg", "COCO_val2014_000000252219.jpg"]
    assert _on_images(boxes, names) == [[], [3.0], [1.0], [4.0]]
    np.testing.assert_array_equal(boxes.boxes(2, "000000397133.jpg")[1], [0.9])  # 0.3 < --det-threshold
    assert boxes.unmatched_warning() is None  # every id matched; 000000000139.jpg simply has no detection


def test_video_frames_match_frame_indices_and_names_match_names(tmp_path: Path) -> None:
    dets = [_det(0, 1.0), _det(2, 2.0), _det("frame 1", 3.0)]
    boxes = BoxesFile(_boxes(tmp_path, dets))
    assert _on_video(boxes, 4) == [[1.0], [3.0], [2.0], []]
    assert boxes.unmatched_warning() is None
    named = [_det("b.jpg", 1.0), _det("c", 2.0), {**_det(0, 3.0), "file_name": "a.png"}, _det(1, 4.0)]
    boxes = BoxesFile(_boxes(tmp_path, named))
    found = _on_images(boxes, ["a.png", "b.jpg", "c.jpg", "d.jpg"])
    # names and stems first; an integer id is the position in the folder where a name holds no COCO id
    assert found == [[3.0], [1.0], [2.0], []]
    folder = BoxesFile(_boxes(tmp_path, [_det(0, 5.0), _det(1, 6.0)]))
    assert _on_images(folder, ["x.jpg", "y.JPG"]) == [[5.0], [6.0]]


def test_a_name_wins_over_an_integer_id_for_the_same_image(tmp_path: Path) -> None:
    """One naming per frame: the file-name entries of 000000000139.jpg, even below the threshold, are its boxes;
    the entries of id 139 are not added to them."""
    dets = [_det("000000000139.jpg", 1.0, 0.2), _det(139, 2.0)]
    boxes = BoxesFile(_boxes(tmp_path, dets), threshold=0.5)
    assert _on_images(boxes, ["000000000139.jpg"]) == [[]]
    assert boxes.unmatched_warning() is None  # the image found its entries


def test_the_warning_when_no_id_matched(tmp_path: Path) -> None:
    boxes = BoxesFile(_boxes(tmp_path, [_det(397133, 1.0), _det(37777, 2.0), _det(252219, 3.0)]))
    assert _on_images(boxes, [f"{i:012d}.jpg" for i in range(5)]) == [[]] * 5
    assert boxes.unmatched_warning() == (
        f"boxes.json: none of its 3 image ids matched the 5 images (ids like 397133, 37777, 252219; {HINT})"
    )
    video = BoxesFile(_boxes(tmp_path, [_det("a.jpg", 1.0)], "video.json"))
    _on_video(video, 1)
    assert (
        video.unmatched_warning()
        == f'video.json: none of its 1 image id matched the 1 frame (ids like "a.jpg"; {HINT})'
    )


def test_the_warning_when_only_some_ids_matched(tmp_path: Path) -> None:
    dets = [_det(139, 1.0), _det(397133, 2.0), _det("x.jpg", 3.0), _det(285, 4.0, 0.1)]
    boxes = BoxesFile(_boxes(tmp_path, dets), threshold=0.5)
    names = ["000000000139.jpg", "000000000285.jpg", "000000000632.jpg", "000000000724.jpg"]
    assert _on_images(boxes, names) == [[1.0], [], [], []]
    assert boxes.unmatched_warning() == (
        f"boxes.json: 2 of its 4 image ids matched none of the 4 images, and 2 images found no entry (unmatched ids "
        f'like 397133, "x.jpg"; {HINT})'
    )


def test_no_warning_for_a_file_that_covers_more_than_was_seen(tmp_path: Path) -> None:
    """A detections file of the whole val set on a few of its images, or a video stopped early, is fine."""
    boxes = BoxesFile(_boxes(tmp_path, [_det(i, float(i)) for i in range(10)]))
    assert _on_video(boxes, 3, count=3) == [[0.0], [1.0], [2.0]]
    assert boxes.unmatched_warning() is None
    assert BoxesFile(_boxes(tmp_path, [_det(1, 1.0)])).unmatched_warning() is None  # no frame seen


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_det(1, 1.0, score="0.9"), "entry 1 score must be a finite number, got '0.9'"),
        (_det(1, 1.0, score=None), "entry 1 score must be a finite number, got None"),
        (_det(1, 1.0, score=float("nan")), "entry 1 score must be a finite number, got nan"),
        ({**_det(1, 1.0), "category_id": "1"}, "entry 1 is category '1', not a person (1): pose models need person"),
        (_det(1, 1.0, keypoints=None), "entry 1 keypoints must be a list [x1, y1, v1, ...], got None"),
        (_det([1], 1.0), "entry 1 image_id must be an integer or a file name, got [1]"),
        (_det(True, 1.0), "entry 1 image_id must be an integer or a file name, got True"),
        ({**_det(1, 1.0), "file_name": 7}, "entry 1 file_name must be a string, got 7"),
        ({**_det(1, 1.0), "bbox": ["1", "2", "3", "4"]}, "entry 1 bbox must be 4 numbers, got ['1', '2', '3', '4']"),
    ],
    ids=[
        "score text",
        "score null",
        "score NaN",
        "category text",
        "keypoints null",
        "image_id list",
        "image_id bool",
        "file_name number",
        "bbox text",
    ],
)
def test_malformed_entries_are_one_line_errors(tmp_path: Path, entry: dict, message: str) -> None:
    path = _boxes(tmp_path, [_det(0, 1.0), entry])
    with pytest.raises(ClposeError, match=f"^{re.escape(f'boxes file {path}: {message}')}"):
        BoxesFile(path, num_keypoints=17)


def test_a_binary_boxes_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "boxes.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ClposeError, match=f"^{re.escape(f'boxes file {path} is not valid JSON (')}"):
        BoxesFile(path)


# ------------------------------------------------------------------------------------------ the command


def _infer_people(tmp_path: Path, folder: Path, boxes: Path) -> dict[str, int]:
    from test_inference import make_checkpoint

    ckpt = tmp_path / "c.pt"
    if not ckpt.is_file():
        make_checkpoint(ckpt, dataset="coco")
    out = tmp_path / "poses.json"
    args = ["infer", str(folder), "--checkpoint", str(ckpt), "--boxes", str(boxes), "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return {f["image"]: len(f["people"]) for f in json.loads(out.read_text())["frames"]}


def test_infer_on_coco_images_with_a_coco_detections_file(tmp_path: Path) -> None:
    """The synthetic twin of the real case below: COCO file names, integer image ids."""
    folder = tmp_path / "val2017"
    folder.mkdir()
    for name in ("000000000139.jpg", "000000037777.jpg", "000000397133.jpg"):
        cv2.imwrite(str(folder / name), np.full((60, 80, 3), 128, np.uint8))
    boxes = _boxes(tmp_path, [_det(397133, 1.0), _det(397133, 30.0), _det(37777, 5.0), _det(37777, 5.0, 0.2)])
    people = _infer_people(tmp_path, folder, boxes)
    assert people == {"000000000139.jpg": 0, "000000037777.jpg": 1, "000000397133.jpg": 2}  # --det-threshold 0.5


def test_infer_on_the_real_coco_sample_with_its_detections(realdata: Path, tmp_path: Path) -> None:
    dets = json.loads((realdata / "coco" / "test_coco_det_AP_H_56.json").read_text())
    expected = {f"{d['image_id']:012d}.jpg": 0 for d in dets}
    for d in dets:
        expected[f"{d['image_id']:012d}.jpg"] += d["score"] >= 0.5
    assert sum(expected.values()) > 0
    people = _infer_people(tmp_path, realdata / "coco", realdata / "coco" / "test_coco_det_AP_H_56.json")
    assert people == expected
