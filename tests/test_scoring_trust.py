"""Issue 31, scoring: files are scored by what they say (not by position), undefined is not a number, and options
that cannot apply together are refused.

- A predictions file meets its ground truth in one place (clpose.evaluation.ground_truth.match_people): people by
  their `index` (and image), the skeleton the file and the ground truth say; checkpoint scoring and file scoring
  build their table in one place (clpose.evaluation.pck.pck_report, coco.evaluate_oks), so they agree exactly.
- An undefined column is None with its reason (clpose.evaluation.undefined), printed n/a; ground truth that cannot
  be true is an input error naming the file and the annotation / person; nothing scorable is a one-line error.
- `clpose eval` takes options of one way in: a file (--predictions) or a checkpoint (RUN).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import scipy.io
from helpers import one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.config import EvalConfig
from clpose.data.records import load_records, new_records, save_records
from clpose.evaluation.metrics import METRICS, Metric, Predictions, ScoreOptions
from clpose.evaluation.submission import write_predictions
from clpose.skeletons import get_skeleton

runner = CliRunner()


# -- synthetic ground truth and predictions ---------------------------------------------------------------------


def _records(
    tmp_path: Path, skeleton: str, n: int = 8, seed: int = 0, name: str = "valid.json", images: int = 3
) -> Path:
    """Records of n people of `skeleton` in `images` images (person i in image i % images); about 1 joint in 6
    unlabelled (torso joints too, so that some torso-normalised people are excluded), head boxes of 30 to 60 px."""
    rng = np.random.default_rng(seed)
    k = get_skeleton(skeleton).num_keypoints
    table = [{"id": 10 + j, "file": f"im{j}.jpg", "width": 400, "height": 400} for j in range(images)]
    people = []
    for i in range(n):
        v = np.where(rng.random(k) < 0.17, 0.0, 2.0)
        xy = rng.uniform(50, 350, (k, 2)).round(2)
        corner = rng.uniform(60, 300, 2).round(1)
        head = [*corner, *(corner + rng.uniform(20, 40, 2).round(1))]
        people.append(
            {
                "image_index": i % images,
                "center": [200.0, 200.0],
                "scale": [1.5, 1.5],
                "keypoints": np.concatenate([xy, v[:, None]], axis=1),
                "box": [50.0, 50.0, 300.0, 300.0],
                "extras": {"head_box": head},
            }
        )
    path = tmp_path / name
    save_records(path, new_records(skeleton, skeleton, "valid", table, people, tmp_path, []))
    return path


def _dataset(path: Path) -> SimpleNamespace:
    """What a checkpoint's evaluation scores on: the records and their skeleton (crop settings for COCO)."""
    records = load_records(path)
    return SimpleNamespace(
        records=records, skeleton=get_skeleton(records.skeleton), input_hw=(64, 48), box_padding=1.25
    )


def _predictions(dataset: SimpleNamespace, seed: int = 1, spread: float = 6.0) -> Predictions:
    """The ground truth moved by N(0, spread) pixels: some joints within the thresholds, some not."""
    gt = dataset.records.keypoints[..., :2]
    rng = np.random.default_rng(seed)
    kpts = gt + rng.normal(0, spread, gt.shape)
    return Predictions(np.arange(len(gt)), kpts[None], rng.uniform(0.3, 1.0, gt.shape[:2])[None])


def _eval_file(metric: str, predictions: Path, annotations: Path, *extra: str) -> tuple[Any, dict | None]:
    out = predictions.parent / "table.json"
    out.unlink(missing_ok=True)
    argv = ["eval", "--metric", metric, "--predictions", str(predictions), "--annotations", str(annotations)]
    result = runner.invoke(app, [*argv, "--json", str(out), *extra])
    table = json.loads(out.read_text()) if out.is_file() else None
    if table is not None:
        table.pop("settings"), table.pop("versions")
    return result, table


def _plain(table: dict) -> dict:
    """A table as its JSON reads back (what --json writes)."""
    return json.loads(json.dumps(table))


# -- class 3: files are scored by what they say -----------------------------------------------------------------

PAIRS = [
    ("pck", "lsp"),
    ("pck", "mpii"),
    ("pck", "coco"),
    ("pck", "synthetic"),
    ("pckh", "mpii"),
    ("pckh", "synthetic"),
]
FORMATS = {"clpose": "p.json", "npy": "p.npy", "mpii-preds": "p.mat", "lsp-joints": "p.mat"}


