"""`clpose eval CHECKPOINT`: a trained checkpoint over its split, every stage, saved predictions, COCO AP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.evaluation.prediction_files import read_predictions
from clpose.recipes import load_recipe
from clpose.training.loop import fit

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    run_prepare("synthetic", root, root, synthetic={"train": 16, "val": 8, "size": 96, "workers": 1}, show=False)
    runs = {}
    for model, codec in (("clnet_resnet18", "composite"), ("clnet_hourglass", "composite"), ("hourglass", "heatmap")):
        loss = "heatmap_mse" if codec == "heatmap" else "composite"
        recipe = root / f"{model}.yaml"
        stacks = "\n  stacks: 2" if "hourglass" in model else ""
        recipe.write_text(
            f"model:\n  name: {model}{stacks}\ncodec: {{name: {codec}}}\nloss: {{name: {loss}}}\n"
            f"data: {{dataset: synthetic, root: {root}, input_size: 64x64, num_workers: 0}}\n"
            "train: {epochs: 1, batch_size: 8}\neval: {batch_size: 4}\n"
        )
        runs[model] = fit(load_recipe(recipe), out=root / "runs" / model, device="cpu", show_progress=False).run_dir
    return runs


def test_eval_a_run_folder_reproduces_its_validation_number(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    run = synthetic_runs["clnet_resnet18"]
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", str(run), "--json", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert data["metric"] == "pck" and data["alpha"] == 0.2 and data["people"] == 8
    assert data["Mean"] == row["value"]  # best.pt on the same split and flip setting: the same number
    assert data["settings"]["flip"] is True and data["settings"]["split"] == "valid"
    for column in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"):
        assert column in data
    no_flip = runner.invoke(app, ["eval", str(run / "last.pt"), "--no-flip", "--json", str(out), "--metric", "pckh"])
    assert no_flip.exit_code == 0, no_flip.output
    data = json.loads(out.read_text())
    assert data["metric"] == "pckh" and "Mean@0.1" in data and data["settings"]["flip"] is False


def test_every_stage_of_a_hourglass(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    for model in ("clnet_hourglass", "hourglass"):
        out = tmp_path / f"{model}.json"
        result = runner.invoke(app, ["eval", str(synthetic_runs[model]), "--stages", "all", "--json", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads(out.read_text())
        assert len(data["stages"]) == 2 and data["stages"][-1]["Mean"] == data["Mean"]
        assert "stage" in result.output


def test_saved_predictions_read_back_in_every_format(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    run = synthetic_runs["clnet_resnet18"]
    kept = {}
    for suffix in (".json", ".mat", ".npy"):
        path = tmp_path / f"pred{suffix}"
        result = runner.invoke(app, ["eval", str(run), "--save-predictions", str(path)])
        assert result.exit_code == 0, result.output
        kept[suffix] = read_predictions(path, 16)
    json_kp, json_one = kept[".json"]
    mat_kp, mat_one = kept[".mat"]
    npy_kp, npy_one = kept[".npy"]
    assert (json_one, mat_one, npy_one) == (False, True, False)
    np.testing.assert_allclose(mat_kp - 1.0, npy_kp, atol=1e-6)
    np.testing.assert_allclose(json_kp, npy_kp, atol=1e-3)
    assert scipy.io.loadmat(str(tmp_path / "pred.mat"))["preds"].shape == (8, 16, 2)


def test_a_runs_table_equals_the_table_of_the_predictions_it_saved(
    synthetic_runs: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 31: `clpose eval RUN` gave PCKh Head 25.2 and `clpose eval --predictions saved.json` 22.4 (the file was
    scored as MPII; the synthetic skeleton's Head is upper neck and head top). Each metric, each format: one table."""
    run = synthetic_runs["clnet_resnet18"]
    records = run.parents[1] / "valid.json"
    for metric in ("pck", "pckh"):
        for suffix in (".json", ".npy", ".mat"):
            saved, from_run, from_file = tmp_path / f"p{suffix}", tmp_path / "run.json", tmp_path / "file.json"
            args = ["eval", str(run), "--metric", metric, "--save-predictions", str(saved), "--json", str(from_run)]
            assert runner.invoke(app, args).exit_code == 0
            args = ["eval", "--metric", metric, "--predictions", str(saved), "--annotations", str(records)]
            result = runner.invoke(app, [*args, "--json", str(from_file)])
            assert result.exit_code == 0, result.output
            tables = [json.loads(p.read_text()) for p in (from_run, from_file)]
            for table in tables:
                table.pop("settings"), table.pop("versions")
            assert tables[0] == tables[1], (metric, suffix)


