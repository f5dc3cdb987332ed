"""Evaluation protocols: hand-computed PCK/PCKh, the real gt_valid.mat and COCO sample, OKS-NMS, file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.errors import ClposeError
from clpose.evaluation.coco import evaluate_oks, load_ground_truth, oks_nms, rescore
from clpose.evaluation.pck import head_size, pck_correct, pck_table, torso_size
from clpose.evaluation.scoring import score_oks_file, score_pck_file, score_pckh_file
from clpose.skeletons import COCO, LSP, MPII

runner = CliRunner()


# ------------------------------------------------------------------------------------------ hand-computed cases


def test_pck_threshold_is_inclusive_and_missing_joints_are_excluded() -> None:
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[2.0, 0.0], [0.0, 2.0001], [9.0, 9.0]]])
    labelled = np.array([[True, True, False]])
    correct, counted = pck_correct(pred, gt, labelled, np.array([10.0]), alpha=0.2)  # threshold 2 px
    assert correct.tolist() == [[True, False, False]] and counted.tolist() == [[True, True, False]]
    correct, counted = pck_correct(pred, gt, labelled, np.array([0.0]), alpha=0.2)  # no normaliser: skipped
    assert not counted.any()


def test_pooled_mean_weights_joints_by_how_often_they_are_labelled() -> None:
    # 4 people; r-ankle (0) labelled 4 times, all correct; l-ankle (5) labelled once, wrong
    correct = np.zeros((4, 16), bool)
    counted = np.zeros((4, 16), bool)
    correct[:, 0] = counted[:, 0] = True
    counted[0, 5] = True
    table = pck_table(correct, counted, MPII)
    assert table["Ankle"] == pytest.approx(50.0)  # the column is the mean of the two joints' rates (100, 0)
    assert table["Mean"] == pytest.approx(80.0)  # pooled: 4 correct / 5 labelled
    assert table["Head"] is None  # never labelled: undefined, and the table says why
    assert table["undefined"]["Head"] == "no head-top is labelled among the people scored"
    assert set(table["undefined"]) == {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee"}


def test_lsp_columns_and_torso() -> None:
    gt = np.zeros((1, 14, 2))
    gt[0, 9] = [0, 0]  # l-shoulder
    gt[0, 2] = [30, 40]  # r-hip: torso 50
    labelled = np.ones((1, 14), bool)
    assert torso_size(gt, labelled, LSP.torso_joints).tolist() == [50.0]
    pred = gt.copy()
    pred[0, 13] += [10.0, 0.0]  # head-top 10 px off = exactly 0.2 x 50: correct
    pred[0, 12] += [10.1, 0.0]  # neck just beyond
    table = pck_table(*pck_correct(pred, gt, labelled, np.array([50.0]), 0.2), LSP)
    assert table["Head"] == pytest.approx(50.0) and table["Mean"] == pytest.approx(100 * 13 / 14)


def test_head_size_is_0_6_of_the_diagonal() -> None:
    assert head_size(np.array([[0.0, 0.0, 30.0, 40.0]])).tolist() == pytest.approx([30.0])


# ------------------------------------------------------------------------------------------ MPII, real file


def _mpii_preds(gt_file: Path) -> np.ndarray:
    return scipy.io.loadmat(str(gt_file))["pos_gt_src"].transpose(2, 0, 1).astype(np.float64)  # N x 16 x 2


def test_gt_valid_with_its_own_ground_truth_scores_100(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "mpii" / "gt_valid.mat"
    pred = tmp_path / "pred.mat"
    scipy.io.savemat(str(pred), {"preds": _mpii_preds(gt_file)})
    table = score_pckh_file(pred, gt_file)
    assert all(table[c] == 100.0 for c in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"))
    assert table["Mean@0.1"] == 100.0 and table["people"] == 2958


def test_gt_valid_with_known_perturbations(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "mpii" / "gt_valid.mat"
    mat = scipy.io.loadmat(str(gt_file))
    boxes = mat["headboxes_src"].transpose(2, 0, 1).reshape(-1, 4)
    size = head_size(boxes)
    labelled = mat["jnt_missing"].T == 0
    pred = _mpii_preds(gt_file)
    shifted = pred + np.stack([0.3 * size, np.zeros_like(size)], axis=1)[:, None, :]  # every joint 0.3 head sizes
    shifted[:, [10, 15]] += np.stack([0.3 * size, np.zeros_like(size)], axis=1)[:, None, :]  # wrists: 0.6
    path = tmp_path / "shifted.mat"
    scipy.io.savemat(str(path), {"pos_pred_src": shifted.transpose(1, 2, 0)})
    table = score_pckh_file(path, gt_file)
    assert table["Wrist"] == 0.0 and table["Elbow"] == 100.0 and table["Head"] == 100.0
    mean_joints = list(MPII.mean_joints)
    counts = labelled[:, mean_joints].sum(axis=0)
    wrists = labelled[:, [10, 15]].sum()
    assert table["Mean"] == pytest.approx(100 * (counts.sum() - wrists) / counts.sum())
    assert table["Mean@0.1"] == 0.0  # 0.3 > 0.1: exactly 0.1 is the threshold, not 0.11
    official = score_pckh_file(path, gt_file, head_official=True)
    assert official["Head"] == 100.0 and official["Mean"] == table["Mean"]


def test_mpii_layouts_conventions_and_errors(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "mpii" / "gt_valid.mat"
    pred = _mpii_preds(gt_file)
    np.save(tmp_path / "zero_based.npy", pred - 1.0)  # .npy is 0-based: must score the same as the .mat
    assert score_pckh_file(tmp_path / "zero_based.npy", gt_file)["Mean"] == 100.0
    scipy.io.savemat(str(tmp_path / "short.mat"), {"preds": pred[:100]})
    with pytest.raises(ClposeError, match=r"holds 100 people but .*gt_valid\.mat has 2958"):
        score_pckh_file(tmp_path / "short.mat", gt_file)
    scipy.io.savemat(str(tmp_path / "wrong.mat"), {"preds": pred[:, :14]})
    with pytest.raises(ClposeError, match=r"preds has shape 2958x14x2, expected Mx16x2"):
        score_pckh_file(tmp_path / "wrong.mat", gt_file)
    scipy.io.savemat(str(tmp_path / "other.mat"), {"x": np.zeros(3)})
    with pytest.raises(ClposeError, match="expected preds"):
        score_pckh_file(tmp_path / "other.mat", gt_file)


# ------------------------------------------------------------------------------------------ LSP, real file


def test_lsp_joints_mat_with_the_test_set_as_predictions(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "lsp" / "joints.mat"
    joints = scipy.io.loadmat(str(gt_file))["joints"]  # 3 x 14 x 2000, 1-based
    test = joints[:, :, 1000:].copy()
    scipy.io.savemat(str(tmp_path / "pred.mat"), {"pred": test[:2]})  # 2 x 14 x 1000, the joints.mat layout
    table = score_pck_file(tmp_path / "pred.mat", gt_file)
    assert table["Mean"] == 100.0 and table["people"] == 1000 and table["joints_counted"] == 14000
    # move every right wrist by 0.25 torso: Wrist = 50 (the mean of left 100 and right 0)
    gt = test[:2].transpose(2, 1, 0)
    torso = np.linalg.norm(gt[:, 9] - gt[:, 2], axis=-1)
    moved = test.copy()
    moved[0, 6, :] += 0.25 * torso
    scipy.io.savemat(str(tmp_path / "moved.mat"), {"pred": moved})  # 3 x 14 x M is accepted too
    table = score_pck_file(tmp_path / "moved.mat", gt_file)
    assert table["Wrist"] == pytest.approx(50.0) and table["Mean"] == pytest.approx(100 * 13 / 14)
    np.save(tmp_path / "wrong.npy", np.zeros((999, 14, 2)))
    with pytest.raises(ClposeError, match=r"holds 999 people .* expected 2000 or 1000"):
        score_pck_file(tmp_path / "wrong.npy", gt_file)


# ------------------------------------------------------------------------------------------ COCO, real file


def _gt_as_results(ann_file: Path, shift: float = 0.0) -> list[dict]:
    data = json.loads(ann_file.read_text())
    results = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        kp = np.array(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        kp[:, 0] += shift
        kp[:, 2] = 1.0
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 1.0})
    return results


def test_coco_sample_gt_as_predictions_scores_ap_1(realdata: Path, tmp_path: Path) -> None:
    ann = realdata / "coco" / "test_coco.json"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_gt_as_results(ann)))
    table = score_oks_file(path, ann)
    assert table["AP"] == pytest.approx(1.0) and table["AR"] == pytest.approx(1.0)


def test_coco_sample_perturbed_equals_pycocotools_directly(realdata: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    ann = realdata / "coco" / "test_coco.json"
    results = _gt_as_results(ann, shift=6.0)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    ours = score_oks_file(path, ann)
    gt = CocoApi(str(ann))
    ev = COCOeval(gt, gt.loadRes(results), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert [ours[k] for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")] == list(ev.stats[:6])
    assert 0 < ours["AP"] < 1


def test_oks_errors(realdata: Path, tmp_path: Path) -> None:
    ann = realdata / "coco" / "test_coco.json"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 785, "category_id": 1, "keypoints": [0] * 50, "score": 1}]))
    with pytest.raises(ClposeError, match="50 keypoint values, expected 17 x 3 = 51"):
        score_oks_file(bad, ann)
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [0] * 51, "score": 1}]))
    with pytest.raises(ClposeError, match="not in the annotations"):
        score_oks_file(bad, ann)
    gt = load_ground_truth(ann)
    with pytest.raises(ClposeError, match="no predictions"):
        evaluate_oks(gt, [])


def test_oks_nms_and_rescoring_by_hand() -> None:
    a = np.zeros((17, 2))
    near = a + 0.5  # OKS with a is ~1: suppressed
    far = a + 500.0  # OKS ~0: kept
    keypoints = np.stack([a, near, far])
    keep = oks_nms(keypoints, np.array([0.9, 0.95, 0.5]), np.array([1e4, 1e4, 1e4]), np.array(COCO.sigmas), 0.9)
    assert keep == [1, 2]  # highest score first; `a` is within 0.9 OKS of `near`
    scores = np.array([[0.1, 0.5, 0.3], [0.1, 0.2, 0.15]])
    np.testing.assert_allclose(rescore(np.array([0.8, 0.9]), scores), [0.8 * 0.4, 0.0])


# ------------------------------------------------------------------------------------------ the command


def test_eval_cli_with_json(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "mpii" / "gt_valid.mat"
    pred = tmp_path / "pred.mat"
    scipy.io.savemat(str(pred), {"preds": _mpii_preds(gt_file)})
    out = tmp_path / "result.json"
    result = runner.invoke(
        app, ["eval", "--metric", "pckh", "--predictions", str(pred), "--annotations", str(gt_file), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"} <= set(data)
    assert data["metric"] == "pckh" and data["alpha"] == 0.5 and data["people"] == 2958
    assert len(data["settings"]["annotations_sha256"]) == 64 and "torch" in data["versions"]
    result = runner.invoke(app, ["eval", "--metric", "pckh", "--predictions", str(pred)])
    assert result.exit_code == 2 and "needs --metric and --annotations" in result.stderr


def test_pck_on_mpii_records_uses_their_head_boxes_and_every_metric_has_a_complete_table() -> None:
    """`clpose eval RUN --metric pck` on an MPII run: PCK with the skeleton's normaliser (the head box) works."""
    from types import SimpleNamespace

    from clpose.evaluation.metrics import METRICS, Predictions, ScoreOptions, dataset_metric
    from clpose.skeletons import get_skeleton

    mpii = get_skeleton("mpii")
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.uniform(0, 100, (3, 16, 2)), np.ones((3, 16, 1))], axis=2)
    head = [{"head_box": [0.0, 0.0, 10.0, 10.0]} for _ in range(3)]  # head size 0.6 x diagonal = 8.485 px
    records = SimpleNamespace(keypoints=gt, extras=head, path="mpii/valid.json")
    dataset = SimpleNamespace(records=records, skeleton=mpii)
    pred = gt[None, ..., :2].copy()
    pred[0, 0, :, 0] += 1.0  # person 0: 1 px off, inside 0.2 x 8.485 = 1.70 px
    pred[0, 1, :, 0] += 2.0  # person 1: 2 px off, outside
    preds = Predictions(np.arange(3), pred, np.ones((1, 3, 16)))
    table, _ = METRICS["pck"].score_predictions(dataset, preds, ScoreOptions())
    assert table["Mean"] == pytest.approx(100 * 2 / 3) and table["alpha"] == 0.2 and table["metric"] == "pck"
    table, _ = METRICS["pckh"].score_predictions(dataset, preds, ScoreOptions())  # 0.5 x 8.485 = 4.2 px: all in
    assert table["Mean"] == 100.0 and table["alpha"] == 0.5 and table["people"] == 3
    assert dataset_metric("mpii").name == "pckh" and dataset_metric("coco").headline == "AP"
    assert dataset_metric("lsp").name == "pck" and dataset_metric("mpii", "pck").name == "pck"
    del records.extras[1]["head_box"]
    with pytest.raises(ClposeError, match=r"^mpii/valid\.json has people without extras\.head_box"):
        METRICS["pck"].score_predictions(dataset, preds, ScoreOptions())


