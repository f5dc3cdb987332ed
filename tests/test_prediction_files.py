"""Prediction files scored by `clpose eval --predictions`: every malformed file is one line naming the
file, the entry and the key (never a traceback, never a number), and every valid variant scores exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.records import new_records, save_records
from clpose.evaluation.prediction_files import read_predictions
from clpose.evaluation.scoring import score_oks_file, score_pck_file

runner = CliRunner()


# ------------------------------------------------------------------------------------------ LSP ground truth


def _lsp_truth() -> np.ndarray:
    """(4, 14, 2) 0-based joints of 4 people whose torso (l-shoulder 9 to r-hip 2) is 50 px: PCK@0.2 = 10 px.
    Four, so that no layout is ambiguous (an HDF5 file of 2 or 3 people is)."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 400, (4, 14, 2))
    gt[:, 9] = [[10 + 100 * i, 10] for i in range(4)]
    gt[:, 2] = gt[:, 9] + [30, 40]
    return gt


def _lsp_gt(tmp_path: Path, name: str = "joints.mat") -> Path:
    """LSP joints.mat (3 x 14 x 4, 1-based, occlusion flag 0)."""
    gt = _lsp_truth() + 1.0
    joints = np.concatenate([gt, np.zeros((4, 14, 1))], axis=2).transpose(2, 1, 0)
    path = tmp_path / name
    scipy.io.savemat(str(path), {"joints": joints})
    return path


def _moved() -> np.ndarray:
    """0-based predictions: person 0's head-top 10 px off (exactly the threshold: correct), neck 10.5 px (wrong)."""
    pred = _lsp_truth()
    pred[0, 13, 0] += 10.0
    pred[0, 12, 1] -= 10.5
    return pred


MOVED_MEAN = 100 * 55 / 56


def _eval_pck(predictions: Path, annotations: Path) -> list[str]:
    return ["eval", "--metric", "pck", "--predictions", str(predictions), "--annotations", str(annotations)]


# ------------------------------------------------------------------------------------------ clpose predictions JSON


def _clpose_json(path: Path, people: object, coordinates: str = "0-based", **extra: object) -> Path:
    data = {"format": "clpose-predictions", "version": 1, "coordinates": coordinates, **extra}
    if people is not ...:
        data["people"] = people
    path.write_text(json.dumps(data))
    return path


ROWS = [[1.0, 2.0, 0.9]] * 14


@pytest.mark.parametrize(
    ("people", "fragment"),
    [
        ([{"image": "im1001.jpg"}, {"keypoints": ROWS}], "people[0] keypoints is missing, expected 14 rows"),
        ([{"keypoints": ROWS}, {"keypoints": None}], "people[1] keypoints is null, expected 14 rows"),
        ([{"keypoints": ROWS}, {"keypoints": ROWS[:13]}], "people[1] keypoints has 13 rows, expected 14 rows"),
        ([{"keypoints": [*ROWS[:5], [1, 2, 3, 4], *ROWS[6:]]}], "people[0] keypoints[5] is [1, 2, 3, 4], expected"),
        ([{"keypoints": [["x", 2.0], *ROWS[1:]]}], 'people[0] keypoints[0] is ["x", 2.0], expected [x, y]'),
        ([{"keypoints": [["1.5", 2.0], *ROWS[1:]]}], 'people[0] keypoints[0] is ["1.5", 2.0]'),  # text is no number
        ([{"keypoints": [[True, 2.0], *ROWS[1:]]}], "people[0] keypoints[0] is [true, 2.0]"),
        ([ROWS], "people[0] keypoints is missing"),  # a person must be an object
        ({"0": {"keypoints": ROWS}}, '"people" must be a list of {"keypoints": [[x, y, score], ...]}, it is a dict'),
        ("people", '"people" must be a list'),
        (..., '"people" must be a list of {"keypoints": [[x, y, score], ...]}, it is missing'),
    ],
    ids=[
        "no keypoints",
        "null keypoints",
        "ragged people",
        "ragged row",
        "text",
        "numeric text",
        "boolean",
        "person not an object",
        "people a dict",
        "people a string",
        "no people",
    ],
)
def test_malformed_clpose_predictions_json_is_one_line(tmp_path: Path, people: object, fragment: str) -> None:
    pred = _clpose_json(tmp_path / "pred.json", people)
    line = one_line_error(runner.invoke(app, _eval_pck(pred, _lsp_gt(tmp_path))), fragment)
    assert line.startswith(f"error: {pred}: "), line  # the file first, then the entry and the key