def test_options_a_run_cannot_use_are_refused(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    """Issue 31: an option that does not apply to the metric or the run was ignored in silence."""
    run = synthetic_runs["clnet_resnet18"]
    one_line_error(runner.invoke(app, ["eval", str(run), "--head", "official"]),
                   "--head official does not apply to --metric pck (it applies to pckh)")  # fmt: skip
    result = runner.invoke(app, ["eval", str(run), "--annotations", str(run.parents[1] / "valid.json")])
    one_line_error(result, "--annotations cannot be used with RUN and --metric pck: the records (", "its ground truth")
    one_line_error(runner.invoke(app, ["eval", str(run), "--format", "npy"]), "--format needs --save-predictions")
    assert not list(tmp_path.iterdir())


def test_without_a_checkpoint_the_latest_run_is_used(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(synthetic_runs["clnet_resnet18"].parents[1])  # the folder holding runs/
    try:
        result = runner.invoke(app, ["eval", "--metric", "pck"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert "evaluating the latest run:" in result.output and "best.pt" in result.output


def test_eval_errors(synthetic_runs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nothing.pt")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = runner.invoke(app, ["eval"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2 and "no best.pt under runs/" in result.stderr
    result = runner.invoke(app, ["eval", str(synthetic_runs["clnet_resnet18"]), "--split", "nope"])
    assert result.exit_code == 2 and "has no nope.json" in result.stderr


def _pycocotools_ap(annotations: Path, results: Path) -> float:
    """AP of a results file by pycocotools alone, as the evaluation server computes it."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        ev = COCOeval(gt, gt.loadRes(str(results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_coco_checkpoint_end_to_end_with_gt_and_detected_boxes(realdata: Path, tmp_path: Path) -> None:
    data = tmp_path / "coco"
    run_prepare(
        "coco",
        realdata / "coco",
        data,
        ["val=test_coco.json"],
        ["."],
        detections=realdata / "coco" / "test_coco_det_AP_H_56.json",
        show=False,
    )
    recipe = tmp_path / "coco.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet18}}\ndata: {{dataset: coco, root: {data}, input_size: 64x48, "
        "train_split: val_gt, val_split: val_gt, num_workers: 0}\n"
        "train: {epochs: 1, batch_size: 4}\neval: {batch_size: 8}\n"
    )
    run = fit(load_recipe(recipe), out=tmp_path / "run", device="cpu", show_progress=False).run_dir
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["metric"] == "oks" and set(row["table"]) >= {"AP", "AP50", "AR"}
    out, results = tmp_path / "r.json", tmp_path / "results.json"
    args = ["eval", str(run), "--json", str(out), "--save-predictions", str(results)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["metric"] == "oks" and table["people"] == 12
    assert table["AP"] == row["value"]  # best.pt of the only epoch on its validation split: the training's number
    assert table["AP"] == _pycocotools_ap(realdata / "coco" / "test_coco.json", results)  # and COCOeval's own
    scored = runner.invoke(
        app,
        [
            "eval",
            "--metric",
            "oks",
            "--predictions",
            str(results),
            "--annotations",
            str(realdata / "coco" / "test_coco.json"),
            "--json",
            str(tmp_path / "f.json"),
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "f.json").read_text())["AP"] == table["AP"]  # the saved results score the same
    det = runner.invoke(app, ["eval", str(run), "--split", "val", "--json", str(out)])  # detected boxes
    assert det.exit_code == 0, det.output
    data_det = json.loads(out.read_text())
    assert data_det["people"] == 118 and data_det["instances"] <= 118
    boxes = runner.invoke(
        app, ["eval", str(run), "--boxes", str(realdata / "coco" / "test_coco_det_AP_H_56.json"), "--json", str(out)]
    )
    assert boxes.exit_code == 0, boxes.output
    data_boxes = json.loads(out.read_text())
    assert data_boxes["AP"] == data_det["AP"] and len(data_boxes["settings"]["boxes_sha256"]) == 64
