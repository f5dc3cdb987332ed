"""What training says about its numbers: every metric printed on its own scale, as `clpose eval`
prints it, and a run that is not learning warned about in the log and recorded in metrics.jsonl."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.evaluation.metrics import METRICS
from clpose.losses import CompositeLossOptions, HeatmapMSEOptions
from clpose.training import loop as train_module
from clpose.training.rows import EpochRow

runner = CliRunner()

REMEDY = (
    "try --set loss.w_h=5 --set loss.region=union (on COCO from random weights it learned AP 56.9 where these stayed "
    "at 0)"
)
ZERO_OFFSETS = (
    "offset_y and offset_x were exactly 0 for the whole epoch (loss.w_o 2): no predicted heatmap cell reached tau 0.6, "
    f"so the offsets were not trained; {REMEDY}"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    run_prepare("synthetic", root, root, synthetic={"train": 16, "val": 8, "size": 64, "workers": 1}, show=False)
    return root


def test_a_run_that_is_not_learning_is_warned_about_and_its_metric_printed_on_its_scale(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's COCO run in miniature: the composite loss of the paper (w_h 0.5, region pred) from random weights,
    the offsets untrained once no predicted cell reaches tau, and an OKS AP of 0.004 (0.4 on eval's scale) at every
    validation while the loss falls. The AP is the scorer's (no COCO annotations here), the rest is a real run."""
    scored = {"AP": 0.004, "AP50": 0.01, "AP75": 0.0, "APM": 0.0, "APL": 0.004, "AR": 0.02, "metric": "oks"}
    oks = dataclasses.replace(METRICS["oks"], score_predictions=lambda dataset, preds, options: (dict(scored), None))
    monkeypatch.setattr(train_module, "dataset_metric", lambda *args, **kwargs: oks)
    recipe, out = tmp_path / "r.yaml", tmp_path / "run"
    recipe.write_text(
        f"model: {{name: clnet_resnet10}}\nloss: {{name: composite, w_h: 0.5, region: pred}}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}\n"
        f"train: {{epochs: 3, batch_size: 8, amp: off}}\neval: {{batch_size: 8, flip: false}}\n"
    )
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    said = " ".join(result.stdout.split())
    # the raw value in metrics.jsonl, as `clpose eval --json` writes it; x 100 wherever training prints it
    assert [(r["metric"], r["value"], r.get("scale")) for r in rows] == [("oks", 0.004, 100.0)] * 3
    for row in rows:
        assert f"epoch {row['epoch']}: loss {row['loss']:.4g}, " in said
    assert said.count(", oks 0.4 (best 0.4)") == 3
    assert f"done: 3 epochs, best oks 0.4; {out}/best.pt" in said
    # a weighted loss part at exactly 0 for a whole epoch: warned and recorded in exactly the epochs where it was
    untrained = [r["offset_y"] == 0.0 and r["offset_x"] == 0.0 for r in rows]
    assert untrained[-1], [(r["offset_y"], r["offset_x"]) for r in rows]  # reached by epoch 3 (the issue: epoch 6)
    for row, zero in zip(rows, untrained, strict=True):
        assert (ZERO_OFFSETS in row["warnings"]) is zero
        assert (f"warning: epoch {row['epoch']}: {ZERO_OFFSETS}" in result.stderr) is zero
    # the metric at zero for 3 validations while the loss fell: the likely cause and the remedy
    stalled = (
        f"oks has stayed below 1 (0.4, 0.4, 0.4 at epochs 1, 2, 3) while the loss fell from {rows[0]['loss']:.4g} to "
        f"{rows[2]['loss']:.4g}: the model is not learning what is scored; likely cause: no predicted heatmap cell "
        f"reaches tau 0.6, so the offsets stay untrained (loss.region pred); remedy: {REMEDY}"
    )
    assert rows[2]["loss"] < rows[0]["loss"]
    assert [stalled in r["warnings"] for r in rows] == [False, False, True]
    assert f"warning: epoch 3: {stalled}" in result.stderr


def _row(epoch: int, value: float | None, loss: float, metric: str = "pck", **parts: float) -> EpochRow:
    return EpochRow(epoch, loss, parts, metric=metric, value=value)


