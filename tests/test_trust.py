"""Trust: no number, file or run that looks right when it is not. Non-finite values never reach a scorer as a match
and never reach a written prediction file; no output replaces an input; recipe values that mean nothing are refused.
Each case runs through the real CLI where a user would meet it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from helpers import one_line_error, write_checkpoint
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.errors import ClposeError
from clpose.evaluation import coco as coco_metric
from clpose.models import build_model
from clpose.outputs import check_outputs
from clpose.recipes import load_recipe, recipe_from_dict

runner = CliRunner()


# -- COCO: a non-finite prediction is a miss --------------------------------------------------------------------


def _person(i: int) -> list[float]:
    """17 labelled keypoints of person i (distinct, spread over a 60 x 80 box)."""
    rng = np.random.default_rng(i)
    xy = rng.uniform([10, 10], [70, 90], (17, 2))
    return np.concatenate([xy, np.full((17, 1), 2.0)], axis=1).reshape(-1).tolist()


def _coco_gt(tmp_path: Path, people: int = 2) -> Path:
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 100, "height": 100} for i in range(people)]
    anns = [
        {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": 1,
            "iscrowd": 0,
            "area": 4800.0,
            "bbox": [10, 10, 60, 80],
            "num_keypoints": 17,
            "keypoints": _person(i),
        }
        for i in range(people)
    ]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def _results(tmp_path: Path, keypoints: list[list[float]], scores: list[float], name: str = "res.json") -> Path:
    results = [
        {"image_id": i + 1, "category_id": 1, "keypoints": kp, "score": s}
        for i, (kp, s) in enumerate(zip(keypoints, scores, strict=True))
    ]
    path = tmp_path / name
    path.write_text(json.dumps(results))  # Python writes NaN tokens, as a careless writer would
    return path


def _eval_oks(tmp_path: Path, results: Path, gt: Path, *extra: str):
    out = tmp_path / "table.json"
    argv = ["eval", "--metric", "oks", "--predictions", str(results), "--annotations", str(gt), "--json", str(out)]
    result = runner.invoke(app, [*argv, *extra])
    return result, (json.loads(out.read_text()) if out.is_file() else None)


def test_a_results_file_of_nan_keypoints_scores_ap_0_not_100(tmp_path: Path) -> None:
    """pycocotools counts a NaN OKS as a match (`NaN < t` is False): all-NaN keypoints scored AP 100.0."""
    gt = _coco_gt(tmp_path)
    nan = [float("nan")] * 51
    result, table = _eval_oks(tmp_path, _results(tmp_path, [nan, nan], [0.9, 0.8]), gt)
    assert result.exit_code == 0, result.output
    assert table["AP"] == 0.0 and table["AR"] == 0.0 and table["nonfinite"] == 2
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "2 of 2 results have keypoints that are not finite" in warning[0], result.stderr


def test_a_nan_result_scores_exactly_as_a_far_away_one(tmp_path: Path) -> None:
    """A non-finite prediction is a miss: the table equals the one where that prediction is finite but far away."""
    gt = _coco_gt(tmp_path)
    right = _person(0)
    far = [v + 1000.0 if j % 3 != 2 else v for j, v in enumerate(_person(1))]
    one_nan = [float("nan") if j == 4 else v for j, v in enumerate(_person(1))]  # a single NaN coordinate
    _, with_nan = _eval_oks(tmp_path, _results(tmp_path, [right, one_nan], [0.9, 0.95], "a.json"), gt)
    _, with_far = _eval_oks(tmp_path, _results(tmp_path, [right, far], [0.9, 0.95], "b.json"), gt)
    columns = ("AP", "AP50", "AP75", "APM", "APL", "AR")
    assert [with_nan[c] for c in columns] == [with_far[c] for c in columns]
    assert with_nan["AR"] == 0.5 and with_nan["nonfinite"] == 1 and with_far["nonfinite"] == 0
    # the false positive ranked first costs precision at the first recall: 0.5 at every recall up to 0.5
    assert with_nan["AP"] == pytest.approx(0.5 * 51 / 101, abs=1e-12)


def test_a_non_finite_score_is_refused(tmp_path: Path) -> None:
    gt = _coco_gt(tmp_path)
    result, _ = _eval_oks(tmp_path, _results(tmp_path, [_person(0), _person(1)], [0.9, float("nan")]), gt)
    one_line_error(result, "res.json: result 1 has score nan", "a COCO result needs a finite score")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("nan", "got nan (entry 3)"), ("-0.1", "got -0.1 (entry 3)"), ("0", "got 0 (entry 3)"), ("inf", "got inf")],
)
def test_sigmas_must_be_finite_and_positive(tmp_path: Path, value: str, fragment: str) -> None:
    """NaN sigmas gave AR 100, negative ones AP 25, zero ones divide-by-zero warnings and AP 0."""
    gt = _coco_gt(tmp_path)
    sigmas = ["0.05"] * 17
    sigmas[2] = value
    results = _results(tmp_path, [_person(0), _person(1)], [0.9, 0.8])
    result, _ = _eval_oks(tmp_path, results, gt, "--sigmas", ",".join(sigmas))
    one_line_error(result, "--sigmas: every OKS sigma must be a finite number > 0", fragment)
    assert not (tmp_path / "table.json").exists()


def test_custom_sigmas_score_the_oks_formula(tmp_path: Path) -> None:
    """A custom skeleton's sigmas reach COCOeval: one person 2 px off in x at every joint, sigma s for every joint,
    area 4800: OKS = exp(-4 / (2 * 4800 * (2 s)^2)); it passes the thresholds below it and fails those above."""
    gt = _coco_gt(tmp_path, people=1)
    shifted = [v + 2.0 if j % 3 == 0 else v for j, v in enumerate(_person(0))]
    s = 0.01
    oks = math.exp(-4.0 / (2 * 4800.0 * (2 * s) ** 2))  # 0.3528
    passed = sum(t < oks for t in np.linspace(0.5, 0.95, 10))
    _, table = _eval_oks(tmp_path, _results(tmp_path, [shifted], [1.0]), gt, "--sigmas", ",".join([str(s)] * 17))
    assert oks < 0.5 and passed == 0 and table["AP"] == 0.0
    s = 0.02
    oks = math.exp(-4.0 / (2 * 4800.0 * (2 * s) ** 2))  # 0.7707: passes 0.50 ... 0.75 (6 of 10 thresholds)
    passed = sum(t < oks for t in np.linspace(0.5, 0.95, 10))
    _, table = _eval_oks(tmp_path, _results(tmp_path, [shifted], [1.0]), gt, "--sigmas", ",".join([str(s)] * 17))
    assert passed == 6 and table["AP"] == pytest.approx(passed / 10, abs=1e-12)


def test_rescoring_ignores_a_nan_keypoint_score() -> None:
    """A NaN keypoint score once made the instance score NaN (NaN x False is NaN)."""
    scores = np.array([[0.9, float("nan"), 0.5, 0.1], [float("nan")] * 4])
    np.testing.assert_allclose(coco_metric.rescore(np.array([0.5, 1.0]), scores), [0.5 * 0.7, 0.0])


# -- PCK files: a non-finite joint is a miss ---------------------------------------------------------------------


def test_pck_with_nan_predictions_counts_them_as_misses_and_says_so(tmp_path: Path) -> None:
    joints = np.zeros((3, 14, 2))
    joints[0] = np.arange(14)[:, None] * 10.0 + np.array([0.0, 5.0])  # x
    joints[1] = np.arange(14)[:, None] * 7.0 + 3.0  # y
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    pred = joints[:2].transpose(2, 1, 0) - 1.0  # 0-based: exact
    pred[1, :7] = np.nan  # person 2: half its joints NaN
    np.save(tmp_path / "p.npy", pred)
    out = tmp_path / "t.json"
    argv = ["eval", "--metric", "pck", "--predictions", str(tmp_path / "p.npy"), "--annotations"]
    result = runner.invoke(app, [*argv, str(tmp_path / "joints.mat"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["Mean"] == pytest.approx(100.0 * 21 / 28) and table["nonfinite"] == 7
    assert "7 of 28 scored joints are not finite (NaN or inf) and count as misses" in result.stderr


# -- models: NaN weights and NaN outputs never become predictions -------------------------------------------------


def _data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    run_prepare("synthetic", root, root, synthetic={"train": 4, "val": 4, "size": 64, "workers": 1}, show=False)
    return root


def _checkpoint(path: Path, root: Path | str = "unused", nan: bool = False) -> Path:
    data = {"dataset": "synthetic", "root": str(root), "input_size": "64x64"}
    recipe = recipe_from_dict({"model": {"name": "clnet_resnet18"}, "data": data}, name="t")
    torch.manual_seed(0)
    weights = build_model("clnet_resnet18", 16).state_dict()
    if nan:
        weights["predict.weight"][0, 0, 0, 0] = float("nan")
    return write_checkpoint(path, recipe, weights, "synthetic", 16)


@pytest.mark.parametrize("command", ["eval", "infer", "export"])
def test_a_checkpoint_with_nan_weights_is_refused_by_name(tmp_path: Path, command: str) -> None:
    """NaN head weights scored AP 33.7 on COCO val (NaN OKS matched) and wrote null keypoints to test-dev."""
    ckpt = _checkpoint(tmp_path / "nan.pt", nan=True)
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((48, 40, 3), 128, np.uint8))
    argv = {
        "eval": ["eval", str(ckpt)],
        "infer": ["infer", str(image), "--checkpoint", str(ckpt), "--json", str(tmp_path / "o.json")],
        "export": ["export", str(ckpt), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
    }[command]
    one_line_error(runner.invoke(app, argv), "nan.pt: its weights are not finite", "predict.weight holds 1 NaN")
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "m.pt").exists()


def test_a_network_output_that_is_not_finite_is_an_error_not_a_prediction(tmp_path: Path) -> None:
    """Every prediction (scores, submissions, infer's JSON, pictures) is decoded by PoseModel.decode: the one check."""
    from clpose.engine.posemodel import PoseModel
    from clpose.inference.predictor import Predictor

    pose = PoseModel.from_checkpoint(_checkpoint(tmp_path / "c.pt"), amp="off")
    maps = torch.zeros(3, 48, 16, 16)
    maps[1, 5, 2, 2] = float("inf")
    with pytest.raises(ClposeError, match=r"not finite \(NaN or inf\) for 1 of 3 crops \(precision fp32\)"):
        pose.decode(maps)
    with torch.no_grad():
        pose.model.predict.bias[0] = float("nan")  # a model that goes bad at run time
    image = np.full((48, 40, 3), 128, np.uint8)
    with pytest.raises(ClposeError, match="for 1 of 1 crops"):
        Predictor(pose).predict(image)


def test_a_submission_is_never_written_with_nan(tmp_path: Path) -> None:
    from clpose.evaluation.metrics import Predictions
    from clpose.evaluation.submission import write_predictions

    kpts = np.zeros((1, 2, 16, 2))
    kpts[0, 1, 3] = np.nan
    preds = Predictions(np.arange(2), kpts, np.ones((1, 2, 16)))
    for fmt, name in (("npy", "p.npy"), ("mpii-preds", "p.mat"), ("lsp-joints", "j.mat")):
        with pytest.raises(ClposeError, match=rf"{name} was not written: the predictions of 1 of 2 people"):
            write_predictions(tmp_path / name, fmt, None, preds)  # type: ignore[arg-type]
    preds = Predictions(np.arange(2), np.zeros((1, 2, 17, 2)), np.ones((1, 2, 17)))
    results = [{"image_id": 1, "category_id": 1, "keypoints": [float("nan")] * 51, "score": 0.5}]
    with pytest.raises(ClposeError, match="1 of 1 COCO results are not finite"):
        write_predictions(tmp_path / "r.json", "coco", None, preds, results)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# -- outputs never replace inputs ------------------------------------------------------------------------------


def test_eval_save_predictions_onto_the_validation_records_is_refused(tmp_path: Path) -> None:
    """`eval --save-predictions data/valid.json` replaced the validation records."""
    root = _data(tmp_path)
    ckpt = _checkpoint(tmp_path / "c.pt", root)
    before = (root / "valid.json").read_bytes()
    result = runner.invoke(app, ["eval", str(ckpt), "--save-predictions", str(root / "valid.json")])
    one_line_error(result, "--save-predictions", "valid.json names the same file as the valid records")
    assert (root / "valid.json").read_bytes() == before
    result = runner.invoke(app, ["eval", str(ckpt), "--save-predictions", str(ckpt.with_suffix(".npy")), "--json",
                                 str(ckpt.with_suffix(".npy"))])  # fmt: skip
    one_line_error(result, "--json", "c.npy names the same file as --save-predictions")
    result = runner.invoke(app, ["eval", str(ckpt), "--json", str(ckpt)])
    one_line_error(result, "--json", "c.pt names the same file as the checkpoint")
    assert not ckpt.with_suffix(".npy").exists()


def test_eval_json_onto_the_predictions_file_is_refused(tmp_path: Path) -> None:
    gt = _coco_gt(tmp_path)
    results = _results(tmp_path, [_person(0), _person(1)], [0.9, 0.8])
    before = results.read_bytes()
    argv = ["eval", "--metric", "oks", "--predictions", str(results), "--annotations", str(gt)]
    one_line_error(runner.invoke(app, [*argv, "--json", str(results)]), "res.json names the same file as --predictions")
    one_line_error(runner.invoke(app, [*argv, "--json", str(gt)]), "gt.json names the same file as --annotations")
    assert results.read_bytes() == before


def test_a_hard_link_or_another_spelling_of_an_input_is_still_the_input(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").hardlink_to(tmp_path / "a.json")
    with pytest.raises(ClposeError, match=r"--json .*b\.json names the same file as --predictions .*a\.json"):
        check_outputs({"--json": tmp_path / "b.json"}, {"--predictions": tmp_path / "a.json"})
    with pytest.raises(ClposeError, match="names the same file as --predictions"):
        check_outputs({"--json": tmp_path / "x" / ".." / "a.json"}, {"--predictions": tmp_path / "a.json"})
    check_outputs({"--json": tmp_path / "c.json", "--out": tmp_path / "d.json"}, {"--predictions": tmp_path / "a.json"})


def test_no_command_writes_a_run_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    (run / "best.pt").write_bytes(b"model")
    argv = ["bench", "--model", "clnet_resnet18", "--input-size", "64x64", "--runs", "1", "--warmup", "0"]
    one_line_error(runner.invoke(app, [*argv, "--json", str(run / "best.pt")]), "is a checkpoint of the training run")
    assert (run / "best.pt").read_bytes() == b"model"
    check_outputs({"--out": tmp_path / "best.pt"})  # a file named best.pt outside a run folder is just a file


def test_prepare_onto_its_own_annotation_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    cv2.imwrite(str(root / "val2017" / "000000000001.jpg"), np.full((100, 100, 3), 128, np.uint8))
    gt = json.loads(_coco_gt(tmp_path, people=1).read_text())
    gt["categories"][0]["keypoints"] = [str(i) for i in range(17)]
    (root / "val.json").write_text(json.dumps(gt))
    before = (root / "val.json").read_bytes()
    result = runner.invoke(app, ["prepare", "coco", "--root", str(root), "--annotations", "val=val.json"])
    one_line_error(result, "val.json names the same file as a source file")
    assert (root / "val.json").read_bytes() == before
    assert runner.invoke(app, ["prepare", "coco", "--root", str(root), "--annotations", "val=val.json", "--out",
                               str(tmp_path / "records")]).exit_code == 0  # fmt: skip


# -- recipe values -----------------------------------------------------------------------------------------------


def _recipe(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {{name: clnet_resnet18}}\ndata: {{dataset: synthetic, root: x}}\n{extra}")
    return path


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.box_padding=.inf", "data.box_padding must be > 0, got inf"),
        ("data.augment.rotation_factor=.inf", "data.augment.rotation_factor must be >= 0, got inf"),
        ("train.warmup_epochs=.inf", "train.warmup_epochs must be >= 0, got inf"),
        ("train.lr=-.inf", "train.lr must be > 0, got -inf"),
        ("eval.alpha=5", "eval.alpha must be in (0, 1], got 5"),
    ],
)
def test_recipe_values_that_mean_nothing_are_refused(tmp_path: Path, override: str, fragment: str) -> None:
    """Infinity passed every range check: tracebacks after an epoch, or a learning rate of 0 for a whole run."""
    with pytest.raises(ClposeError, match=re.escape(f"--set {override}: {fragment}")):
        load_recipe(_recipe(tmp_path), [override])
    key, value = override.split("=")
    section, name = key.rsplit(".", 1)
    if section in ("train", "eval"):  # the same value in the file
        with pytest.raises(ClposeError, match=re.escape(f"r.yaml: {fragment}")):
            load_recipe(_recipe(tmp_path, f"{section}: {{{name}: {value}}}\n"))


def test_set_reaches_a_section_the_recipe_leaves_empty(tmp_path: Path) -> None:
    """`eval:` alone reads as null: `--set eval.flip=false` was silently dropped."""
    recipe = load_recipe(_recipe(tmp_path, "eval:\ntrain:\n"), ["eval.flip=false", "train.epochs=3"])
    assert recipe.eval.flip is False and recipe.train.epochs == 3


def test_coco_ap_of_a_val_limit_counts_only_the_kept_images(tmp_path: Path) -> None:
    """`data.val_limit` cut the people but COCOeval scored every image of the annotation file: perfect predictions
    for the kept people read low (AP 0.089 on the real 4-image sample). Now whole images are kept and scored."""
    from clpose.config import EvalConfig
    from clpose.data import dataset_from_records, load_split
    from clpose.engine.posemodel import recipe_codec
    from clpose.evaluation.metrics import Predictions
    from clpose.evaluation.scoring import score_oks_records

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    gt = json.loads(_coco_gt(tmp_path, people=3).read_text())
    gt["annotations"].append({**gt["annotations"][0], "id": 9, "keypoints": _person(7)})  # image 1: two people
    gt["categories"][0]["keypoints"] = [str(i) for i in range(17)]
    (root / "annotations").mkdir()
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    for image in gt["images"]:
        cv2.imwrite(str(root / "val2017" / image["file_name"]), np.full((100, 100, 3), 128, np.uint8))
    run_prepare("coco", root, root, show=False)
    raw = {"model": {"name": "clnet_resnet18"}, "data": {"dataset": "coco", "root": str(root), "input_size": "64x48"}}
    raw["data"]["val_split"] = "val"
    raw["data"]["val_limit"] = 1
    recipe = recipe_from_dict(raw)
    records = load_split(recipe, "val")
    assert records.partial and len(records) == 2 and {records.image_id(i) for i in range(2)} == {1}  # whole image 1
    dataset = dataset_from_records(recipe, records, False, recipe_codec(recipe))
    kpts = records.keypoints[None, :, :, :2]
    preds = Predictions(np.arange(len(records)), kpts, np.ones(kpts.shape[:3]))
    table, _ = score_oks_records(dataset, preds, EvalConfig(), root / "annotations" / "person_keypoints_val2017.json")
    assert table["AP"] == 1.0 and table["AR"] == 1.0


def test_export_over_a_checkpoint_is_refused(tmp_path: Path) -> None:
    """`export --format torchscript --out runs/X/best.pt` replaced the checkpoint."""
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    ckpt = _checkpoint(run / "best.pt")
    (run / "metrics.jsonl").write_text("")
    last = _checkpoint(run / "last.pt")
    before = ckpt.read_bytes()
    argv = ["export", str(run), "--format", "torchscript", "--out"]
    one_line_error(runner.invoke(app, [*argv, str(ckpt)]), "best.pt is a checkpoint of the training run")
    one_line_error(runner.invoke(app, ["export", str(last), "--format", "torchscript", "--out", str(ckpt)]),
                    "best.pt is a checkpoint of the training run")  # fmt: skip
    other = _checkpoint(tmp_path / "c.pt")
    one_line_error(runner.invoke(app, ["export", str(other), "--format", "torchscript", "--out", str(other)]),
                    "c.pt names the same file as the checkpoint")  # fmt: skip
    assert ckpt.read_bytes() == before


def test_infer_never_writes_over_its_source(tmp_path: Path) -> None:
    """`infer photo.jpg --out photo.jpg` replaced the photo; a folder annotated into itself would replace each image."""
    from clpose.data.prepare.synthetic import write_video

    ckpt = _checkpoint(tmp_path / "c.pt")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(photos / name), np.full((48, 40, 3), 128, np.uint8))
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    clip = write_video(tmp_path / "clip.mp4", frames=2, seed=1)
    cases = [
        (["infer", str(photos / "a.jpg"), "--out", str(photos / "a.jpg")], "a.jpg names the same file as the source"),
        (["infer", str(photos), "--out", str(photos)], "names the same file as the source"),
        (["infer", str(photos / "a.jpg"), "--out", str(photos)], "a.jpg names the same file as the source"),
        (["infer", str(clip), "--out", str(clip)], "clip.mp4 names the same file as the source"),
        (["infer", str(clip), "--out", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "o.mp4")],
         "o.mp4 names the same file as --out"),
        (["infer", str(photos / "a.jpg"), "--json", str(ckpt)], "c.pt names the same file as --checkpoint"),
        (["infer", str(clip), "--boxes", str(clip.with_suffix(".boxes.json")), "--json",
          str(clip.with_suffix(".boxes.json"))], "boxes.json names the same file as --boxes"),
    ]  # fmt: skip
    for argv, fragment in cases:
        one_line_error(runner.invoke(app, [*argv, "--checkpoint", str(ckpt)]), fragment)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    assert not (tmp_path / "o.mp4").exists()