@pytest.mark.parametrize(("metric", "skeleton"), PAIRS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_checkpoints_table_and_its_saved_files_table_are_identical(
    tmp_path: Path, metric: str, skeleton: str, fmt: str
) -> None:
    """`clpose eval RUN` scored PCKh Head 25.2 and the file it saved 22.4: the file was scored as MPII whatever its
    skeleton. Every metric/skeleton pair, every format --save-predictions writes: the same table, key by key."""
    annotations = _records(tmp_path, skeleton)
    dataset = _dataset(annotations)
    preds = _predictions(dataset, spread=10.0)
    if skeleton in ("mpii", "synthetic"):  # upper neck exact, head top far: MPII's Head 0, the synthetic one's 50
        gt = dataset.records.keypoints[..., :2]
        preds.keypoints[0, :, 8], preds.keypoints[0, :, 9] = gt[:, 8], gt[:, 9] + 100.0
    expected, _ = METRICS[metric].score_predictions(dataset, preds, ScoreOptions())
    saved = tmp_path / FORMATS[fmt]
    write_predictions(saved, fmt, dataset, preds)
    result, table = _eval_file(metric, saved, annotations)
    assert result.exit_code == 0, result.output
    assert table == _plain(expected)
    assert expected["Head"] == {"mpii": 0.0, "synthetic": 50.0}.get(skeleton, expected["Head"])


def test_a_joint_on_the_threshold_scores_the_same_from_the_saved_json(tmp_path: Path) -> None:
    """A joint exactly 0.2 torso away is correct (inclusive); the saved JSON rounded keypoints to 4 decimals, which
    moved it 0.000025 px beyond. The file holds every digit, so the file's table is the checkpoint's."""
    annotations = _records(tmp_path, "lsp", n=1)
    data = json.loads(annotations.read_text())
    rows = [[100.015625 + 7 * k, 60.0 + 5 * k, 2] for k in range(14)]
    rows[9], rows[2] = [100.015625, 100.0, 2], [130.015625, 140.0, 2]  # l-shoulder, r-hip: torso 50, threshold 10
    rows[13] = [200.015625, 150.0, 2]  # head top
    data["people"][0]["keypoints"] = rows
    annotations.write_text(json.dumps(data))
    dataset = _dataset(annotations)
    kpts = dataset.records.keypoints[..., :2].copy()
    kpts[0, 13, 0] -= 10.0  # exactly on the threshold
    preds = Predictions(np.arange(1), kpts[None], np.ones((1, 1, 14)))
    expected, _ = METRICS["pck"].score_predictions(dataset, preds, ScoreOptions())
    assert expected["Head"] == 100.0 and expected["Mean"] == 100.0
    write_predictions(tmp_path / "p.json", "clpose", dataset, preds)
    assert _eval_file("pck", tmp_path / "p.json", annotations)[1] == _plain(expected)


def _coco_dataset(tmp_path: Path, gt: dict, annotations: Path) -> SimpleNamespace:
    """COCO records of the scored people of `gt` (prepared from `annotations`), as a checkpoint evaluates them."""
    people = [a for a in gt["annotations"] if a["num_keypoints"] and not a["iscrowd"]]
    images = [{"id": i["id"], "file": i["file_name"], "width": 640, "height": 480} for i in gt["images"]]
    index = {i["id"]: j for j, i in enumerate(gt["images"])}
    rows = [
        {
            "image_index": index[a["image_id"]],
            "center": [a["bbox"][0] + a["bbox"][2] / 2, a["bbox"][1] + a["bbox"][3] / 2],
            "scale": [a["bbox"][2] / 200, a["bbox"][3] / 200],
            "keypoints": np.array(a["keypoints"], float).reshape(17, 3),
        }
        for a in people
    ]
    records = tmp_path / "val.json"
    save_records(records, new_records("coco", "coco", "val", images, rows, tmp_path, [str(annotations)]))
    return _dataset(records)


def test_a_checkpoints_oks_table_and_its_saved_results_table_are_identical(tmp_path: Path) -> None:
    gt, annotations = _coco_truth(tmp_path)
    dataset = _coco_dataset(tmp_path, gt, annotations)
    preds = _predictions(dataset, spread=3.0)
    expected, results = METRICS["oks"].score_predictions(dataset, preds, ScoreOptions(eval_cfg=EvalConfig()))
    saved = tmp_path / "person_keypoints_val2017_clpose_results.json"
    write_predictions(saved, "coco", dataset, preds, results)
    result, table = _eval_file("oks", saved, annotations)
    assert result.exit_code == 0, result.output
    assert expected["APL"] is None and expected["undefined"] == {
        "APL": "no ground truth of large area (above 96^2 px^2)"
    }
    for key in (*METRICS["oks"].columns, "undefined", "nonfinite", "instances", "images"):
        assert table[key] == _plain(expected)[key], key


def test_people_are_matched_by_their_index_not_their_place(tmp_path: Path) -> None:
    """The same predictions JSON with its people shuffled (each keeping its index) scored PCKh 1.7 instead of 16.3."""
    annotations = _records(tmp_path, "mpii", n=12)
    dataset = _dataset(annotations)
    preds = _predictions(dataset)
    saved = tmp_path / "p.json"
    write_predictions(saved, "clpose", dataset, preds)
    _, in_order = _eval_file("pckh", saved, annotations)
    data = json.loads(saved.read_text())
    for seed in range(3):
        data["people"] = [data["people"][j] for j in np.random.default_rng(seed).permutation(12)]
        saved.write_text(json.dumps(data))
        result, shuffled = _eval_file("pckh", saved, annotations)
        assert result.exit_code == 0, result.output
        assert shuffled == in_order, seed
    assert in_order == _plain(METRICS["pckh"].score_predictions(dataset, preds, ScoreOptions())[0])


def _people(n: int, **per_person: Any) -> list[dict]:
    rows = [[100.0, 100.0, 0.9]] * 16
    return [{"index": i, "keypoints": rows, **{k: v(i) for k, v in per_person.items()}} for i in range(n)]


def _edit(people: list[dict], j: int, **changes: Any) -> list[dict]:
    people = [dict(p) for p in people]
    people[j] = {k: v for k, v in {**people[j], **changes}.items() if v is not ...}
    return people


IDENTITY_CASES: list[tuple[str, Any, list[str]]] = [
    ("an index given twice", lambda p: _edit(p, 3, index=1), ["index 1 is given twice (people[1] and people[3])"]),
    ("an index past the people", lambda p: _edit(p, 2, index=4), ["people[2] index 4 is not a person of", "(0 to 3)"]),
    ("an index far past", lambda p: _edit(p, 0, index=10**6), ["people[0] index 1000000 is not a person of"]),
    ("a negative index", lambda p: _edit(p, 1, index=-1), ["people[1] index is -1, expected a person's index"]),
    ("an index as text", lambda p: _edit(p, 1, index="1"), ['people[1] index is "1", expected a person']),
    ("an index 1.0", lambda p: _edit(p, 1, index=1.0), ["people[1] index is 1.0, expected a person"]),
    ("an index true", lambda p: _edit(p, 1, index=True), ["people[1] index is true, expected a person"]),
    ("a huge index", lambda p: _edit(p, 1, index=10**30), ["people[1] index is 1000000000000000000000000000000"]),
    ("a person missing", lambda p: p[:2] + p[3:], ["no prediction for index 2 (1 of the 4 people of", "missing)"]),
    ("a person without an index", lambda p: _edit(p, 2, index=...), ["people[2] has no index but people[0] has"]),
    ("another image", lambda p: _edit(p, 1, image="im2.jpg"), ['index 1 has image "im2.jpg", but person 1 of']),
    ("another image id", lambda p: _edit(p, 1, image_id=12), ["people[1] index 1 has image_id 12, but person 1 of"]),
    ("an image id as a list", lambda p: _edit(p, 0, image_id=[10]), ["people[0] image_id is [10], expected"]),
    ("an image as a number", lambda p: _edit(p, 0, image=3), ["people[0] image is 3, expected a file name"]),
]


@pytest.mark.parametrize(("name", "make", "fragments"), IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES])
def test_predictions_that_do_not_say_one_person_each_are_refused(
    tmp_path: Path, name: str, make: Any, fragments: list[str]
) -> None:
    annotations = _records(tmp_path, "mpii", n=4)
    good = _people(4, image=lambda i: f"im{i % 3}.jpg", image_id=lambda i: 10 + i % 3)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "0-based",
                                "skeleton": "mpii", "people": good}))  # fmt: skip
    assert runner.invoke(app, ["eval", "--metric", "pckh", "--predictions", str(path), "--annotations",
                               str(annotations)]).exit_code == 0  # fmt: skip
    data = json.loads(path.read_text())
    data["people"] = make(good)
    path.write_text(json.dumps(data))
    result, table = _eval_file("pckh", path, annotations)
    line = one_line_error(result, *fragments)
    assert line.startswith(f"error: {path}"), line
    assert table is None