def test_clpose_predictions_json_variants_score_exactly(tmp_path: Path) -> None:
    """Rows [x, y] and [x, y, score] mixed, integers, 1-based, a .JSON suffix; a null coordinate (what clpose
    writes for a NaN) is a miss."""
    gt = _lsp_gt(tmp_path)
    pred = _moved() + 1.0  # 1-based
    rows = [[[float(x), float(y), 0.5] if j % 2 else [float(x), float(y)] for j, (x, y) in enumerate(p)] for p in pred]
    rows[1][3] = [int(pred[1, 3, 0]), int(pred[1, 3, 1])]  # integers: within 1 px of the truth, still correct
    people = [{"keypoints": r} for r in rows]
    path = _clpose_json(tmp_path / "PRED.JSON", people, "1-based", skeleton="lsp")
    assert score_pck_file(path, gt)["Mean"] == pytest.approx(MOVED_MEAN)
    rows[1][4] = [None, float(pred[1, 4, 1]), None]  # person 1's l-knee: no prediction
    path = _clpose_json(tmp_path / "PRED.JSON", [{"keypoints": r} for r in rows], "1-based")
    table = score_pck_file(path, gt)
    assert table["Mean"] == pytest.approx(100 * 54 / 56) and table["Knee"] == pytest.approx((100 + 75) / 2)


# ------------------------------------------------------------------------------------------ arrays


def _npz(path: Path) -> None:
    with path.open("wb") as f:
        np.savez(f, preds=_moved(), scores=np.ones((4, 14)))


def _h5(path: Path, value: np.ndarray) -> None:
    h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'clpose[h5]')")
    with h5py.File(path, "w") as f:
        f["preds"] = value


def _cells(shape: tuple[int, ...]) -> np.ndarray:
    cells = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        cells[index] = np.array([[float(sum(index))]])
    return cells


ARRAYS: list[tuple[str, str, Callable[[Path], None], str]] = [
    (
        "text .npy",
        "p.npy",
        lambda p: np.save(p, _moved().astype(str)),
        "the array holds text (<U",
    ),
    (
        "structured .npy, one field",
        "p.npy",
        lambda p: np.save(p, np.zeros((4, 14, 2), dtype=[("x", "f8")])),
        "the array holds records (a structured dtype or a MATLAB struct) ([('x', '<f8')]), expected numbers",
    ),
    (
        "structured .npy, two fields",
        "p.npy",
        lambda p: np.save(p, np.zeros((4, 14, 2), dtype=[("x", "f8"), ("y", "f8")])),
        "the array holds records",
    ),
    ("boolean .npy", "p.npy", lambda p: np.save(p, np.ones((4, 14, 2), bool)), "the array holds true/false values"),
    ("complex .npy", "p.npy", lambda p: np.save(p, _moved() + 0j), "the array holds complex numbers"),
    ("an .npz named .npy", "p.npy", _npz, "is an .npz archive of several arrays; expected one array (M, 14, 2)"),
    (
        "cell array preds",
        "p.mat",
        lambda p: scipy.io.savemat(str(p), {"preds": _cells((4, 14, 2))}),
        "preds holds cells or objects (a MATLAB cell array?) (object), expected numbers",
    ),
    (
        "cell array pos_pred_src",
        "p.mat",
        lambda p: scipy.io.savemat(str(p), {"pos_pred_src": _cells((14, 2, 4))}),
        "pos_pred_src holds cells or objects",
    ),
    (
        "cell array in the joints.mat layout",
        "p.mat",
        lambda p: scipy.io.savemat(str(p), {"pred": _cells((2, 14, 4))}),
        "pred holds cells or objects",
    ),
    (
        "text in HDF5",
        "p.h5",
        lambda p: _h5(p, _moved().astype("S8")),
        "preds holds text (|S8), expected numbers",
    ),
]