def test_a_zero_part_is_named_with_its_weight_and_a_zero_weight_is_not_a_warning() -> None:
    from clpose.training.health import health_warnings

    heatmaps = HeatmapMSEOptions(w_h=0.5)
    assert health_warnings([_row(1, 50.0, 0.1, heatmap=0.0)], heatmaps, None, 1.0) == [
        "heatmap was exactly 0 for the whole epoch (loss.w_h 0.5): that part of the loss trained nothing; check that "
        "the training crops hold labelled keypoints (keypoint weights) and that the codec's targets reach them"
    ]
    offsets_off = CompositeLossOptions(w_o=0.0, region="pred")
    assert health_warnings([_row(1, 50.0, 0.1, heatmap=0.1, offset_y=0.0, offset_x=0.0)], offsets_off, 0.6, 1.0) == []
    union = CompositeLossOptions(region="union")  # the gt region is never empty: only the parts are named
    assert health_warnings([_row(1, 50.0, 0.1, heatmap=0.1, offset_y=0.0, offset_x=0.2)], union, 0.6, 1.0) == [
        "offset_y was exactly 0 for the whole epoch (loss.w_o 2): that part of the loss trained nothing; check that "
        "the training crops hold labelled keypoints (keypoint weights) and that the codec's targets reach them"
    ]


def test_a_metric_at_zero_while_the_loss_falls_is_warned_only_after_three_validations() -> None:
    from clpose.training.health import health_warnings

    loss = HeatmapMSEOptions(w_h=0.5)
    rows = [_row(1, 0.2, 0.9), _row(2, None, 0.8), _row(3, 0.0, 0.5), _row(4, 0.9, 0.3)]  # val_every 2 on epoch 2
    assert health_warnings(rows[:3], loss, None, 1.0) == []  # two validations so far
    assert health_warnings(rows, loss, None, 1.0) == [
        "pck has stayed below 1 (0.2, 0.0, 0.9 at epochs 1, 3, 4) while the loss fell from 0.9 to 0.3: the model is "
        "not learning what is scored; likely cause: the loss falls by predicting near-empty heatmaps (most target "
        "cells are 0; loss.w_h 0.5); remedy: raise loss.w_h (e.g. --set loss.w_h=5) or lower train.lr; check "
        "data.input_size and codec.sigma"
    ]
    # an epoch without a validation brings no news: the same sentence is not said again until the next validation
    assert health_warnings([*rows, _row(5, None, 0.25)], loss, None, 1.0) == []
    assert health_warnings([*rows[:3], _row(4, 1.0, 0.3)], loss, None, 1.0) == []  # 1.0: learning has begun
    assert health_warnings([*rows[:3], _row(4, 0.5, 0.95)], loss, None, 1.0) == []  # the loss did not fall
    oks = [_row(e, 0.011, 1.0 / e, "oks") for e in (1, 2, 3)]  # AP 1.1 on eval's scale: not zero
    assert health_warnings(oks, loss, None, 100.0) == []


def test_the_epoch_summary_prints_the_metric_on_its_scale() -> None:
    from clpose.training.progress import epoch_summary

    row = EpochRow(7, 0.0123, samples_per_s=88.04, data_wait=0.12, metric="oks", value=0.5694)
    assert epoch_summary(row, 0.57, 100.0) == (
        "epoch 7: loss 0.0123, 88.0 samples/s, data wait 12%, oks 56.9 (best 57.0)"
    )
    row.value = None
    assert epoch_summary(row, 0.57, 100.0) == "epoch 7: loss 0.0123, 88.0 samples/s, data wait 12%"


def test_the_remedy_never_advises_a_setting_that_is_already_set() -> None:
    """Issue 31, class 8: the stall warning advised `--set loss.w_h=5` to a run whose w_h was already 5."""
    from clpose.training.health import health_warnings

    rows = [_row(e, 0.001, 1.0 - 0.1 * e, offset_y=0.1, offset_x=0.1, heatmap=0.1) for e in (1, 2, 3)]
    cases = {
        (0.5, "pred"): "remedy: try --set loss.w_h=5 --set loss.region=union (on COCO",
        (5.0, "pred"): "remedy: try --set loss.region=union (on COCO",
        (8.0, "pred"): "remedy: try --set loss.region=union (on COCO",
        (5.0, "union"): "remedy: raise loss.w_h (e.g. --set loss.w_h=10) or lower train.lr",
        (1.0, "union"): "remedy: raise loss.w_h (e.g. --set loss.w_h=5) or lower train.lr",
        (0.5, "gt"): "remedy: raise loss.w_h (e.g. --set loss.w_h=5) or lower train.lr",
    }
    for (w_h, region), advice in cases.items():
        (warning,) = health_warnings(rows, CompositeLossOptions(w_h=w_h, region=region), 0.6, 100.0)
        assert advice in warning, (w_h, region, warning)
        assert f"--set loss.w_h={w_h:g} " not in warning and f"--set loss.region={region} " not in warning