def test_a_skeleton_other_than_the_ground_truths_is_refused(tmp_path: Path) -> None:
    """Also where the joints count the same (MPII and the synthetic figures both have 16), and against the
    benchmarks' own files (LSP's joints.mat holds LSP people, MPII's gt_valid.mat MPII people)."""
    joints, gt_valid = tmp_path / "joints.mat", tmp_path / "gt_valid.mat"
    scipy.io.savemat(str(joints), {"joints": np.ones((3, 14, 2))})
    _gt_valid(gt_valid, np.array([[10.0, 10, 40, 50]] * 3))
    truths = {
        "synthetic": _records(tmp_path, "synthetic", n=2, name="synthetic.json"),
        "mpii": _records(tmp_path, "mpii", n=2, name="mpii.json"),
        "lsp": joints,
    }
    cases = [("mpii", "synthetic", truths["synthetic"]), ("synthetic", "mpii", truths["mpii"]),
             ("lsp", "mpii", truths["mpii"]), ("mpii", "lsp", joints), ("synthetic", "mpii", gt_valid)]  # fmt: skip
    for said, truth, ground_truth in cases:
        path = tmp_path / "p.json"
        path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "0-based",
                                    "skeleton": said, "people": _people(2)}))  # fmt: skip
        result, _ = _eval_file("pck", path, ground_truth)
        one_line_error(result, f'{path}: skeleton is "{said}", but {ground_truth} holds {truth} people')


def test_arrays_are_positional_and_must_hold_every_person(tmp_path: Path) -> None:
    """.npy / .mat are in the ground truth's order by the benchmarks' definition: their count is checked."""
    annotations = _records(tmp_path, "lsp", n=5)
    np.save(tmp_path / "p.npy", np.zeros((4, 14, 2)))
    result, _ = _eval_file("pck", tmp_path / "p.npy", annotations)
    one_line_error(result, f"{tmp_path / 'p.npy'} holds 4 people but {annotations} has 5; expected 5")
    scipy.io.savemat(str(tmp_path / "p.mat"), {"preds": np.zeros((6, 14, 2))})
    result, _ = _eval_file("pck", tmp_path / "p.mat", annotations)
    one_line_error(result, "p.mat holds 6 people but", "has 5; expected 5")


def test_a_json_without_indices_is_in_order_and_must_hold_every_person(tmp_path: Path) -> None:
    annotations = _records(tmp_path, "lsp", n=3)
    gt = load_records(annotations).keypoints[..., :2]
    path = tmp_path / "p.json"
    people = [{"keypoints": g.tolist()} for g in gt]
    path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "0-based",
                                "people": people}))  # fmt: skip
    result, table = _eval_file("pck", path, annotations)
    assert result.exit_code == 0 and table["Mean"] == 100.0
    path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "0-based",
                                "people": people[:2]}))  # fmt: skip
    one_line_error(_eval_file("pck", path, annotations)[0], "holds 2 people but", "has 3; expected 3")


# -- class 4: undefined is not a number -------------------------------------------------------------------------


def _keypoints(i: int) -> list[float]:
    rng = np.random.default_rng(i)
    xy = rng.uniform([100, 100], [160, 180], (17, 2)).round(2)
    return np.concatenate([xy, np.full((17, 1), 2.0)], axis=1).reshape(-1).tolist()


def _coco_truth(tmp_path: Path, **change: Any) -> tuple[dict, Path]:
    """Three medium people (area 4800) in two images, a crowd and a person with no labelled keypoint; `change`
    sets keys of annotation 1 (a key set to ... is removed)."""
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in (1, 2)]
    anns = [
        {"id": i, "image_id": 1 + i % 2, "category_id": 1, "iscrowd": 0, "area": 4800.0, "bbox": [90, 90, 80, 100],
         "num_keypoints": 17, "keypoints": _keypoints(i)}
        for i in (1, 2, 3)
    ]  # fmt: skip
    anns.append({**anns[0], "id": 4, "iscrowd": 1, "num_keypoints": 17})
    anns.append({**anns[0], "id": 5, "num_keypoints": 0, "keypoints": [0] * 51})
    anns[0] = {k: v for k, v in {**anns[0], **change}.items() if v is not ...}
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return gt, path


def _results(tmp_path: Path, gt: dict) -> Path:
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
        for a in gt["annotations"]
        if a["num_keypoints"] and not a["iscrowd"]
    ]
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results))
    return path


def test_an_area_range_without_ground_truth_is_n_a_not_minus_100(tmp_path: Path) -> None:
    gt, annotations = _coco_truth(tmp_path)
    result, table = _eval_file("oks", _results(tmp_path, gt), annotations)
    assert result.exit_code == 0, result.output
    assert table["AP"] == 1.0 and table["APM"] == 1.0 and table["AR"] == 1.0
    assert table["APL"] is None and table["undefined"] == {"APL": "no ground truth of large area (above 96^2 px^2)"}
    assert "-100" not in result.output and "-1.0" not in result.output
    assert "APL n/a: no ground truth of large area (above 96^2 px^2)" in result.output
    row = next(line for line in result.output.splitlines() if "100.0" in line)
    assert row.split("│")[1:-1][4].strip() == "n/a", row  # the APL cell
    big = {"area": 20000.0, "bbox": [50, 50, 100, 200]}
    gt, annotations = _coco_truth(tmp_path, **big)  # one large person: APL defined, APM still
    result, table = _eval_file("oks", _results(tmp_path, gt), annotations)
    assert table["APL"] == pytest.approx(1.0) and table["APM"] == 1.0 and "undefined" not in table


