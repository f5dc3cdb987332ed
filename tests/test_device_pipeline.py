"""The GPU data pipeline on CPU tensors: the same samples as the CPU pipeline for the same seed, up to the
interpolation of the crop (measured here), and a training run through it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data import build_dataset
from clpose.data.dataset import STD_RGB
from clpose.data.device_pipeline import DevicePipeline, RawSamples, collate_raw
from clpose.data.prepare import run_prepare
from clpose.data.transforms import get_affine, warp, warp_batch
from clpose.engine.posemodel import recipe_codec
from clpose.recipes import load_recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("device")
    run_prepare("synthetic", root, root, synthetic={"train": 24, "val": 8, "size": 96, "workers": 1}, show=False)
    return root


def _recipe(tmp_path: Path, data: Path, codec: str = "composite", pipeline: str = "cpu") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{name: clnet_resnet18}}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x48, num_workers: 0, pipeline: {pipeline},\n"
        f"       augment: {{color_jitter: 0.3, rotation_prob: 1.0, flip_prob: 0.5, half_body_prob: 0.3}}}}\n"
        f"codec: {{name: {codec}}}\nloss: {{name: {'heatmap_mse' if codec == 'heatmap' else 'composite'}}}\n"
        f"train: {{epochs: 1, batch_size: 8, amp: off}}\neval: {{batch_size: 8}}\n"
    )
    return path


@pytest.mark.parametrize("codec", ["composite", "heatmap"])
def test_same_seed_gives_the_cpu_pipelines_samples(tmp_path: Path, data: Path, codec: str) -> None:
    """Keypoints and targets are the same numbers; pixels differ by OpenCV's 1/32-pixel bilinear weights only:
    at most 2 grey levels, 1 level on under 6% of the values (measured 4.6%), about 0.05 levels on average."""
    recipe = load_recipe(_recipe(tmp_path, data, codec))
    dataset = build_dataset(recipe, "train", True, recipe_codec(recipe))
    dataset.set_epoch(3)
    raw = RawSamples(dataset)
    batch = DevicePipeline(dataset.codec, "cpu")(collate_raw([raw[i] for i in range(len(dataset))]))
    to_levels = torch.tensor(STD_RGB)[:, None, None] * 255  # normalised units -> grey levels
    diffs = []
    for i in range(len(dataset)):
        sample = dataset[i]
        assert (batch["keypoints"][i] - sample["keypoints"]).abs().max() <= 0.05
        assert torch.equal(batch["visible"][i], sample["visible"])
        for name in ("heatmaps", "offsets", "keypoint_weights"):
            if name in sample["targets"]:
                assert torch.equal(batch["targets"][name][i], sample["targets"][name]), name
        diffs.append(((batch["image"][i] - sample["image"]) * to_levels).abs())
    levels = torch.stack(diffs)
    assert levels.max() <= 2.0 + 1e-4
    assert (levels > 1.0 + 1e-4).float().mean() < 1e-3
    assert (levels > 1e-4).float().mean() < 0.06
    assert levels.mean() < 0.08


def test_warp_batch_matches_cv2_on_images_of_different_sizes() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 60), (75, 33), (20, 20))]
    affines = np.stack(
        [get_affine(np.array([25.0, 18.0]), np.array([30.0, 40.0]), (32, 24), 20.0 * k) for k in range(3)]
    )
    crops = warp_batch(
        [torch.from_numpy(im[:, :, ::-1].transpose(2, 0, 1).copy()) for im in images],
        torch.from_numpy(affines),
        (32, 24),
    )
    for image, affine, crop in zip(images, affines, crops, strict=True):
        want = warp(image, affine, (32, 24))[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
        assert np.abs(crop.numpy() - want).max() <= 2  # the black border included
    identity = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    same = warp_batch([torch.from_numpy(images[0].transpose(2, 0, 1).copy())], torch.from_numpy(identity), (40, 60))
    np.testing.assert_array_equal(same[0].numpy(), images[0].transpose(2, 0, 1))


def test_an_undecodable_image_gets_weight_zero_and_a_warning(tmp_path: Path, data: Path, capsys) -> None:
    recipe = load_recipe(_recipe(tmp_path, data))
    dataset = build_dataset(recipe, "train", True, recipe_codec(recipe))
    raw = [RawSamples(dataset)[i] for i in range(3)]
    raw[1]["data"] = torch.frombuffer(bytearray(b"\xff\xd8 not a jpeg"), dtype=torch.uint8)
    batch = DevicePipeline(dataset.codec, "cpu")(collate_raw(raw))
    weights = batch["targets"]["keypoint_weights"]
    assert weights[1].sum() == 0 and weights[0].sum() > 0
    assert "cannot be decoded (the sample gets weight 0)" in capsys.readouterr().err


def test_training_through_the_gpu_pipeline_on_cpu_tensors(tmp_path: Path, data: Path) -> None:
    recipe = _recipe(tmp_path, data, pipeline="gpu")
    recipe.write_text(recipe.read_text().replace("num_workers: 0", "num_workers: 1"))
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "data pipeline: gpu (data.pipeline: gpu; workers read files, cpu decodes" in " ".join(result.output.split())
    assert "data.pipeline: gpu on cpu: decoding and cropping run in the main process" in " ".join(result.stderr.split())
    assert (tmp_path / "run" / "best.pt").is_file()


def test_cv2_reference_is_bilinear_with_a_constant_border() -> None:
    """What warp_batch imitates: transforms.warp is cv2.warpAffine, bilinear, black outside."""
    image = np.full((4, 4, 3), 200, np.uint8)
    shifted = warp(image, np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]), (4, 4))
    assert shifted[0, 0, 0] == 100 and shifted[0, 1, 0] == 200  # half a pixel of black blended in
    assert cv2.INTER_LINEAR == 1