# ------------------------------------------------------------------------------------------ HDF5 predictions


H5PY_REASON = "h5py is not installed (pip install 'clpose[h5]')"


def _write_h5(path: Path, **datasets: np.ndarray) -> Path:
    h5py = pytest.importorskip("h5py", reason=H5PY_REASON)
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


def test_h5_preds_in_either_layout_read_as_the_same_1_based_array(tmp_path: Path) -> None:
    from clpose.evaluation.prediction_files import read_predictions

    pytest.importorskip("h5py", reason=H5PY_REASON)
    kpts = np.random.default_rng(0).uniform(1, 500, (5, 16, 2))
    scores = np.random.default_rng(1).uniform(0, 1, (5, 16, 1))
    with_scores = np.concatenate([kpts, scores], axis=2)
    files = {
        "nk2.h5": kpts,  # as written row-major (Lua Torch, numpy)
        "2kn.h5": kpts.transpose(2, 1, 0),  # as written column-major (MATLAB / Octave)
        "nk3.h5": with_scores,
        "3kn.hdf5": with_scores.transpose(2, 1, 0),
        "float32.h5": kpts.astype(np.float32),
    }
    for name, value in files.items():
        pred, one_based = read_predictions(_write_h5(tmp_path / name, preds=value), 16)
        assert pred.shape == (5, 16, 2) and pred.dtype == np.float64 and one_based is True, name
        np.testing.assert_allclose(pred, kpts, rtol=1e-6 if name == "float32.h5" else 0, err_msg=name)
    one, _ = read_predictions(_write_h5(tmp_path / "one.h5", preds=kpts[:1]), 16)  # 1 person: not ambiguous
    np.testing.assert_array_equal(one, kpts[:1])