NOTHING = "gt.json: no ground truth can be scored"
TOO_SMALL = "a person with labelled keypoints (num_keypoints "
AT_LEAST = "needs an area of at least 1 px^2"
COCO_TRUTH_CASES: list[tuple[str, dict, list[str]]] = [
    ("area NaN", {"area": math.nan}, ["annotation id 1 has area nan: expected a finite number >= 0"]),
    ("area inf", {"area": math.inf}, ["annotation id 1 has area inf"]),
    ("area negative", {"area": -5.0}, ["annotation id 1 has area -5.0: expected a finite number >= 0"]),
    ("area text", {"area": "4800"}, ['annotation id 1 has area "4800"']),
    ("area missing", {"area": ...}, ["annotation id 1 has area null"]),
    ("bbox NaN", {"bbox": [90, math.nan, 80, 100]}, ["annotation id 1 has bbox [90, NaN, 80, 100]: expected"]),
    ("bbox missing", {"bbox": ...}, ["annotation id 1 has bbox null: expected [x, y, w, h]"]),
    ("bbox negative", {"bbox": [90, 90, -80, 100]}, ["annotation id 1 has bbox [90, 90, -80, 100]: its width"]),
    ("keypoint NaN", {"keypoints": [math.nan, *_keypoints(1)[1:]]}, ["annotation id 1 has keypoints that are not"]),
    ("keypoint text", {"keypoints": ["1", *_keypoints(1)[1:]]}, ['annotation id 1 has keypoints ["1"']),
    ("50 keypoint values", {"keypoints": _keypoints(1)[:50]}, ["annotation id 1 has keypoints [", "expected [x1"]),
    ("48 keypoint values", {"keypoints": _keypoints(1)[:48]}, ["annotation id 1 has 16 keypoints, but the pred"]),
    ("num_keypoints missing", {"num_keypoints": ...}, ["annotation id 1 has num_keypoints null: expected an int"]),
    ("num_keypoints -1", {"num_keypoints": -1}, ["annotation id 1 has num_keypoints -1"]),
    ("iscrowd 2", {"iscrowd": 2}, ["annotation id 1 has iscrowd 2: expected 0 or 1"]),
    ("iscrowd missing", {"iscrowd": ...}, ["annotation id 1 has iscrowd null"]),
    ("a duplicate id", {"id": 2}, ["gt.json: annotation id 2 is given twice"]),
    # OKS divides by the area: below one pixel, a person with labelled keypoints has no size (AP 44.2 from perfect
    # predictions with one such person, 0.0 with all)
    ("area 0", {"area": 0.0}, [f"annotation id 1 has area 0.0: {TOO_SMALL}17, not a crowd) {AT_LEAST}"]),
    ("area 0 as an integer", {"area": 0}, [f"annotation id 1 has area 0: {TOO_SMALL}17, not a crowd) {AT_LEAST}"]),
    ("area 1e-300", {"area": 1e-300}, [f"annotation id 1 has area 1e-300: {TOO_SMALL}17"]),
    ("area 0.5", {"area": 0.5}, [f"annotation id 1 has area 0.5: {TOO_SMALL}17"]),
    ("area just below 1", {"area": 0.999999}, [f"annotation id 1 has area 0.999999: {TOO_SMALL}17"]),
    ("area 0, one keypoint", {"area": 0.0, "num_keypoints": 1}, [f"area 0.0: {TOO_SMALL}1, not a crowd)"]),
]


@pytest.mark.parametrize(("name", "change", "fragments"), COCO_TRUTH_CASES, ids=[c[0] for c in COCO_TRUTH_CASES])
def test_ground_truth_that_cannot_be_true_is_an_input_error(
    tmp_path: Path, name: str, change: dict, fragments: list[str]
) -> None:
    """One NaN area let perfect predictions score 97.8; negative areas gave -100.0 in every column, exit 0."""
    gt, annotations = _coco_truth(tmp_path)
    results = _results(tmp_path, gt)
    gt, annotations = _coco_truth(tmp_path, **change)
    result, table = _eval_file("oks", results, annotations)
    line = one_line_error(result, *fragments)
    assert line.startswith(f"error: {annotations}"), line
    assert table is None


@pytest.mark.parametrize(
    ("name", "edit", "fragment"),
    [
        (
            "every person without keypoints",
            lambda a: {**a, "num_keypoints": 0},
            "the 5 people of the scored images: crowds (iscrowd 1): 1, no labelled keypoint (num_keypoints 0): 4",
        ),
        (
            "every person a crowd",
            lambda a: {**a, "iscrowd": 1},
            "crowds (iscrowd 1): 5, no labelled keypoint (num_keypoints 0): 0",
        ),
        ("no person at all", None, "(the scored images have no annotated person)"),
    ],
)
def test_ground_truth_with_nobody_to_score_is_refused_not_a_table_of_minus_100(
    tmp_path: Path, name: str, edit: Any, fragment: str
) -> None:
    gt, annotations = _coco_truth(tmp_path)
    results = _results(tmp_path, gt)
    gt["annotations"] = [edit(a) for a in gt["annotations"]] if edit else []
    annotations.write_text(json.dumps(gt))
    result, table = _eval_file("oks", results, annotations)
    one_line_error(result, NOTHING, fragment)
    assert table is None


def test_people_without_a_normaliser_are_excluded_and_counted(tmp_path: Path) -> None:
    """LSP joints.mat, torso 50 px (PCK@0.2: 10 px): person 1's torso joints coincide, person 2's predictions are
    all 12 px off, person 0's exact. Person 1 is excluded (it printed nan or vanished): Mean = 14 / 28."""
    pos = np.random.default_rng(0).uniform(60, 200, (3, 14, 2)).round(1)  # 1-based
    pos[:, 9] = [1.0, 1.0]  # l-shoulder
    pos[:, 2] = [[31.0, 41.0], [1.0, 1.0], [31.0, 41.0]]  # r-hip: 50 px away, on the shoulder, 50 px

    def save() -> None:
        joints = np.concatenate([pos, np.zeros((3, 14, 1))], axis=2).transpose(2, 1, 0)  # 3 x 14 x N
        scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})

    save()
    pred = pos - 1.0
    pred[2, :, 0] += 12.0
    np.save(tmp_path / "p.npy", pred)
    result, table = _eval_file("pck", tmp_path / "p.npy", tmp_path / "joints.mat")
    assert result.exit_code == 0, result.output
    assert table["Mean"] == 50.0 and table["people"] == 3 and table["joints_counted"] == 28
    assert table["excluded"] == {"torso of zero length (l-shoulder, r-hip)": 1}
    said = " ".join(result.output.split())
    assert "1 of 3 people excluded, they cannot be scored: torso of zero length (l-shoulder, r-hip) (1)" in said
    pos[:, 2] = pos[:, 9]  # every torso of zero length: no one to score
    save()
    result, table = _eval_file("pck", tmp_path / "p.npy", tmp_path / "joints.mat")
    one_line_error(
        result, "joints.mat: none of its 3 people can be scored (torso of zero length (l-shoulder, r-hip): 3)"
    )
    assert table is None