@pytest.mark.parametrize(("name", "file", "write", "fragment"), ARRAYS, ids=[a[0] for a in ARRAYS])
def test_prediction_arrays_that_are_not_numbers_are_one_line(
    tmp_path: Path, name: str, file: str, write: Callable[[Path], None], fragment: str
) -> None:
    path = tmp_path / file
    write(path)
    line = one_line_error(runner.invoke(app, _eval_pck(path, _lsp_gt(tmp_path))), fragment)
    assert line.startswith(f"error: {path}"), line


def test_ground_truth_arrays_that_are_not_numbers_are_one_line(tmp_path: Path) -> None:
    pred = tmp_path / "p.npy"
    np.save(pred, _moved())
    scipy.io.savemat(str(tmp_path / "cells.mat"), {"joints": _cells((3, 14, 4))})
    result = runner.invoke(app, _eval_pck(pred, tmp_path / "cells.mat"))
    one_line_error(result, f"{tmp_path / 'cells.mat'}: joints holds cells or objects")
    gt = {"pos_gt_src": np.zeros((16, 2, 2)), "jnt_missing": _cells((16, 2)), "headboxes_src": np.ones((2, 2, 2))}
    scipy.io.savemat(str(tmp_path / "gt_valid.mat"), gt)
    np.save(pred, np.zeros((2, 16, 2)))
    args = ["eval", "--metric", "pckh", "--predictions", str(pred), "--annotations", str(tmp_path / "gt_valid.mat")]
    one_line_error(runner.invoke(app, args), "gt_valid.mat: jnt_missing holds cells or objects")


def test_a_matlab_v73_mat_reads_its_preds_like_an_h5_file(tmp_path: Path) -> None:
    """`save('pred.mat', 'preds', '-v7.3')` writes HDF5 behind a 512-byte MATLAB header; MATLAB's column-major
    M x 14 x 2 reads as 2 x 14 x M there, 1-based like any .mat."""
    h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'clpose[h5]')")
    path = tmp_path / "pred.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["preds"] = (_moved() + 1.0).transpose(2, 1, 0)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with path.open("r+b") as f:  # MATLAB's header: 116 bytes of text, subsystem offset, version 0x0200, "IM"
        f.write(text.ljust(116) + bytes(8) + b"\x00\x02IM")
    assert score_pck_file(path, _lsp_gt(tmp_path))["Mean"] == pytest.approx(MOVED_MEAN)


def test_one_person_files_as_matlab_saves_them(tmp_path: Path) -> None:
    """MATLAB drops trailing singleton dimensions: one person's joints.mat is 3 x 14 and its pos_pred_src 14 x 2."""
    truth = _lsp_truth()[0] + 1.0
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.c_[truth, np.zeros(14)].T})  # 3 x 14
    scipy.io.savemat(str(tmp_path / "pred.mat"), {"pos_pred_src": _moved()[0] + 1.0})  # 14 x 2
    table = score_pck_file(tmp_path / "pred.mat", tmp_path / "joints.mat")
    assert table["Mean"] == pytest.approx(100 * 13 / 14) and table["people"] == 1


@pytest.mark.parametrize(
    ("box", "shown"),
    [(["0", 0, 10, 10], '["0", 0, 10, 10]'), ([0, 0, 10], "[0, 0, 10]"), ("0 0 10 10", '"0 0 10 10"')],
    ids=["a number as text", "three numbers", "a string"],
)
def test_hand_edited_head_boxes_of_records_are_one_line(tmp_path: Path, box: object, shown: str) -> None:
    """PCKh against prepared valid.json records reads each person's extras.head_box: 4 numbers, or one line."""
    gt = np.c_[np.random.default_rng(0).uniform(0, 90, (16, 2)), np.full(16, 2.0)]
    people = [
        {"image_index": 0, "center": [50.0, 50.0], "scale": [1.0, 1.0], "keypoints": gt, "extras": {"head_box": b}}
        for b in ([0, 0, 10, 10], box)
    ]
    images = [{"id": 0, "file": "a.jpg", "width": 100, "height": 100}]
    save_records(tmp_path / "valid.json", new_records("mpii", "mpii", "valid", images, people, tmp_path, []))
    np.save(tmp_path / "p.npy", np.stack([gt[:, :2], gt[:, :2]]))
    args = ["eval", "--metric", "pckh", "--predictions", str(tmp_path / "p.npy")]
    result = runner.invoke(app, [*args, "--annotations", str(tmp_path / "valid.json")])
    one_line_error(result, f"valid.json: people[1] extras.head_box is {shown}, expected [x1, y1, x2, y2] numbers")


