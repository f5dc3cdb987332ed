"""`clpose vis targets` / `vis dataset` on prepared synthetic data and on the real samples."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.drawing import draw_pose, score_color
from clpose.skeletons import SYNTHETIC

runner = CliRunner()


@pytest.fixture(scope="module")
def synthetic_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    run_prepare("synthetic", root, root, synthetic={"train": 6, "val": 2, "size": 128, "workers": 1}, show=False)
    recipe = root / "r.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet18}}\ndata: {{dataset: synthetic, root: {root}, input_size: 128x128}}\n"
    )
    return recipe


def test_vis_targets_writes_one_png_per_sample(synthetic_recipe: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["vis", "targets", str(synthetic_recipe), "--num", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pngs = sorted(tmp_path.glob("targets_train_*.png"))
    assert len(pngs) == 3
    image = cv2.imread(str(pngs[0]))
    assert image.shape[0] == 128 * 2 + 22 + 26 and image.shape[1] == 128 * 2 * 5  # overview + 4 joint panels


def test_vis_targets_with_the_heatmap_codec(synthetic_recipe: Path, tmp_path: Path) -> None:
    sets = ["model.name=simplebaseline_resnet18", "codec.name=heatmap", "loss.name=heatmap_mse"]
    args = ["vis", "targets", str(synthetic_recipe), "--num", "1", "--out", str(tmp_path)]
    args += [a for s in sets for a in ("--set", s)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_vis_dataset_sheet(synthetic_recipe: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["vis", "dataset", str(synthetic_recipe), "--num", "6", "--out", str(tmp_path), "--columns", "3"]
    )
    assert result.exit_code == 0, result.output
    (png,) = tmp_path.glob("dataset_train_000.png")
    assert cv2.imread(str(png)).shape == (2 * (128 + 18), 3 * 128, 3)


def test_vis_errors(synthetic_recipe: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["vis", "targets", str(synthetic_recipe), "--split", "nope"])
    assert result.exit_code == 2 and "has no nope.json" in result.stderr
    result = runner.invoke(app, ["vis", "targets", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_vis_targets_on_real_coco(realdata: Path, tmp_path: Path) -> None:
    run_prepare("coco", realdata / "coco", tmp_path, ["val=test_coco.json"], ["."], show=False)
    recipe = tmp_path / "coco.yaml"
    recipe.write_text(
        f"model: {{name: clnet_resnet50}}\ndata: {{dataset: coco, root: {tmp_path}, input_size: 256x192, "
        "train_split: val}\n"
    )
    result = runner.invoke(app, ["vis", "targets", str(recipe), "--num", "2", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "v").glob("*.png"))) == 2


def test_draw_pose_skips_low_scores() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    kpts = np.full((16, 2), 25.0)
    draw_pose(image, kpts, SYNTHETIC, np.zeros(16), threshold=0.3)
    assert not image.any()
    draw_pose(image, kpts, SYNTHETIC, np.ones(16), threshold=0.3)
    assert image.any()
    assert score_color(0.0) == (40, 0, 255) and score_color(1.0) == (40, 255, 0)