def test_a_person_whose_torso_joints_are_not_both_labelled_is_excluded_both_ways_in(tmp_path: Path) -> None:
    """Records of 3 LSP people, torso 50 px: person 0 predicted exactly, person 2 12 px off everywhere (misses), person
    1 12 px off with its r-hip unlabelled (left at 0, 0): no torso, excluded, from a checkpoint and from a file."""
    annotations = _records(tmp_path, "lsp", n=3)
    data = json.loads(annotations.read_text())
    for person in data["people"]:
        person["keypoints"] = [[60.0 + 9 * k, 80.0 + 4 * k, 2] for k in range(14)]
        person["keypoints"][9], person["keypoints"][2] = [100.0, 100.0, 2], [130.0, 140.0, 2]
    data["people"][1]["keypoints"][2] = [0.0, 0.0, 0]
    annotations.write_text(json.dumps(data))
    dataset = _dataset(annotations)
    kpts = dataset.records.keypoints[..., :2].copy()
    kpts[1:, :, 0] += 12.0
    preds = Predictions(np.arange(3), kpts[None], np.ones((1, 3, 14)))
    expected, _ = METRICS["pck"].score_predictions(dataset, preds, ScoreOptions())
    assert expected["Mean"] == 50.0 and expected["joints_counted"] == 28
    assert expected["excluded"] == {"torso joints (l-shoulder, r-hip) not both labelled": 1}
    np.save(tmp_path / "p.npy", kpts)
    assert _eval_file("pck", tmp_path / "p.npy", annotations)[1] == _plain(expected)