def test_upper_case_suffixes_read_as_their_format(tmp_path: Path) -> None:
    """.NPY, .MAT, .H5 and .JSON are the formats their lower-case names are; each scores exactly the same."""
    pytest.importorskip("h5py", reason="h5py is not installed (pip install 'clpose[h5]')")
    gt = _lsp_gt(tmp_path, "JOINTS.MAT")
    np.save(tmp_path / "pred.npy", _moved())
    (tmp_path / "pred.npy").rename(tmp_path / "PRED.NPY")
    scipy.io.savemat(str(tmp_path / "PRED.MAT"), {"preds": _moved() + 1.0})
    _h5(tmp_path / "PRED.H5", _moved() + 1.0)
    _clpose_json(tmp_path / "PRED.JSON", [{"keypoints": p.tolist()} for p in _moved()])
    for name in ("PRED.NPY", "PRED.MAT", "PRED.H5", "PRED.JSON"):
        pred, _ = read_predictions(tmp_path / name, 14)
        assert pred.shape == (4, 14, 2), name
        assert score_pck_file(tmp_path / name, gt)["Mean"] == pytest.approx(MOVED_MEAN), name
    people = [
        {"image_index": i, "center": [100.0, 100.0], "scale": [1.0, 1.0], "keypoints": np.c_[p, np.full(14, 2.0)]}
        for i, p in enumerate(_lsp_truth())
    ]
    images = [{"id": i, "file": f"im{1001 + i}.jpg", "width": 500, "height": 500} for i in range(4)]
    save_records(tmp_path / "TEST.JSON", new_records("lsp", "lsp", "test", images, people, tmp_path, []))
    assert score_pck_file(tmp_path / "PRED.NPY", tmp_path / "TEST.JSON")["Mean"] == pytest.approx(MOVED_MEAN)


# ------------------------------------------------------------------------------------------ COCO results


