"""Unlabelled splits and the benchmarks' submission files: COCO test-dev results, the MPII test struct, LSP joints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from test_prepare import _release_fixture, _write_image, release_folder
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.data.records import load_records
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Predictions
from clpose.evaluation.submission import choose_format, write_mpii_submission, write_predictions
from clpose.recipes import load_recipe
from clpose.skeletons import get_skeleton
from clpose.training.loop import fit

runner = CliRunner()


def _test_dev_files(realdata: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An image-info file (the shared COCO sample without its annotations) and its detections."""
    info = json.loads((realdata / "coco" / "test_coco.json").read_text())
    info.pop("annotations")
    info_path = tmp_path / "image_info_test-dev2017.json"
    info_path.write_text(json.dumps(info))
    return info_path, realdata / "coco" / "test_coco_det_AP_H_56.json"


def test_coco_test_dev_split_and_a_results_file_the_server_format_accepts(realdata: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    info, dets = _test_dev_files(realdata, tmp_path)
    data = tmp_path / "coco"
    result = runner.invoke(
        app,
        ["prepare", "coco", "--root", str(realdata / "coco"), "--out", str(data), "--annotations",
         "val=test_coco.json", "--annotations", f"test-dev={info}", "--images", ".", "--detections",
         f"test-dev={dets}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test-dev" in result.output
    test_dev = load_records(data / "test-dev.json")
    detections = [d for d in json.loads(dets.read_text()) if d["category_id"] == 1]
    assert len(test_dev) == len(detections) and not (test_dev.keypoints[..., 2] > 0).any()
    np.testing.assert_allclose(np.sort(test_dev.box_scores), np.sort([d["score"] for d in detections]))
    recipe = tmp_path / "coco.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet18}}\ndata: {{dataset: coco, root: {data}, input_size: 64x48, "
        "train_split: val, val_split: val, num_workers: 0}\ntrain: {epochs: 1, batch_size: 4}\neval: {batch_size: 32}\n"
    )
    run = fit(load_recipe(recipe), out=tmp_path / "run", device="cpu", show_progress=False).run_dir
    out = tmp_path / "person_keypoints_test-dev2017_clpose_results.json"
    args = ["eval", str(run), "--split", "test-dev", "--save-predictions", str(out), "--json", str(tmp_path / "r.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "the test-dev split has no labels: nothing was scored" in result.output
    results = json.loads(out.read_text())
    assert 0 < len(results) <= len(detections)  # OKS-NMS keeps at most one result per box
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in results)
    for r in results:  # the SimpleBaseline/HRNet rescoring: box score x mean keypoint score above 0.2
        k = np.array(r["keypoints"]).reshape(17, 3)[:, 2]  # rounded to 3 decimals in the file
        mean = k[k > 0.2].mean() if (k > 0.2).any() else 0.0
        boxes = [d["score"] for d in detections if d["image_id"] == r["image_id"]]
        assert min(abs(b * mean - r["score"]) for b in boxes) < 1e-3, r
    coco = COCO(str(info))
    loaded = coco.loadRes(str(out))  # the official reader
    assert len(loaded.getAnnIds()) == len(results)
    assert {r["image_id"] for r in results} <= set(coco.getImgIds())
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert settings["labelled"] is False and settings["predictions_format"] == "coco"
    # without a file to write there is nothing to do: a one-line error that says what to pass
    result = runner.invoke(app, ["eval", str(run), "--split", "test-dev"])
    assert result.exit_code == 2 and "has no labels, so nothing can be scored" in result.stderr
    assert "person_keypoints_test-dev2017_NAME_results.json" in result.stderr
    txt = tmp_path / "p.txt"
    result = runner.invoke(app, ["eval", str(run), "--split", "test-dev", "--save-predictions", str(txt)])
    assert result.exit_code == 2 and "unknown extension '.txt'" in result.stderr and not txt.exists()


def test_test_dev_detections_of_another_split_are_refused(realdata: Path, tmp_path: Path) -> None:
    info, dets = _test_dev_files(realdata, tmp_path)
    wrong = json.loads(dets.read_text())
    wrong[3]["image_id"] = 123456789
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps(wrong))
    with pytest.raises(ClposeError, match=rf"^{bad}: detection 3 is of image_id 123456789, which the image list"):
        run_prepare("coco", realdata / "coco", tmp_path / "out", [f"test-dev={info}"], ["."], [f"test-dev={bad}"])
    assert not (tmp_path / "out" / "test-dev.json").exists()
    with pytest.raises(ClposeError, match=r"detections are for the val or test-dev split"):
        run_prepare("coco", realdata / "coco", tmp_path / "out", [f"test-dev={info}"], ["."], [f"train={bad}"])


def test_mpii_test_submission_reads_back_as_the_toolkit_reads_it(tmp_path: Path) -> None:
    root = release_folder(tmp_path)
    test = load_records(root / "test.json")
    assert test.extras[0] == {"annolist_index": 2, "rect_index": 1, "objpos": [30.0, 30.0], "rect_scale": 0.6}
    keypoints = np.arange(32, dtype=np.float64).reshape(1, 1, 16, 2)  # 0-based image pixels
    preds = Predictions(np.array([0]), keypoints, np.ones((1, 1, 16)))
    dataset = type("D", (), {"records": test, "skeleton": get_skeleton("mpii")})()
    out = tmp_path / "pred_keypoints_mpii.mat"
    assert choose_format(out, "auto", "mpii", "test", False) == "mpii-submission"
    write_predictions(out, "mpii-submission", dataset, preds)
    # as the MPII toolkit reads it: pred(imgidx).annorect(ridx).annopoints.point(pidx).{x, y, id}
    pred = scipy.io.loadmat(str(out), struct_as_record=False, squeeze_me=True)["pred"]
    pred = np.atleast_1d(pred)
    assert len(pred) == 1 and pred[0].image.name == "c.jpg"  # only the test image (img_train == 0)
    rects = np.atleast_1d(pred[0].annorect)
    assert len(rects) == 2
    assert np.size(rects[0].annopoints) == 0 and rects[0].objpos.x == 20.0  # not a single person: no points
    points = np.atleast_1d(rects[1].annopoints.point)
    assert [int(p.id) for p in points] == list(range(16))
    np.testing.assert_allclose([[p.x, p.y] for p in points], keypoints[0, 0] + 1.0)  # 1-based MATLAB pixels
    assert rects[1].objpos.x == 30.0 and rects[1].scale == 0.6


def test_mpii_submission_needs_release_rectangles_and_lsp_joints_layout(tmp_path: Path) -> None:
    records = load_records(_hrnet_style_test(tmp_path))
    dataset = type("D", (), {"records": records, "skeleton": get_skeleton("mpii")})()
    preds = Predictions(np.array([0]), np.zeros((1, 1, 16, 2)), np.ones((1, 1, 16)))
    release = tmp_path / "release.mat"
    _release_fixture(release)
    with pytest.raises(ClposeError, match=r"people\[0\] has no RELEASE rectangle"):
        write_mpii_submission(tmp_path / "pred_keypoints_mpii.mat", release, dataset, preds)
    assert not (tmp_path / "pred_keypoints_mpii.mat").exists()
    lsp = type("D", (), {"records": records, "skeleton": get_skeleton("lsp")})()
    kp = np.random.default_rng(0).uniform(0, 50, (1, 3, 14, 2))
    scores = np.full((1, 3, 14), 0.5)
    path = tmp_path / "lsp_test.mat"
    assert choose_format(path, "auto", "lsp", "test", True) == "lsp-joints"
    write_predictions(path, "lsp-joints", lsp, Predictions(np.arange(3), kp, scores))
    joints = scipy.io.loadmat(str(path))["joints"]
    assert joints.shape == (3, 14, 3)
    np.testing.assert_allclose(joints[:2].transpose(2, 1, 0), kp[0] + 1.0)
    np.testing.assert_allclose(joints[2], 0.5)


def _hrnet_style_test(tmp_path: Path) -> Path:
    root = tmp_path / "hrnet"
    (root / "annot").mkdir(parents=True)
    _write_image(root / "images" / "x.jpg")
    (root / "annot" / "test.json").write_text(json.dumps([{"image": "x.jpg", "center": [40, 30], "scale": 0.5}]))
    run_prepare("mpii", root, root, ["test=annot/test.json"], show=False)
    return root / "test.json"


def test_eval_on_the_mpii_test_split_writes_the_submission_and_refuses_another_skeleton(tmp_path: Path) -> None:
    from test_inference import make_checkpoint

    root = release_folder(tmp_path)
    recipe = tmp_path / "mpii.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet18}}\ndata: {{dataset: mpii, root: {root}, input_size: 64x64, num_workers: 0}}\n"
    )
    out = tmp_path / "pred_keypoints_mpii.mat"
    checkpoint = make_checkpoint(tmp_path / "mpii.pt", dataset="mpii")
    args = ["eval", str(checkpoint), "--recipe", str(recipe), "--split", "test", "--save-predictions", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "the test split has no labels: nothing was scored" in result.output and "mpii-submission" in result.output
    pred = np.atleast_1d(scipy.io.loadmat(str(out), struct_as_record=False, squeeze_me=True)["pred"])
    points = np.atleast_1d(np.atleast_1d(pred[0].annorect)[1].annopoints.point)
    assert len(points) == 16 and all(np.isfinite([p.x, p.y]).all() for p in points)
    other = make_checkpoint(tmp_path / "coco.pt", dataset="coco")
    args = [
        "eval",
        str(other),
        "--recipe",
        str(recipe),
        "--split",
        "test",
        "--save-predictions",
        str(tmp_path / "x.mat"),
    ]
    result = runner.invoke(app, args)
    assert (
        result.exit_code == 2
        and "holds mpii people but" in result.stderr
        and "predicts coco keypoints" in result.stderr
    )
    assert not (tmp_path / "x.mat").exists()