def _gt_valid(path: Path, boxes: np.ndarray, pos: np.ndarray | None = None) -> np.ndarray:
    """gt_valid.mat of 3 people (1-based), every joint labelled, the given head boxes (3, 4)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(20, 200, (3, 16, 2)).round(1) if pos is None else pos
    scipy.io.savemat(str(path), {"pos_gt_src": pos.transpose(1, 2, 0), "jnt_missing": np.zeros((16, 3)),
                                 "headboxes_src": boxes.reshape(3, 2, 2).transpose(1, 2, 0)})  # fmt: skip
    return pos


def test_pckh_head_boxes_of_zero_size_exclude_and_nan_ones_are_refused(tmp_path: Path) -> None:
    boxes = np.array([[10.0, 10, 40, 50], [5, 5, 5, 5], [0, 0, 30, 40]])  # person 1: a point
    gt = tmp_path / "gt_valid.mat"
    pos = _gt_valid(gt, boxes)
    np.save(tmp_path / "p.npy", pos - 1.0)
    result, table = _eval_file("pckh", tmp_path / "p.npy", gt)
    assert result.exit_code == 0, result.output
    assert table["Mean"] == 100.0 and table["Mean@0.1"] == 100.0 and table["joints_counted"] == 32
    assert table["excluded"] == {"the head box has zero size": 1}
    for bad in (np.nan, np.inf):
        boxes[2, 3] = bad
        _gt_valid(gt, boxes, pos)
        one_line_error(_eval_file("pckh", tmp_path / "p.npy", gt)[0], "gt_valid.mat: the head box of person 2 is [")
    boxes[:] = 7.0
    _gt_valid(gt, boxes, pos)
    one_line_error(_eval_file("pckh", tmp_path / "p.npy", gt)[0], "none of its 3 people can be scored (the head box")
    boxes = np.array([[10.0, 10, 40, 50]] * 3)
    pos[1, 4] = np.nan  # a labelled joint (jnt_missing 0) at NaN
    _gt_valid(gt, boxes, pos)
    one_line_error(_eval_file("pckh", tmp_path / "p.npy", gt)[0], "gt_valid.mat: person 1 joint 4 (l-knee) is labelled")


def test_records_with_a_nan_head_box_are_refused_from_a_checkpoint_and_a_file(tmp_path: Path) -> None:
    annotations = _records(tmp_path, "mpii", n=3)
    data = json.loads(annotations.read_text())
    data["people"][2]["extras"]["head_box"][1] = math.nan
    annotations.write_text(json.dumps(data))  # Python writes the NaN token
    dataset = _dataset(annotations)
    preds = _predictions(dataset)
    from clpose.errors import ClposeError

    with pytest.raises(ClposeError, match=r"valid\.json: the head box of person 2 is \[.*nan"):
        METRICS["pckh"].score_predictions(dataset, preds, ScoreOptions())
    np.save(tmp_path / "p.npy", preds.keypoints[0])
    one_line_error(_eval_file("pckh", tmp_path / "p.npy", annotations)[0], "the head box of person 2 is [")


def test_a_column_with_no_labelled_joint_is_n_a_with_its_reason(tmp_path: Path) -> None:
    annotations = _records(tmp_path, "mpii", n=3)
    data = json.loads(annotations.read_text())
    for person in data["people"]:
        for k in (10, 15):  # no wrist labelled
            person["keypoints"][k][2] = 0
    annotations.write_text(json.dumps(data))
    dataset = _dataset(annotations)
    np.save(tmp_path / "p.npy", dataset.records.keypoints[..., :2])
    result, table = _eval_file("pckh", tmp_path / "p.npy", annotations)
    assert result.exit_code == 0, result.output
    assert table["Wrist"] is None and table["Mean"] == 100.0
    assert table["undefined"] == {"Wrist": "no r-wrist or l-wrist is labelled among the people scored"}
    assert "Wrist n/a: no r-wrist or l-wrist is labelled among the people scored" in " ".join(result.output.split())
    assert "nan" not in result.output.lower().replace("n/a", "")


def test_an_undefined_headline_never_becomes_a_runs_best() -> None:
    """Training's best.pt compares Metric.value: an undefined headline (None, or a NaN of another metric) is NaN
    there, which never improves on a best, and a best of NaN (none yet) is beaten by any number."""
    for metric in METRICS.values():
        undefined = metric.value({metric.headline: None})
        assert math.isnan(undefined)
        assert not metric.improves(undefined, math.nan) and not metric.improves(undefined, 0.0)
        assert not metric.improves(metric.value({metric.headline: math.nan}), 50.0)
        assert metric.improves(0.0, math.nan)


def test_a_registered_metrics_nan_is_printed_n_a_and_all_nan_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clpose.evaluation.tables import print_tables

    two = Metric("two", "two numbers", ("A", "B"), "A", None, 1.0, lambda d, p, o: ({}, None), None)
    monkeypatch.setitem(METRICS, "two", two)
    table = {"A": 1.5, "B": math.nan, "metric": "two"}
    print_tables([table])
    assert table["B"] is None and table["undefined"] == {"B": "the scorer gave no number (NaN)"}
    from clpose.errors import ClposeError

    with pytest.raises(ClposeError, match=r"nothing could be scored \(the scorer gave no number \(NaN\)\)"):
        print_tables([{"A": math.nan, "B": None, "metric": "two"}])


# -- class 5: options of one way in -----------------------------------------------------------------------------


def _lsp_files(tmp_path: Path) -> list[str]:
    joints = np.ones((3, 14, 2))
    joints[:2] = np.random.default_rng(0).uniform(10, 100, (2, 14, 2))
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    np.save(tmp_path / "p.npy", joints[:2].transpose(2, 1, 0) - 1.0)
    return ["--predictions", str(tmp_path / "p.npy"), "--annotations", str(tmp_path / "joints.mat")]


FILE_MODE_CONFLICTS = [
    (["RUN"], "RUN cannot be used with --predictions"),
    (["--recipe", "r.yaml"], "--recipe cannot be used with --predictions"),
    (["--split", "valid"], "--split cannot be used with --predictions"),
    (["--flip"], "--flip/--no-flip cannot be used with --predictions"),
    (["--no-flip"], "--flip/--no-flip cannot be used with --predictions"),
    (["--boxes", "gt"], "--boxes cannot be used with --predictions"),
    (["--batch", "8"], "--batch cannot be used with --predictions"),
    (["--stages", "all"], "--stages cannot be used with --predictions"),
    (["--save-predictions", "S.json"], "--save-predictions cannot be used with --predictions"),
    (["--format", "npy"], "--format cannot be used with --predictions"),
    (["--device", "cpu"], "--device cannot be used with --predictions"),
    (["--amp", "off"], "--amp cannot be used with --predictions"),
    (["--runtime", "onnxruntime"], "--runtime cannot be used with --predictions"),
    (["--threads", "2"], "--threads cannot be used with --predictions"),
    (["--compile"], "--compile cannot be used with --predictions"),
    (["--head", "official"], "--head official does not apply to --metric pck (it applies to pckh)"),
    (["--sigmas", ",".join(["0.05"] * 14)], "--sigmas does not apply to --metric pck (it applies to oks)"),
]


@pytest.mark.parametrize(("extra", "fragment"), FILE_MODE_CONFLICTS, ids=[" ".join(c[0]) for c in FILE_MODE_CONFLICTS])
def test_options_of_a_checkpoint_are_refused_with_a_predictions_file(
    tmp_path: Path, extra: list[str], fragment: str
) -> None:
    """`clpose eval RUN --predictions P` scored P and ignored RUN, --runtime and --flip; --save-predictions did
    nothing."""
    files = _lsp_files(tmp_path)
    assert runner.invoke(app, ["eval", "--metric", "pck", *files]).exit_code == 0
    run = [str(tmp_path / "run")] if extra == ["RUN"] else []
    argv = ["eval", *run, "--metric", "pck", *files, *([] if run else extra)]
    one_line_error(runner.invoke(app, argv), fragment)
    assert not (tmp_path / "S.json").exists()


def test_options_a_metric_does_not_read_are_refused(tmp_path: Path) -> None:
    gt, annotations = _coco_truth(tmp_path)
    files = ["--predictions", str(_results(tmp_path, gt)), "--annotations", str(annotations)]
    one_line_error(runner.invoke(app, ["eval", "--metric", "oks", *files, "--alpha", "0.5"]),
                   "--alpha does not apply to --metric oks (it applies to pck, pckh)")  # fmt: skip
    one_line_error(runner.invoke(app, ["eval", "--metric", "oks", *files, "--head", "official"]),
                   "--head official does not apply to --metric oks")  # fmt: skip
    assert runner.invoke(app, ["eval", "--metric", "oks", *files, "--head", "top"]).exit_code == 0  # the default


def test_options_of_a_file_are_refused_with_a_checkpoint(tmp_path: Path) -> None:
    """Refused before the checkpoint is read: the rule is about the command line, not the files."""
    ckpt = tmp_path / "missing.pt"
    one_line_error(runner.invoke(app, ["eval", str(ckpt), "--sigmas", "0.1"]),
                   "--sigmas applies to --predictions (a file) only")  # fmt: skip
    one_line_error(runner.invoke(app, ["eval", str(ckpt), "--format", "npy"]),
                   "--format needs --save-predictions")  # fmt: skip


# -- the re-run of issue 31: what a file says is checked wherever it says it -------------------------------------
#
# A clpose predictions JSON without `index` is in the ground truth's order; where its people name their image, that
# is checked against the person at that place (match_people), in every ground truth that names images (one person
# per image or several). An array or a file with indices was already matched by what it says.


def _clpose_json(path: Path, people: list[dict], skeleton: str = "lsp") -> Path:
    path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "0-based",
                                "skeleton": skeleton, "people": people}))  # fmt: skip
    return path


def _named_people(annotations: Path, *keys: str) -> list[dict]:
    """The ground truth of records as predictions without index, in its order, each naming its image by `keys`."""
    records = load_records(annotations)
    people = []
    for i, kpts in enumerate(records.keypoints[..., :2].tolist()):
        image = records.images[records.image_index[i]]
        named = {"image": image["file"], "image_id": image["id"]}
        people.append({"keypoints": kpts, **{key: named[key] for key in keys}})
    return people


def _order(people: list[dict], order: list[int]) -> list[dict]:
    return [people[j] for j in order]


def _set(people: list[dict], j: int, **changes: Any) -> list[dict]:
    people = [dict(p) for p in people]
    people[j].update(changes)
    return people


def _text_ids(people: list[dict]) -> list[dict]:
    return [{**p, "image_id": str(p["image_id"])} for p in people]


SHUFFLE = [3, 0, 5, 1, 4, 2]
# name, images of the 6 people of the ground truth (person i in image i % images), keys named, edit, the first
# contradiction: (position, key, what the file says, what the ground truth says)
POSITION_CASES: list[tuple[str, int, tuple[str, ...], Any, tuple[int, str, str, str]]] = [
    ("shuffled, one per image, image and id", 6, ("image", "image_id"), lambda p: _order(p, SHUFFLE),
     (0, "image", '"im3.jpg"', '"im0.jpg"')),
    ("shuffled, one per image, image only", 6, ("image",), lambda p: _order(p, SHUFFLE),
     (0, "image", '"im3.jpg"', '"im0.jpg"')),
    ("shuffled, one per image, id only", 6, ("image_id",), lambda p: _order(p, SHUFFLE), (0, "image_id", "13", "10")),
    ("shuffled, ids as text", 6, ("image_id",), lambda p: _text_ids(_order(p, SHUFFLE)),
     (0, "image_id", '"13"', "10")),
    ("reversed, two per image", 3, ("image", "image_id"), lambda p: p[::-1], (0, "image", '"im2.jpg"', '"im0.jpg"')),
    ("two of other images swapped late", 3, ("image",), lambda p: _order(p, [0, 1, 2, 4, 3, 5]),
     (3, "image", '"im1.jpg"', '"im0.jpg"')),
    ("one image name wrong", 6, ("image", "image_id"), lambda p: _set(p, 5, image="im9.jpg"),
     (5, "image", '"im9.jpg"', '"im5.jpg"')),
    ("the right image, another id", 6, ("image", "image_id"), lambda p: _set(p, 2, image_id=11),
     (2, "image_id", "11", "12")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "images", "keys", "edit", "expected"), POSITION_CASES, ids=[c[0] for c in POSITION_CASES]
)
def test_a_file_without_index_whose_people_name_other_images_is_refused(
    tmp_path: Path, name: str, images: int, keys: tuple[str, ...], edit: Any, expected: tuple[int, str, str, str]
) -> None:
    """The ground truth of synthetic records written as predictions, without `index`, people shuffled: scored PCK 0.9
    by position although each person's image said where it belonged. Matching by image where each image holds one
    person would score such a file, but the same file format would then be read two ways depending on the ground
    truth: a file without index is in the ground truth's order, and what it says contradicting that is refused."""
    annotations = _records(tmp_path, "lsp", n=6, images=images)
    people = _named_people(annotations, *keys)
    path = _clpose_json(tmp_path / "p.json", people)
    result, table = _eval_file("pck", path, annotations)
    assert result.exit_code == 0 and table["Mean"] == 100.0, result.output
    j, key, said, truth = expected
    result, table = _eval_file("pck", _clpose_json(path, edit(people)), annotations)
    line = one_line_error(
        result,
        f"{path}: people[{j}] has {key} {said}, but person {j} of {annotations} is in {key} {truth}: ",
        "the file has no index, so its people are scored in the ground truth's order; give each person its index",
    )
    assert line.startswith(f"error: {path}: people[{j}]"), line
    assert table is None