def test_h5_and_mat_preds_give_the_same_pckh_table(realdata: Path, tmp_path: Path) -> None:
    gt_file = realdata / "mpii" / "gt_valid.mat"
    pytest.importorskip("h5py", reason=H5PY_REASON)
    pred = _mpii_preds(gt_file) + np.random.default_rng(0).normal(0, 6, (2958, 16, 2))  # 1-based, some joints off
    scipy.io.savemat(str(tmp_path / "pred.mat"), {"preds": pred})
    from_mat = score_pckh_file(tmp_path / "pred.mat", gt_file)
    assert 0 < from_mat["Mean"] < 100
    for name, value in (("nk2.h5", pred), ("2kn.h5", pred.transpose(2, 1, 0))):
        assert score_pckh_file(_write_h5(tmp_path / name, preds=value), gt_file) == from_mat, name
    out = tmp_path / "result.json"
    args = ["eval", "--metric", "pckh", "--predictions", str(tmp_path / "2kn.h5"), "--annotations", str(gt_file)]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {k: data[k] for k in from_mat} == pytest.approx(from_mat) and data["people"] == 2958


def test_h5_errors_name_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    import re

    from clpose.evaluation.prediction_files import read_predictions

    pytest.importorskip("h5py", reason=H5PY_REASON)
    expected = "expected Nx16x2 or 2x16xN (Nx16x3 / 3x16xN with scores)"
    cases = {
        "k14.h5": ({"preds": np.zeros((7, 14, 2))}, f"preds has shape 7x14x2, {expected}"),
        "xy4.h5": ({"preds": np.zeros((7, 16, 4))}, f"preds has shape 7x16x4, {expected}"),
        "flat.h5": ({"preds": np.zeros(32)}, f"preds has shape 32, {expected}"),
        "2.h5": ({"preds": np.zeros((2, 16, 2))}, f"preds has shape 2x16x2, ambiguous with 2 or 3 people: {expected}"),
        "nopreds.h5": (
            {"pred": np.zeros((7, 16, 2)), "scores": np.zeros((7, 16))},
            "expected a dataset preds (Nx16x2 or 2x16xN); found pred 7x16x2, scores 7x16",
        ),
        "empty.h5": ({}, "expected a dataset preds (Nx16x2 or 2x16xN); found no datasets"),
    }
    for name, (datasets, message) in cases.items():
        path = _write_h5(tmp_path / name, **datasets)
        with pytest.raises(ClposeError, match=f"^{re.escape(f'{path}: {message}')}$"):
            read_predictions(path, 16)
    whole = _write_h5(tmp_path / "whole.h5", preds=np.zeros((2958, 16, 2))).read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(whole[: len(whole) // 2])
    unreadable = re.escape(f"{truncated} could not be read as an HDF5 file (")
    with pytest.raises(ClposeError, match=f"^{unreadable}.*truncated file"):
        read_predictions(truncated, 16)
    not_h5 = tmp_path / "notes.h5"
    not_h5.write_text("not an HDF5 file\n")
    with pytest.raises(ClposeError, match=f"^{re.escape(f'{not_h5} could not be read as an HDF5 file (')}"):
        read_predictions(not_h5, 16)


def test_h5_without_h5py_says_which_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import sys

    from clpose.evaluation.prediction_files import read_predictions

    path = tmp_path / "pred.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` raises ImportError
    message = f"{path}: reading HDF5 predictions needs h5py: pip install 'clpose[h5]'"
    with pytest.raises(ClposeError, match=f"^{re.escape(message)}$"):
        read_predictions(path, 16)
