"""`clpose demo`: the recipe it trains, its budget arithmetic, and a miniature end-to-end run that is re-run to
show that it reuses its outputs and that --fresh starts over. (.ci/run runs the real command with a short budget.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import clpose.demo as demo
import clpose.demo_report as demo_report
from clpose.cli.app import app
from clpose.errors import ClposeError

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_the_published_synthetic_recipe() -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "synthetic_resnet10.yaml").read_text())
    assert recipe == demo.DEMO_RECIPE
    built = demo.demo_recipe(Path("/tmp/d"), epochs=7, minutes=10, train_per_epoch=7000)
    assert built.train.epochs == 7 and built.data.root == "/tmp/d" and built.train.max_minutes == 10
    assert built.model.name == "clnet_resnet10" and built.loss.region == "union" and built.train.amp == "auto"
    assert built.data.train_limit == 7000 and demo.demo_recipe(Path("/tmp/d"), 7, 10).data.train_limit is None


def test_data_scales_with_the_budget_and_is_capped_at_the_recipe_sizes() -> None:
    assert demo.data_sizes(10) == (8000, 500)
    assert demo.data_sizes(60) == (8000, 500)
    assert demo.data_sizes(2) == (1600, 100)
    assert demo.data_sizes(0.1) == (400, 100)


@pytest.mark.parametrize(
    ("speed", "expected"),
    [(30.0, (3, 5605)), (65.0, (5, 7335)), (120.0, (9, 7425)), (300.0, (21, 7636))],
)
def test_the_plan_fills_the_budget_with_the_fewest_epochs(speed: float, expected: tuple[int, int]) -> None:
    epochs, per_epoch = demo.fit_budget(600, speed, 8000, 500, 16)
    assert (epochs, per_epoch) == expected
    assert per_epoch <= 8000 and epochs * (per_epoch / speed + 0.67 * 500 / speed + 2.0) <= 600
    if epochs > 1:  # one epoch fewer would need more images than there are
        assert (600 / (epochs - 1) - 0.67 * 500 / speed - 2.0) * speed > 8000


def test_a_tiny_budget_still_trains_a_batch_per_epoch() -> None:
    epochs, per_epoch = demo.fit_budget(1, 10.0, 400, 100, 16)
    assert epochs == 1 and per_epoch == 16


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_bad_budget_is_one_line_exit_2(minutes: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--minutes", minutes])
    assert result.exit_code == 2 and "--minutes" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "is a file" in result.output


def _check_outputs(out: Path) -> None:
    assert demo_report.check_outputs(out).startswith("demo outputs valid")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["model"]["params_m"] > 1 and summary["model"]["fps"] > 0
    assert len(json.loads((out / "video" / "poses.json").read_text())["frames"]) == demo.CLIP_FRAMES
    assert (out / "train" / "curves.png").is_file() and len(list((out / "vis").glob("targets_*.png"))) == 2


def test_check_outputs_names_the_file_at_fault(tmp_path: Path) -> None:
    with pytest.raises(ClposeError, match=r"summary\.json is missing"):
        demo_report.check_outputs(tmp_path)
    (tmp_path / "summary.json").write_text('{"pck": 50.0')
    with pytest.raises(ClposeError, match=r"summary\.json is not valid JSON"):
        demo_report.check_outputs(tmp_path)


def test_miniature_demo_runs_end_to_end_reuses_retrains_for_a_new_budget_and_starts_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 48 training images, a 12-frame clip and one epoch: every step of the real demo, in seconds
    monkeypatch.setattr(demo, "data_sizes", lambda minutes: (48, 16))
    monkeypatch.setattr(demo, "CLIP_FRAMES", 12)
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--minutes", "0.01"])
    assert result.exit_code == 0, result.output
    assert "PCK@0.2 on the synthetic validation split" in result.output and "Next:" in result.output
    _check_outputs(out)
    checkpoint = out / "train" / "last.pt"
    first = checkpoint.stat().st_mtime_ns, (out / "data" / "train.json").stat().st_mtime_ns

    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--minutes", "0.01"])
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output and "1 epoch trained" in again.output
    assert (checkpoint.stat().st_mtime_ns, (out / "data" / "train.json").stat().st_mtime_ns) == first

    other = CliRunner().invoke(app, ["demo", "--out", str(out), "--minutes", "0.02"])
    assert other.exit_code == 0, other.output
    assert "the budget changed (was 0.01 minutes): training again" in other.output
    assert checkpoint.stat().st_mtime_ns != first[0]
    assert json.loads((out / "summary.json").read_text())["minutes"] == 0.02

    (out / "notes.txt").write_text("the user's, not the demo's")
    (out / "data" / "stale.txt").write_text("inside a folder the demo wrote")
    fresh = CliRunner().invoke(app, ["demo", "--out", str(out), "--minutes", "0.01", "--fresh"])
    assert fresh.exit_code == 0, fresh.output
    assert "reusing" not in fresh.output and "--fresh: removed what the demo wrote in" in fresh.output
    assert not (out / "data" / "stale.txt").exists()  # the demo's folders start over
    assert (out / "notes.txt").read_text() == "the user's, not the demo's"  # what it did not write stays
    _check_outputs(out)
