"""PoseModel: evaluation (`predict`) and the Predictor give the same keypoints for the same people, a checkpoint
rebuilds the same model at its (H, W), every stage of a multi-stage model, and the import direction of the
layers (inference does not load evaluation or the CLI; data does not load the models)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import write_checkpoint

from clpose.data import build_dataset
from clpose.data.dataset import load_image
from clpose.data.prepare import run_prepare
from clpose.engine.posemodel import PoseModel
from clpose.engine.predict import predict
from clpose.inference.predictor import Predictor
from clpose.recipes import recipe_from_dict
from clpose.skeletons import get_skeleton

SYNTHETIC = get_skeleton("synthetic")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    run_prepare("synthetic", root, root, synthetic={"train": 8, "val": 4, "size": 96, "workers": 1}, show=False)
    return root


def _recipe(model: str, size: str, root: Path | str = "unused", **model_options):
    codec = "composite" if model.startswith("clnet") else "heatmap"
    return recipe_from_dict(
        {
            "model": {"name": model, **model_options},
            "data": {"dataset": "synthetic", "root": str(root), "input_size": size, "num_workers": 0},
            "codec": {"name": codec},
            "loss": {"name": "composite" if codec == "composite" else "heatmap_mse"},
        },
        name="test",
    )


def _pose(model: str, size: str, root: Path | str = "unused", **model_options) -> PoseModel:
    torch.manual_seed(0)
    return PoseModel.from_recipe(
        _recipe(model, size, root, **model_options), SYNTHETIC, amp="off", pretrained=False, device="cpu"
    )


# Non-square crops, so that an H/W swap anywhere (dataset, crop, codec, affine) changes the result. The sizes
# fit each model's size divisor (16 for CLNet-ResNet, 32 for SimpleBaseline).
@pytest.mark.parametrize(("model", "size"), [("clnet_resnet18", "64x48"), ("simplebaseline_resnet18", "64x32")])
def test_predict_over_a_dataset_equals_the_predictor_on_the_same_boxes(model: str, size: str, tiny_data: Path) -> None:
    pose = _pose(model, size, tiny_data)
    h, w = pose.input_hw
    assert (h, w) == tuple(int(v) for v in size.split("x"))
    dataset = build_dataset(_recipe(model, size, tiny_data), "valid", train=False, codec=pose.codec)
    records = dataset.records
    n = len(dataset)
    assert n == 4 and not np.isnan(records.boxes).any()

    # The honest equivalent: the synthetic records' centre/scale ARE box_to_center_scale(box) (the converter
    # computes them so, and the records store floats exactly), and the dataset and the PoseModel pad and fit the
    # aspect with the same box_size. So the Predictor given each record's box must build the very affine (and
    # hence the very crop) that evaluation builds; checked here first, so that a difference in the keypoints
    # below can only come from the forward/flip/decode/back-to-image path.
    images = [cv2.imread(str(records.image_path(i)), cv2.IMREAD_COLOR) for i in range(n)]
    boxes = [records.boxes[i][None] for i in range(n)]
    crops, affines = pose.crops(images, boxes)
    assert tuple(crops.shape) == (n, 3, h, w)
    for i in range(n):
        sample = dataset[i]
        np.testing.assert_array_equal(load_image(records.image_path(i)), images[i])  # same decoder output
        np.testing.assert_allclose(sample["meta"]["affine"].numpy(), affines[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(sample["image"], crops[i], rtol=0, atol=0)

    results = {}
    for flip in (False, True):
        # one batch of all n people on both sides: the same input tensor, so the same network arithmetic
        preds = predict(pose, dataset, batch_size=n, flip=flip)
        assert preds.keypoints.shape == (1, n, SYNTHETIC.num_keypoints, 2)
        np.testing.assert_array_equal(preds.indices, np.arange(n))
        poses = Predictor(pose, flip=flip).predict_batch(images, boxes)
        assert [len(p) for p in poses] == [1] * n
        kp = np.stack([p[0].keypoints for p in poses])
        sc = np.stack([p[0].scores for p in poses])
        np.testing.assert_allclose(kp, preds.keypoints[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(sc, preds.scores[0], rtol=0, atol=1e-6)
        results[flip] = kp
        # and both are the image-pixel version of the PoseModel's own three steps on those crops
        (maps,) = pose.maps(crops, flip=flip)
        crop_kp, _ = pose.decode(maps)
        np.testing.assert_allclose(kp, pose.to_image(crop_kp, affines), rtol=0, atol=1e-4)
    # the flip test really ran in the Predictor (flip=True is not the plain forward)
    assert np.abs(results[True] - results[False]).max() > 1e-3


def _save(path: Path, model: str, size: str, **model_options) -> tuple[Path, dict]:
    recipe = _recipe(model, size, **model_options)
    torch.manual_seed(1)
    pose = PoseModel.from_recipe(recipe, SYNTHETIC, amp="off", pretrained=False)
    # perturb the BatchNorm statistics too, so that "the same weights" covers the buffers
    for m in pose.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in pose.model.state_dict().items()}
    return write_checkpoint(path, recipe, state, "synthetic", SYNTHETIC.num_keypoints), state


def test_from_checkpoint_rebuilds_the_weights_at_the_recipes_hw(tmp_path: Path) -> None:
    path, state = _save(tmp_path / "c.pt", "clnet_resnet18", "64x48")
    pose = PoseModel.from_checkpoint(path, "cpu", amp="off")
    assert pose.input_hw == (64, 48)  # (H, W) as in the recipe, not (W, H)
    assert pose.codec.input_hw == (64, 48) and pose.codec.heatmap_hw == (4, 3)
    assert pose.skeleton.name == SYNTHETIC.name and pose.box_padding == 1.25
    loaded = pose.model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)

    image = np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    box = np.array([30.0, 20.0, 30.0, 80.0])  # x, y, w, h: centre (45, 60)
    crop, affine = pose.crop(image, box)
    assert tuple(crop.shape) == (3, 64, 48) and crop.dtype == torch.float32
    # the box (padded 1.25 -> 37.5 x 100) fitted to the 3:4 crop is 75 x 100 px: scale 48 / 75 = 64 / 100
    np.testing.assert_allclose(affine[:, :2], [[0.64, 0.0], [0.0, 0.64]], atol=1e-12)
    np.testing.assert_allclose(affine @ [45.0, 60.0, 1.0], [23.5, 31.5], atol=1e-12)  # centre -> crop centre
    # the model runs at that size: maps of (64 / 16) x (48 / 16) cells, keypoints back in the image
    kp, scores = pose.keypoints(crop[None], affine[None])
    assert kp.shape == (1, 1, 16, 2) and scores.shape == (1, 1, 16) and np.isfinite(kp).all()


def test_keypoints_of_every_stage_of_a_two_stack_hourglass() -> None:
    pose = _pose("clnet_hourglass", "64x64", stacks=2)
    assert pose.model.num_stages == 2
    gen = torch.Generator().manual_seed(0)
    crops = torch.randn(2, 3, 64, 64, generator=gen)
    affines = np.stack([pose.affine(np.array(b)) for b in ([10.0, 5.0, 40.0, 60.0], [0.0, 0.0, 64.0, 64.0])])
    for flip in (False, True):
        kp, sc = pose.keypoints(crops, affines, flip=flip, stages=True)
        assert kp.shape == (2, 2, 16, 2) and sc.shape == (2, 2, 16)
        last, last_sc = pose.keypoints(crops, affines, flip=flip, stages=False)
        assert last.shape == (1, 2, 16, 2)
        np.testing.assert_allclose(kp[-1], last[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(sc[-1], last_sc[0], rtol=0, atol=1e-6)
        # the first entry is the first stage's own output, not a copy of the last
        maps = pose.maps(crops, flip=flip, stages=True)
        assert len(maps) == 2 and not torch.equal(maps[0], maps[1])
        np.testing.assert_allclose(kp[0], pose.to_image(pose.decode(maps[0])[0], affines), rtol=0, atol=1e-5)


def _loaded_after_import(module: str, candidates: list[str]) -> list[str]:
    """The candidates (or any of their submodules) in sys.modules of a fresh interpreter after `import module`."""
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in {candidates!r} if m in sys.modules or "
        f"any(k.startswith(m + '.') for k in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (
            "clpose.inference.predictor",
            [
                "clpose.engine.predict",
                "clpose.evaluation.scoring",
                "clpose.engine.evaluate",
                "clpose.training",
                "clpose.cli",
            ],
        ),
        ("clpose.data", ["clpose.models", "torchvision"]),
        ("clpose.demo", ["clpose.cli"]),
        ("clpose.demo_report", ["clpose.cli"]),
        ("clpose.signals", ["torch", "numpy", "clpose.config"]),
        ("clpose.engine.graph_cache", ["clpose.training", "clpose.speed", "clpose.cli"]),
        ("clpose.speed.limits", ["clpose.inference", "clpose.cli", "onnxruntime", "openvino"]),
        ("clpose.config", ["torch", "clpose.codecs", "clpose.evaluation"]),  # registries: read when a recipe is checked
        ("clpose.evaluation.pck", ["torch", "clpose.engine"]),
        ("clpose.engine.posemodel", ["clpose.training", "clpose.speed.bench", "clpose.cli"]),
    ],
)
def test_import_direction(module: str, forbidden: list[str]) -> None:
    # the module itself is probed too (in the same interpreter), so the probe is shown to see what is loaded
    assert _loaded_after_import(module, [module, *forbidden]) == [module]