def _coco_gt(tmp_path: Path) -> Path:
    """One image (id 1) with one person whose 17 keypoints are all labelled."""
    kp = np.c_[np.linspace(20, 80, 17), np.linspace(10, 90, 17), np.full(17, 2)].ravel().tolist()
    gt = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 80], "area": 4800, "iscrowd": 0}
            | {"num_keypoints": 17, "keypoints": kp}
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)], "skeleton": []}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def _perfect(tmp_path: Path) -> dict:
    """The ground-truth person as a result, with visibility flags 1 as the results format recommends."""
    kp = np.array(json.loads(_coco_gt(tmp_path).read_text())["annotations"][0]["keypoints"], float).reshape(17, 3)
    kp[:, 2] = 1.0
    return {"image_id": 1, "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.9}


def _with(**changes: object) -> Callable[[dict], list]:
    """Results [perfect, perfect with `changes`] (a key set to ... is removed)."""

    def make(perfect: dict) -> list:
        changed = {k: v for k, v in {**perfect, **changes}.items() if v is not ...}
        return [perfect, changed]

    return make


def _keypoint(index: int, value: object) -> Callable[[dict], list]:
    def make(perfect: dict) -> list:
        kp = list(perfect["keypoints"])
        kp[index] = value
        return [perfect, {**perfect, "keypoints": kp}]

    return make


COCO_CASES: list[tuple[str, Callable[[dict], object], str]] = [
    ("score as text", _with(score="0.9"), 'entry 1 score is "0.9", expected a number'),
    ("null score", _with(score=None), "entry 1 score is null, expected a number"),
    ("keypoint as text", _keypoint(4, "12"), 'entry 1 keypoints[4] is "12", expected a number'),
    ("keypoint as a boolean", _keypoint(0, True), "entry 1 keypoints[0] is true, expected a number"),
    ("null keypoints", _with(keypoints=None), "entry 1 keypoints is null, expected a list of 51 numbers"),
    ("keypoints as text", _with(keypoints="1 2 3"), 'entry 1 keypoints is "1 2 3", expected a list of 51 numbers'),
    ("too few keypoints", _with(keypoints=[0] * 50), "entry 1 keypoints: 50 keypoint values, expected 17 x 3 = 51"),
    ("no category_id", _with(category_id=...), "entry 1 has no category_id (a keypoint result is {image_id, "),
    ("no score", _with(score=...), "entry 1 has no score"),
    ("no image_id", _with(image_id=...), "entry 1 has no image_id"),
    ("category 2", _with(category_id=2), "entry 1 category_id is 2, expected 1 (person): keypoint results are of"),
    ("category as text", _with(category_id="1"), 'entry 1 category_id is "1", expected 1 (person)'),
    ("image_id as text", _with(image_id="1"), 'entry 1 image_id is "1", expected an integer (the COCO image id)'),
    ("image_id 1.5", _with(image_id=1.5), "entry 1 image_id is 1.5, expected an integer"),
    ("entry not an object", lambda p: [p, [1, 2]], "entry 1 is [1, 2], expected an object {image_id, category_id,"),
    ("an object, not a list", lambda p: {"results": [p]}, "keypoints, score}, got a dict"),
    ("an empty list", lambda p: [], "the results list is empty: there are no predictions to score"),
    (
        "bbox on the first entry only",
        lambda p: [{**p, "bbox": [20, 10, 60, 80]}, p],
        "entry 1 bbox is null, expected [x, y, w, h] numbers (entry 0 has a bbox, so pycocotools takes every",
    ),
    ("a caption result", lambda p: [{**p, "caption": "a person"}], "entry 0 has a caption: pycocotools would read"),
]


@pytest.mark.parametrize(("name", "make", "fragment"), COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_malformed_coco_results_are_one_line(tmp_path: Path, name: str, make, fragment: str) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(make(_perfect(tmp_path))))
    args = ["eval", "--metric", "oks", "--predictions", str(results), "--annotations", str(_coco_gt(tmp_path))]
    line = one_line_error(runner.invoke(app, args), fragment)
    assert line.startswith(f"error: {results}: "), line


def test_a_binary_results_file_is_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_bytes(b"\xff\xfe\x00binary")
    args = ["eval", "--metric", "oks", "--predictions", str(results), "--annotations", str(_coco_gt(tmp_path))]
    one_line_error(runner.invoke(app, args), f"predictions {results} are not a readable JSON file")


def test_coco_results_variants_read_as_numbers_and_score_exactly(tmp_path: Path) -> None:
    """What the format allows is read as it is: int keypoints, an integral float image id, extra keys, a null
    (clpose's strict JSON for a NaN) and NaN itself stay numbers for the scorer's finite check."""
    from clpose.evaluation.prediction_files import read_coco_results

    perfect = _perfect(tmp_path)
    variant = {**perfect, "image_id": 1.0, "keypoints": [round(v) for v in perfect["keypoints"]], "id": 7}
    variant["keypoints"][2], variant["keypoints"][5] = None, float("nan")  # the flags: COCOeval does not use them
    path = tmp_path / "results.json"
    path.write_text(json.dumps([variant]))  # json writes NaN as the NaN token, which Python's json reads
    (result,) = read_coco_results(path, 17)
    assert result["image_id"] == 1 and type(result["image_id"]) is int and result["id"] == 7
    assert math.isnan(result["keypoints"][2]) and math.isnan(result["keypoints"][5])
    assert all(isinstance(v, int | float) for v in result["keypoints"])
    table = score_oks_file(path, _coco_gt(tmp_path))
    assert table["AP"] == pytest.approx(1.0) and table["AR"] == pytest.approx(1.0)
    assert table["instances"] == 1 and table["images"] == 1
    path.write_text(json.dumps([{**perfect, "keypoints": perfect["keypoints"][:-3]}]))
    assert len(read_coco_results(path, 16)[0]["keypoints"]) == 48  # a custom skeleton (--sigmas of 16 values)