ACCEPTED_CASES: list[tuple[str, int, tuple[str, ...], Any]] = [
    ("in order, one per image", 6, ("image", "image_id"), lambda p: p),
    ("in order, two per image, image only", 3, ("image",), lambda p: p),
    ("in order, ids as text", 6, ("image_id",), _text_ids),
    ("some images null", 6, ("image", "image_id"), lambda p: _set(_set(p, 0, image=None), 4, image_id=None)),
    ("no image named", 6, (), lambda p: p),
]


@pytest.mark.parametrize(("name", "images", "keys", "edit"), ACCEPTED_CASES, ids=[c[0] for c in ACCEPTED_CASES])
def test_a_file_without_index_whose_images_agree_scores_as_the_same_file_with_indices(
    tmp_path: Path, name: str, images: int, keys: tuple[str, ...], edit: Any
) -> None:
    annotations = _records(tmp_path, "lsp", n=6, images=images)
    people = edit(_named_people(annotations, *keys))
    result, table = _eval_file("pck", _clpose_json(tmp_path / "p.json", people), annotations)
    assert result.exit_code == 0, result.output
    indexed = [{**p, "index": i} for i, p in enumerate(people)]
    assert table == _eval_file("pck", _clpose_json(tmp_path / "i.json", indexed), annotations)[1]
    assert table["Mean"] == 100.0 and table["people"] == 6


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"image": 3}, "people[1] image is 3, expected a file name"),
        ({"image_id": [11]}, "people[1] image_id is [11], expected an integer or text"),
        ({"image_id": True}, "people[1] image_id is true, expected an integer or text"),
        ({"image_id": 11.5}, "people[1] image_id is 11.5, expected an integer or text"),
    ],
)
def test_a_file_without_index_names_images_as_a_file_with_indices_does(
    tmp_path: Path, change: dict, fragment: str
) -> None:
    annotations = _records(tmp_path, "lsp", n=3)
    people = _set(_named_people(annotations, "image", "image_id"), 1, **change)
    path = _clpose_json(tmp_path / "p.json", people)
    line = one_line_error(_eval_file("pck", path, annotations)[0], fragment)
    assert line.startswith(f"error: {path}: people[1]"), line


def test_a_file_naming_images_against_ground_truth_without_names_is_positional(tmp_path: Path) -> None:
    """LSP's joints.mat names no images: a clpose JSON's names cannot be checked there and it is read in order, as
    an array is."""
    joints = np.ones((3, 14, 3))
    joints[:2] = np.random.default_rng(0).uniform(10, 100, (2, 14, 3))
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    people = [{"keypoints": k.tolist(), "image": f"im{i}.jpg"} for i, k in enumerate(joints[:2].transpose(2, 1, 0))]
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "clpose-predictions", "version": 1, "coordinates": "1-based",
                                "people": people}))  # fmt: skip
    result, table = _eval_file("pck", path, tmp_path / "joints.mat")
    assert result.exit_code == 0, result.output
    assert table["Mean"] == 100.0 and table["people"] == 3


# -- the LSP test-set rule is for LSP's own joints.mat of 2000 people ---------------------------------------------


def _joints(tmp_path: Path, n: int) -> tuple[Path, np.ndarray]:
    """A joints.mat of n LSP people (3 x 14 x n, 1-based, every joint labelled); their keypoints (n, 14, 2)."""
    joints = np.ones((3, 14, n))
    joints[:2] = np.random.default_rng(n).uniform(10, 200, (2, 14, n)).round(2)
    path = tmp_path / "joints.mat"
    scipy.io.savemat(str(path), {"joints": joints})
    return path, joints[:2].transpose(2, 1, 0)


