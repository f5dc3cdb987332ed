"""`clpose prepare`: every converter on the real samples (skipped without them) and on written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.data.records import load_records
from clpose.errors import ClposeError

runner = CliRunner()


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["splits"]


# ------------------------------------------------------------------------------------------------ real samples


def test_lsp_and_lspet_real_samples(realdata: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "lsp", "--root", str(realdata), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["train"]["people"] == 11000 and s["test"]["people"] == 1000
    assert s["test"]["labelled_keypoints"] == 14000  # LSP: every joint is labelled
    assert s["train"]["images_missing"] == 10980  # only LSPET im00001-im00020 are in the sample
    test = load_records(tmp_path / "test.json")
    raw = scipy.io.loadmat(str(realdata / "lsp" / "joints.mat"))["joints"]  # 3 x 14 x 2000, 1-based
    np.testing.assert_allclose(test.keypoints[0, :, :2], raw[:2, :, 1000].T - 1)
    np.testing.assert_array_equal(test.keypoints[:, :, 2], np.where(raw[2, :, 1000:].T > 0.5, 1, 2))
    train = load_records(tmp_path / "train.json")
    et = scipy.io.loadmat(str(realdata / "lspet" / "joints.mat"))["joints"]  # 14 x 3 x 10000, flag = visible
    assert train.image_path(0).name == "im00001.jpg" and train.image_path(10000).name == "im0001.jpg"
    np.testing.assert_array_equal(train.keypoints[:10000, :, 2] > 0, et[:, 2, :].T > 0.5)
    assert train.images[0]["width"] > 0  # read from the real image's header


def test_mpii_json_sample_with_gt_valid(realdata: Path, tmp_path: Path) -> None:
    args = [
        "prepare",
        "mpii",
        "--root",
        str(realdata / "mpii"),
        "--annotations",
        "valid=test_mpii.json",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)["valid"]
    assert s["people"] == 5 and s["images"] == 5 and s["images_missing"] == 0 and s["warnings"] == {}
    valid = load_records(tmp_path / "valid.json")
    raw = json.loads((realdata / "mpii" / "test_mpii.json").read_text())
    for i, person in enumerate(raw):
        joints = np.array(person["joints"])
        vis = np.array(person["joints_vis"]) > 0
        np.testing.assert_allclose(valid.keypoints[i, vis, :2], joints[vis] - 1)
        assert (valid.keypoints[i, ~vis, 2] == 0).all()
        np.testing.assert_allclose(
            valid.centers[i], [person["center"][0] - 1, person["center"][1] + 15 * person["scale"] - 1]
        )
        assert "head_box" in valid.extras[i]
    gt = scipy.io.loadmat(str(realdata / "mpii" / "gt_valid.mat"))
    hit = valid.extras[0]["gt_valid_index"]
    np.testing.assert_allclose(valid.extras[0]["head_box"], gt["headboxes_src"][:, :, hit].ravel() - 1, atol=1e-3)


def test_coco_sample_with_detections(realdata: Path, tmp_path: Path) -> None:
    args = [
        "prepare",
        "coco",
        "--root",
        str(realdata / "coco"),
        "--annotations",
        "val=test_coco.json",
        "--images",
        ".",
        "--detections",
        "test_coco_det_AP_H_56.json",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["val_gt"]["people"] == 12 and s["val_gt"]["images"] == 4 and s["val_gt"]["labelled_keypoints"] == 181
    assert s["val"]["people"] == 118 and s["val"]["images_missing"] == 0
    gt = load_records(tmp_path / "val_gt.json")
    assert gt.image_path(0).is_file()
    det = load_records(tmp_path / "val.json")
    assert 0 < det.box_scores.min() <= det.box_scores.max() <= 1 and (det.keypoints == 0).all()


# ------------------------------------------------------------------------------------------------ fixtures


def _write_image(path: Path, w: int = 80, h: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))


def test_lsp_fixture_splits_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    lsp = np.zeros((3, 14, 4))
    lsp[0], lsp[1] = 11.0, 21.0
    lsp[0, 0, :] = 500.0  # far outside the 80x60 images: counted, kept
    lsp[2, 3, :] = 1  # occluded
    (root / "lsp_dataset").mkdir(parents=True)
    scipy.io.savemat(str(root / "lsp_dataset" / "joints.mat"), {"joints": lsp})
    for i in range(3):
        _write_image(root / "lsp_dataset" / "images" / f"im{i + 1:04d}.jpg")
    (root / "lsp_dataset" / "images" / "im0004.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    run_prepare("lsp", root, root, show=False)
    s = _summary(root)
    assert s["train"]["people"] == 2 and s["test"]["people"] == 2  # half and half without LSPET
    assert s["test"]["images_unreadable"] == 1 and s["test"]["images_missing"] == 0
    assert s["test"]["warnings"] == {"labelled joints outside the image (kept)": 1}  # im0004 has no known size
    test = load_records(root / "test.json")
    assert test.keypoints[0, 3, 2] == 1 and test.keypoints[0, 4, 2] == 2 and test.keypoints[0, 1, 0] == 10.0
    scipy.io.savemat(str(root / "lsp_dataset" / "joints.mat"), {"joints": np.zeros((14, 3, 4))})
    with pytest.raises(ClposeError, match=r"joints\.mat: joints has shape 14x3x4, expected 3x14xN"):
        run_prepare("lsp", root, root, show=False)
    with pytest.raises(ClposeError, match="neither lsp_dataset"):
        run_prepare("lsp", tmp_path / "raw" / "lsp_dataset", tmp_path, show=False)


def test_lspet_fixture_flags_mark_the_visible_joints(tmp_path: Path) -> None:
    """The synthetic twin of the real LSPET check: in lspet_dataset/joints.mat (14 x 3 x N, 1-based) a flag of 1 marks
    a VISIBLE joint (the opposite of LSP's occlusion flag), and the others carry no usable position. An inverted flag
    was caught only with ../shared/realdata (issue 31, class 9)."""
    root = tmp_path / "raw"
    et = np.zeros((14, 3, 2))
    et[:, 0, :] = np.arange(14)[:, None] + 11.0  # x, 1-based
    et[:, 1, :] = 21.0
    et[:, 2, 0] = [1] * 10 + [0] * 4  # person 1: joints 10-13 not visible
    et[:, 2, 1] = [0, 1] * 7  # person 2: every other joint visible
    et[12, :2, 0] = [70.0, 50.0]  # an invisible joint's numbers are not a position
    (root / "lspet_dataset").mkdir(parents=True)
    scipy.io.savemat(str(root / "lspet_dataset" / "joints.mat"), {"joints": et})
    for i in range(2):
        _write_image(root / "lspet_dataset" / "images" / f"im{i + 1:05d}.jpg")
    run_prepare("lsp", root, root, show=False)
    train = load_records(root / "train.json")
    np.testing.assert_array_equal(train.keypoints[:, :, 2], np.where(et[:, 2, :].T > 0.5, 2.0, 0.0))
    np.testing.assert_array_equal(train.keypoints[0, :10, 0], np.arange(10) + 10.0)  # 0-based
    np.testing.assert_array_equal(train.keypoints[0, 10:, :2], 0.0)
    np.testing.assert_array_equal(train.boxes[0], [10.0, 20.0, 9.0, 1.0])  # the visible joints only, not 70, 50
    assert _summary(root)["train"]["labelled_keypoints"] == 10 + 7


def _mpii_json_fixture(root: Path) -> None:
    (root / "annot").mkdir(parents=True)
    people = []
    for i in range(3):
        joints = [[10.0 + k + i, 20.0 + k] for k in range(16)]
        joints[6] = [-1.0, -1.0]
        people.append(
            {
                "image": f"{i}.jpg",
                "joints": joints,
                "joints_vis": [1] * 6 + [0] + [1] * 9,
                "center": [40.0, 30.0],
                "scale": 0.2,
            }
        )
        _write_image(root / "images" / f"{i}.jpg")
    (root / "annot" / "train.json").write_text(json.dumps(people[:2]))
    (root / "annot" / "valid.json").write_text(json.dumps(people[2:]))
    pos = np.zeros((16, 2, 1))
    pos[:, :, 0] = np.array(people[2]["joints"])
    pos[6, :, 0] = 0
    missing = np.zeros((16, 1))
    missing[6] = 1
    scipy.io.savemat(
        str(root / "annot" / "gt_valid.mat"),
        {"pos_gt_src": pos, "jnt_missing": missing, "headboxes_src": np.array([[[5.0], [6.0]], [[25.0], [30.0]]])},
    )


def test_mpii_json_fixture_default_layout(tmp_path: Path) -> None:
    root = tmp_path / "mpii"
    _mpii_json_fixture(root)
    result = runner.invoke(app, ["prepare", "mpii", "--root", str(root)])
    assert result.exit_code == 0, result.output
    s = _summary(root)
    assert s["train"]["people"] == 2 and s["valid"]["people"] == 1
    valid = load_records(root / "valid.json")
    assert valid.extras[0]["head_box"] == [4.0, 5.0, 24.0, 29.0]
    assert valid.keypoints[0, 6, 2] == 0 and valid.keypoints[0, 0, 2] == 2
    np.testing.assert_allclose(valid.centers[0], [39.0, 32.0])  # y + 15 * 0.2, then 0-based
    bad = json.loads((root / "annot" / "valid.json").read_text())
    del bad[0]["center"]
    (root / "annot" / "valid.json").write_text(json.dumps(bad))
    result = runner.invoke(app, ["prepare", "mpii", "--root", str(root)])
    assert result.exit_code == 2 and "valid.json: person 0 needs the keys image, center, scale" in result.stderr


def test_damaged_sources_give_strict_records_and_named_unreadable_images(tmp_path: Path) -> None:
    """NaN joints, NaN centres, scale 0, an empty and a truncated image: warnings and names, never NaN tokens."""
    root = tmp_path / "mpii"
    _mpii_json_fixture(root)
    people = json.loads((root / "annot" / "train.json").read_text())
    extra = [dict(json.loads(json.dumps(people[0])), image=f"{i}.jpg") for i in range(3, 6)]
    people[0]["joints"][2] = [5.0, float("nan")]  # a labelled joint with a NaN y
    extra[0]["scale"] = 0.0  # ZeroDivisionError in training before
    extra[1]["center"] = [float("nan"), 30.0]
    (root / "annot" / "train.json").write_text(json.dumps(people + extra))  # Python writes NaN tokens
    (root / "images" / "3.jpg").write_bytes(b"")
    good = (root / "images" / "0.jpg").read_bytes()
    (root / "images" / "4.jpg").write_bytes(good[: len(good) // 2])  # an interrupted download
    (root / "images" / "5.jpg").write_bytes(good[: len(good) // 2])
    result = runner.invoke(app, ["prepare", "mpii", "--root", str(root)])
    assert result.exit_code == 0, result.output
    text = (root / "train.json").read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    s = _summary(root)["train"]
    assert s["people"] == 3  # the two people with scale 0 and a NaN centre are dropped
    assert s["warnings"]["people with a non-finite or non-positive box or score (skipped)"] == 2
    assert s["warnings"]["labelled joints with non-finite coordinates (made unlabelled)"] == 1
    assert s["images_unreadable"] == 1 and s["unreadable_files"] == ["5.jpg"]  # 3 and 4 went with their people
    assert "unreadable images (empty, truncated or not an image): 5.jpg" in " ".join(result.output.split())
    train = load_records(root / "train.json")
    assert train.keypoints[0, 2].tolist() == [0.0, 0.0, 0.0]
    assert train.keypoints[0, 0, 2] == 2


def test_image_size_reads_headers_and_catches_truncation(tmp_path: Path) -> None:
    from clpose.data.prepare.common import image_size

    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    for ext in (".jpg", ".png"):
        path = tmp_path / f"a{ext}"
        cv2.imwrite(str(path), img)
        assert image_size(path) == (80, 60)
        data = path.read_bytes()
        path.write_bytes(data + b"\0" * 8)  # zero padding after the end marker is harmless
        assert image_size(path) == (80, 60)
        path.write_bytes(data[: len(data) * 2 // 3])
        assert image_size(path) is None, ext
        path.write_bytes(b"")
        assert image_size(path) is None
        path.write_bytes(b"random bytes, not an image")
        assert image_size(path) is None
    bomb = tmp_path / "bomb.jpg"  # a header claiming 65500 x 65500: PIL's DecompressionBombError, not a traceback
    cv2.imwrite(str(bomb), img)
    data = bytearray(bomb.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    bomb.write_bytes(bytes(data))
    assert image_size(bomb) is None


def _struct_array(items: list[dict]) -> np.ndarray:
    """A MATLAB struct array (1 x n) with the union of the items' fields (missing ones empty)."""
    keys = sorted({k for item in items for k in item})
    arr = np.zeros((1, len(items)), dtype=[(k, "O") for k in keys])
    for i, item in enumerate(items):
        for k in keys:
            arr[0, i][k] = item.get(k, np.zeros((0, 0)))
    return arr


def _release_fixture(path: Path) -> None:
    """RELEASE with its quirks: point arrays and single points, is_visible missing / empty / strings /
    numbers, a person without points, a test image with two rects of which one is a single person."""

    def point(k: int, x: float, y: float, vis=None) -> dict:
        p = {"x": x, "y": y, "id": k}
        if vis is not None:
            p["is_visible"] = vis
        return p

    person_a = {
        "x1": 11.0,
        "y1": 12.0,
        "x2": 31.0,
        "y2": 33.0,
        "scale": 0.5,
        "objpos": {"x": 51.0, "y": 41.0},
        "annopoints": {
            "point": _struct_array(
                [point(0, 21.0, 31.0, "1"), point(9, 41.0, 11.0, "0"), point(13, 30.0, 30.0, np.zeros((0, 0)))]
            )
        },
    }
    no_flag = {"point": {"x": 5.0, "y": 6.0, "id": 2}}  # a single point struct without the is_visible field
    person_b = {
        "x1": 1.0,
        "y1": 2.0,
        "x2": 3.0,
        "y2": 4.0,
        "scale": 0.3,
        "objpos": {"x": 10.0, "y": 10.0},
        "annopoints": no_flag,
    }
    person_c = {
        "x1": 1.0,
        "y1": 2.0,
        "x2": 3.0,
        "y2": 4.0,
        "scale": 0.3,
        "objpos": {"x": 10.0, "y": 10.0},
        "annopoints": np.zeros((0, 0)),
    }
    test_rects = _struct_array(
        [{"scale": 0.4, "objpos": {"x": 20.0, "y": 20.0}}, {"scale": 0.6, "objpos": {"x": 30.0, "y": 30.0}}]
    )
    annolist = np.zeros((1, 3), dtype=[("image", "O"), ("annorect", "O")])
    annolist[0, 0]["image"], annolist[0, 0]["annorect"] = {"name": "a.jpg"}, _struct_array([person_a, person_c])
    annolist[0, 1]["image"], annolist[0, 1]["annorect"] = {"name": "b.jpg"}, person_b
    annolist[0, 2]["image"], annolist[0, 2]["annorect"] = {"name": "c.jpg"}, test_rects
    single = np.empty((3, 1), dtype=object)
    single[0, 0], single[1, 0], single[2, 0] = np.array([[1]]), np.array([[1]]), np.array([[2]])
    release = {
        "annolist": annolist,
        "img_train": np.array([[1, 1, 0]]),
        "single_person": single,
        "act": np.zeros((3, 1)),
    }
    scipy.io.savemat(str(path), {"RELEASE": release})


def release_folder(tmp_path: Path) -> Path:
    """An MPII folder with the RELEASE fixture and its images, prepared into trainval and test records."""
    root = tmp_path / "mpii"
    root.mkdir()
    _release_fixture(root / "mpii_human_pose_v1_u12_1.mat")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _write_image(root / "images" / name)
    run_prepare("mpii", root, root, show=False)
    return root


def test_mpii_release_struct_fixture(tmp_path: Path) -> None:
    root = release_folder(tmp_path)
    s = _summary(root)
    assert s["trainval"]["people"] == 2 and s["test"]["people"] == 1
    assert s["trainval"]["warnings"] == {"people without points (skipped)": 1}
    tv = load_records(root / "trainval.json")
    np.testing.assert_array_equal(tv.keypoints[0, [0, 9, 13], 2], [2, 1, 2])  # "1", "0", empty
    np.testing.assert_allclose(tv.keypoints[0, 0, :2], [20.0, 30.0])
    np.testing.assert_allclose(tv.centers[0], [50.0, 40.0 + 15 * 0.5])
    assert tv.extras[0]["head_box"] == [10.0, 11.0, 30.0, 32.0]
    assert tv.keypoints[1, 2, 2] == 2  # no is_visible field at all: visible
    test = load_records(root / "test.json")
    np.testing.assert_allclose(test.scales[0], [0.6, 0.6])  # only the single person (rect 2) of the test image


def test_mpii_release_with_gt_valid_makes_train_and_valid(tmp_path: Path) -> None:
    root = tmp_path / "mpii"
    root.mkdir()
    _release_fixture(root / "mpii_human_pose_v1_u12_1.mat")
    pos = np.zeros((16, 2, 1))
    pos[2, :, 0] = [5.0, 6.0]  # person_b's only joint, 1-based
    missing = np.ones((16, 1))
    missing[2] = 0
    scipy.io.savemat(
        str(root / "gt_valid.mat"), {"pos_gt_src": pos, "jnt_missing": missing, "headboxes_src": np.ones((2, 2, 1))}
    )
    run_prepare("mpii", root, root, show=False)
    s = _summary(root)
    assert s["valid"]["people"] == 1 and s["train"]["people"] == 1 and s["trainval"]["people"] == 2
    assert load_records(root / "valid.json").extras[0]["gt_valid_index"] == 0


def test_coco_fixture_filters_people_like_the_reference(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    kp = [10, 10, 2] + [0, 0, 0] * 16

    def ann(i: int, bbox: list, keypoints: list = kp, crowd: int = 0) -> dict:
        return {
            "id": i,
            "image_id": 7,
            "category_id": 1,
            "iscrowd": crowd,
            "area": 100,
            "bbox": bbox,
            "keypoints": keypoints,
        }

    anns = [
        ann(1, [5, 5, 20, 30]),
        ann(2, [5, 5, 20, 30], crowd=1),
        ann(3, [5, 5, 20, 30], [0] * 51),
        ann(4, [90, 90, 5, 5]),
        ann(5, [70, 50, 40, 40]),
    ]
    data = {
        "images": [{"id": 7, "file_name": "7.jpg", "width": 80, "height": 60}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)]}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    _write_image(root / "val2017" / "7.jpg")
    run_prepare("coco", root, root, show=False)
    val = load_records(root / "val.json")
    assert [e["annotation_id"] for e in val.extras] == [1, 5]  # crowd, no keypoints, empty box: skipped
    np.testing.assert_allclose(val.boxes[1], [70, 50, 9, 9])  # clipped: x2 = min(79, 70 + 39)
    np.testing.assert_allclose(val.centers[0], [14.5, 19.5])  # HRNet clips [5, 5, 20, 30] to [5, 5, 19, 29]
    with pytest.raises(ClposeError, match=r"COCO annotations .*nope\.json does not exist"):
        run_prepare("coco", root, root, ["val=nope.json"], show=False)
    del data["annotations"][0]["keypoints"]
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    with pytest.raises(ClposeError, match=r"annotations\[0\] needs image_id, bbox, keypoints, category_id"):
        run_prepare("coco", root, root, show=False)


def _coco_file(path: Path, image_id: int, people: int) -> Path:
    """A person_keypoints file of one 80x60 image ({image_id:012d}.jpg) holding `people` labelled people."""
    kp = [10, 10, 2] + [0, 0, 0] * 16
    anns = [
        {"id": image_id * 10 + i, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 100}
        | {"bbox": [5 + i, 5, 20, 30], "keypoints": kp}
        for i in range(people)
    ]
    data = {
        "images": [{"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 80, "height": 60}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)]}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_given_splits_join_the_default_ones_and_the_summary_names_each_source(tmp_path: Path) -> None:
    """`--annotations train=FILE` (a small train file for a quick trial) keeps the default val split (it used to
    drop it silently); `val=FILE` replaces only the val file."""
    root = tmp_path / "coco"
    default_val = _coco_file(root / "annotations" / "person_keypoints_val2017.json", 1, 1)
    _write_image(root / "val2017" / "000000000001.jpg")
    small_train = _coco_file(root / "subsets" / "train_2.json", 2, 2)
    _write_image(root / "train2017" / "000000000002.jpg")
    out = tmp_path / "out"
    args = ["prepare", "coco", "--root", str(root), "--out", str(out)]
    result = runner.invoke(app, [*args, "--annotations", "train=subsets/train_2.json"])
    assert result.exit_code == 0, result.output
    s = _summary(out)
    assert {k: (v["people"], v["images_missing"], v["sources"]) for k, v in s.items()} == {
        "train": (2, 0, [str(small_train)]),
        "val": (1, 0, [str(default_val)]),
    }
    assert f"train: from {small_train}\n" in result.output and f"val: from {default_val}\n" in result.output
    other_val = _coco_file(root / "subsets" / "val_3.json", 3, 3)
    _write_image(root / "val2017" / "000000000003.jpg")
    result = runner.invoke(app, [*args, "--annotations", "val=subsets/val_3.json"])
    assert result.exit_code == 0, result.output
    s = _summary(out)
    assert list(s) == ["val"] and s["val"]["people"] == 3 and s["val"]["sources"] == [str(other_val)]
    assert load_records(out / "val.json").images[0]["file"] == "000000000003.jpg"


def test_synthetic_is_deterministic_and_complete(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out, workers in ((a, 1), (b, 2)):
        result = runner.invoke(
            app,
            [
                "prepare",
                "synthetic",
                "--out",
                str(out),
                "--train",
                "12",
                "--val",
                "4",
                "--size",
                "96",
                "--seed",
                "5",
                "--workers",
                str(workers),
            ],
        )
        assert result.exit_code == 0, result.output
    ra, rb = load_records(a / "train.json"), load_records(b / "train.json")
    np.testing.assert_array_equal(ra.keypoints, rb.keypoints)
    assert (a / "images" / "train" / "000011.jpg").read_bytes() == (b / "images" / "train" / "000011.jpg").read_bytes()
    s = _summary(a)
    assert s["train"]["people"] == 12 and s["valid"]["people"] == 4 and s["train"]["images_missing"] == 0
    v = ra.keypoints[:, :, 2]
    assert set(np.unique(v)) <= {0, 1, 2} and (v == 2).mean() > 0.7
    assert all("head_box" in e for e in ra.extras)


def test_synthetic_video_has_frames_and_truth(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    result = runner.invoke(
        app,
        [
            "prepare",
            "synthetic",
            "--out",
            str(tmp_path / "d"),
            "--train",
            "2",
            "--val",
            "1",
            "--size",
            "64",
            "--video",
            str(video),
            "--frames",
            "6",
        ],
    )
    assert result.exit_code == 0, result.output
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and cap.get(cv2.CAP_PROP_FPS) == 25
    truth = json.loads(video.with_suffix(".json").read_text())
    assert len(truth["frames"]) == 6 and len(truth["frames"][0]["people"]) == 2


def test_an_interrupted_prepare_writes_no_records(tmp_path: Path) -> None:
    root = tmp_path / "mpii"
    _mpii_json_fixture(root)
    (root / "annot" / "valid.json").write_text('[{"image": 1}]')  # the second split fails after the first
    with pytest.raises(ClposeError):
        run_prepare("mpii", root, tmp_path / "out", show=False)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))