@pytest.mark.parametrize(("people", "predicted"), [(1001, 1000), (1200, 1000), (1999, 1000), (2001, 1000),
                                                   (3000, 1000), (3000, 2000), (1000, 999)])  # fmt: skip
def test_predictions_of_another_count_than_the_ground_truths_are_refused(
    tmp_path: Path, people: int, predicted: int
) -> None:
    """1000 predictions were scored against the last 1000 people of a joints.mat of any size over 1000: perfect
    predictions of its first 1000 scored PCK 3.5, exit 0, the table saying only "people: 1000"."""
    joints, kpts = _joints(tmp_path, people)
    np.save(tmp_path / "p.npy", kpts[:predicted] - 1.0)
    result, table = _eval_file("pck", tmp_path / "p.npy", joints)
    line = one_line_error(result, f"{tmp_path / 'p.npy'} holds {predicted} people but {joints} has {people}; ")
    assert line.endswith(f"expected {people}"), line
    assert table is None


def test_indexed_predictions_of_part_of_a_joints_mat_are_refused(tmp_path: Path) -> None:
    joints, kpts = _joints(tmp_path, 1200)
    people = [{"index": i, "keypoints": k.tolist()} for i, k in enumerate(kpts[:1000] - 1.0)]
    path = _clpose_json(tmp_path / "p.json", people)
    one_line_error(_eval_file("pck", path, joints)[0], f"{path}: no prediction for index 1000 (200 of the 1200 people")


@pytest.mark.parametrize("predicted", [999, 1001, 1999])
def test_lsps_joints_mat_takes_all_its_people_or_its_test_set(tmp_path: Path, predicted: int) -> None:
    joints, kpts = _joints(tmp_path, 2000)
    np.save(tmp_path / "p.npy", kpts[:predicted] - 1.0)
    one_line_error(
        _eval_file("pck", tmp_path / "p.npy", joints)[0],
        f"holds {predicted} people but {joints} has 2000; expected 2000 or 1000 (the LSP test set, its last 1000)",
    )


def test_the_lsp_test_set_is_scored_and_said(tmp_path: Path) -> None:
    """LSP's own joints.mat (2000 people): 1000 predictions are its test set, people 1001-2000, and the table and the
    JSON say so; as an array or as a clpose JSON (its indices are then the test set's, 0 to 999)."""
    joints, kpts = _joints(tmp_path, 2000)
    said = f"the LSP test set, people 1001-2000 of {joints}"
    np.save(tmp_path / "p.npy", kpts[1000:] - 1.0)
    people = [{"index": i, "keypoints": k.tolist()} for i, k in enumerate(kpts[1000:] - 1.0)]
    shuffled = _order(people, list(np.random.default_rng(0).permutation(1000)))
    for path in (tmp_path / "p.npy", _clpose_json(tmp_path / "p.json", shuffled)):
        result, table = _eval_file("pck", path, joints)
        assert result.exit_code == 0, result.output
        assert table["Mean"] == 100.0 and table["people"] == 1000 and table["people_scored"] == said
        assert f"people scored: {said}" in " ".join(result.output.split())
    np.save(tmp_path / "p.npy", kpts[:1000] - 1.0)  # the first 1000 are not the test set: 502 of 14000 by chance
    assert _eval_file("pck", tmp_path / "p.npy", joints)[1]["Mean"] == 100.0 * 502 / 14000


@pytest.mark.parametrize("people", [2000, 1200, 1000])
def test_predictions_of_every_person_are_scored_against_every_person(tmp_path: Path, people: int) -> None:
    joints, kpts = _joints(tmp_path, people)
    np.save(tmp_path / "p.npy", kpts - 1.0)
    result, table = _eval_file("pck", tmp_path / "p.npy", joints)
    assert result.exit_code == 0, result.output
    assert table["Mean"] == 100.0 and table["people"] == people and "people_scored" not in table
    assert "people scored" not in result.output


def test_records_of_2000_lsp_people_take_every_person(tmp_path: Path) -> None:
    """The test-set rule is joints.mat's: records of 2000 people (a records file says who its people are) take
    2000 predictions."""
    annotations = _records(tmp_path, "lsp", n=2000)
    np.save(tmp_path / "p.npy", load_records(annotations).keypoints[:1000, :, :2])
    one_line_error(
        _eval_file("pck", tmp_path / "p.npy", annotations)[0], "holds 1000 people but", "has 2000; expected 2000"
    )


# -- COCO: a labelled person's area is at least one pixel ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ids", "area"),
    [
        ("a labelled person of area 1 px^2", (1,), 1.0),
        ("a crowd of area 0", (4,), 0.0),
        ("a person without keypoints of area 0", (5,), 0.0),
    ],
)
def test_areas_that_can_be_a_person_are_scored(tmp_path: Path, name: str, ids: tuple[int, ...], area: float) -> None:
    gt, annotations = _coco_truth(tmp_path)
    results = _results(tmp_path, gt)
    for ann in gt["annotations"]:
        if ann["id"] in ids:
            ann["area"] = area
    annotations.write_text(json.dumps(gt))
    result, table = _eval_file("oks", results, annotations)
    assert result.exit_code == 0, result.output
    assert table["AP"] == 1.0 and table["AP50"] == 1.0 and table["APM"] == 1.0 and table["AR"] == 1.0


def test_every_labelled_person_of_area_0_is_refused_from_a_file_and_a_checkpoint(tmp_path: Path) -> None:
    """All labelled people of area 0 scored AP 0.0 from perfect predictions, exit 0; the checkpoint's evaluation
    reads the same annotation file through the same check."""
    gt, annotations = _coco_truth(tmp_path)
    results = _results(tmp_path, gt)
    dataset = _coco_dataset(tmp_path, gt, annotations)
    for ann in gt["annotations"]:
        ann["area"] = 0.0
    annotations.write_text(json.dumps(gt))
    fragment = f"{annotations}: annotation id 1 has area 0.0: {TOO_SMALL}17, not a crowd) {AT_LEAST}"
    one_line_error(_eval_file("oks", results, annotations)[0], fragment)
    from clpose.errors import ClposeError

    with pytest.raises(ClposeError) as caught:
        METRICS["oks"].score_predictions(
            dataset, _predictions(dataset, spread=0.0), ScoreOptions(eval_cfg=EvalConfig())
        )
    assert fragment in str(caught.value)
