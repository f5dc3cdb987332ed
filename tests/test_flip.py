"""The flip test end to end: a network whose behaviour under flipping is known gives the same keypoints with and
without the flip test, through the PoseModel, the Predictor and `clpose eval`, for both codecs; and a mirrored image
gives the mirrored keypoints.

The network (`MirrorOracle`) sees which way its crop faces (the brighter half of the crop) and emits the codec's
targets of a known pose P, or of P mirrored in the crop with left and right swapped: what a network trained with
flip augmentation should do. Its mirror is written here from first principles (x -> W - 1 - x in crop pixels, the
skeleton's flip pairs swapped), not with the codec's `flip_back`, so a wrong `flip_back` (no channel swap, x offsets
not negated, no column shift) or a flip test that averages the raw flipped maps makes these tests fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import write_checkpoint
from torch import nn
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.config import Options
from clpose.data.transforms import apply_affine, box_to_center_scale, invert_affine, person_affine
from clpose.engine.posemodel import PoseModel
from clpose.inference.predictor import Predictor
from clpose.models import MODELS, ModelEntry
from clpose.recipes import recipe_from_dict
from clpose.skeletons import get_skeleton

SKELETON = get_skeleton("mpii")
CROP_HW = (64, 48)
# composite: decoded votes are exact (float32 noise); heatmap: arg-max + quarter cell decode at stride 4, which the
# flip test's one-column alignment keeps within one quarter cell (1 px) of the unflipped result
TOLERANCE = {"composite": 1e-3, "heatmap": 1.0}


def _codec(name: str):
    return CompositeCodec(CROP_HW, stride=16, sigma=16.0) if name == "composite" else HeatmapCodec(CROP_HW, stride=4)


def mirror(points: np.ndarray, width: int) -> np.ndarray:
    """Points (K, 2) of a horizontally mirrored picture, x -> width - 1 - x (pixel centres at integers), with the
    skeleton's left and right joints swapped: keypoint k of the mirror is the mirror of keypoint flip_index[k]."""
    out = np.asarray(points, dtype=np.float64)[SKELETON.flip_index].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def pose_in_crop(seed: int = 3) -> np.ndarray:
    """An asymmetric pose of 16 joints inside the crop (crop pixels)."""
    h, w = CROP_HW
    return np.random.default_rng(seed).uniform([6, 6], [w - 7, h - 7], (SKELETON.num_keypoints, 2))


class MirrorOracle(nn.Module):
    """Emits the targets of `pose` when the crop's left half is brighter, else those of its mirror."""

    def __init__(self, codec, pose: np.ndarray | None = None) -> None:
        super().__init__()
        pose = np.zeros((SKELETON.num_keypoints, 2)) if pose is None else pose
        self.register_buffer("facing", self._targets(codec, pose))
        self.register_buffer("mirrored", self._targets(codec, mirror(pose, CROP_HW[1])))
        self.bias = nn.Parameter(torch.zeros(()))  # a parameter, so that it is a model like any other
        self.name, self.num_keypoints = "oracle", SKELETON.num_keypoints

    @staticmethod
    def _targets(codec, pose: np.ndarray) -> torch.Tensor:
        encoded = codec.encode(pose, np.ones(len(pose)))
        maps = [encoded["heatmaps"], encoded["offsets"]] if "offsets" in encoded else [encoded["heatmaps"]]
        return torch.from_numpy(np.concatenate(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        left, right = x[..., : w // 2].mean(dim=(1, 2, 3)), x[..., w - w // 2 :].mean(dim=(1, 2, 3))
        return torch.where((left > right)[:, None, None, None], self.facing, self.mirrored) + self.bias


def _crop_facing_left() -> torch.Tensor:
    x = torch.full((1, 3, *CROP_HW), -1.0)
    x[..., : CROP_HW[1] // 2] = 1.0
    return x


@pytest.mark.parametrize("codec_name", ["composite", "heatmap"])
def test_the_posemodel_flip_test_gives_the_same_keypoints_and_mirrors(codec_name: str) -> None:
    codec, pose = _codec(codec_name), pose_in_crop()
    model = PoseModel(MirrorOracle(codec, pose), codec, SKELETON, CROP_HW)
    tol = TOLERANCE[codec_name]
    for crop, expected in ((_crop_facing_left(), pose), (_crop_facing_left().flip(-1), mirror(pose, CROP_HW[1]))):
        plain = model.decode(model.maps(crop, flip=False)[0])[0][0]
        flipped = model.decode(model.maps(crop, flip=True)[0])[0][0]
        np.testing.assert_allclose(flipped, plain, atol=tol, rtol=0)
        np.testing.assert_allclose(plain, expected, atol=2 * tol if codec_name == "heatmap" else tol, rtol=0)


def _image(height: int = 80, width: int = 60) -> np.ndarray:
    """A person picture whose left half is bright: the oracle faces left in its crop."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, : width // 2] = 200
    return image


def _image_tolerance(codec_name: str, image: np.ndarray) -> float:
    """TOLERANCE (crop pixels) in image pixels: a crop pixel spans box width x 1.25 / crop width image pixels."""
    h, w = image.shape[:2]
    center, scale = box_to_center_scale(np.array([0.0, 0.0, w, h]))
    affine = person_affine(center, scale, CROP_HW, 1.25)
    return TOLERANCE[codec_name] / float(np.hypot(*affine[0, :2])) + 1e-9


def _image_pose(image: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The oracle's pose (crop pixels) in image pixels, for a whole-image box."""
    h, w = image.shape[:2]
    center, scale = box_to_center_scale(np.array([0.0, 0.0, w, h]))
    return apply_affine(pose, invert_affine(person_affine(center, scale, CROP_HW, 1.25)))


@pytest.mark.parametrize("codec_name", ["composite", "heatmap"])
def test_the_predictor_flip_test_and_a_mirrored_image(codec_name: str) -> None:
    codec, pose = _codec(codec_name), pose_in_crop()
    pm = PoseModel(MirrorOracle(codec, pose), codec, SKELETON, CROP_HW)
    image = _image()
    tol = _image_tolerance(codec_name, image)
    width = image.shape[1]
    expected = _image_pose(image, pose)
    plain, flipped = (Predictor(pm, flip=f).predict(image)[0].keypoints for f in (False, True))
    np.testing.assert_allclose(flipped, plain, atol=tol, rtol=0)
    if codec_name == "composite":
        np.testing.assert_allclose(plain, expected, atol=tol, rtol=0)
    # the mirrored picture: the mirrored pose, left and right swapped (within the crop's pixel grid: the whole-image
    # box of a W-pixel image is centred at W / 2, the mirror axis at (W - 1) / 2, half a pixel apart)
    mirrored_image = np.ascontiguousarray(image[:, ::-1])
    for f in (False, True):
        got = Predictor(pm, flip=f).predict(mirrored_image)[0].keypoints
        if codec_name == "composite":
            np.testing.assert_allclose(got, mirror(plain, width), atol=1.0 + tol, rtol=0)
        else:  # each decode is within half a cell (2 crop pixels) of the truth: compare both with it
            np.testing.assert_allclose(plain, expected, atol=2 * tol, rtol=0)
            np.testing.assert_allclose(got, mirror(expected, width), atol=1.0 + 2 * tol, rtol=0)


# -- through `clpose eval` -----------------------------------------------------------------------------------------


def _records(root: Path, pose: np.ndarray) -> None:
    """Four pictures, two facing left and two mirrored, each one person with a whole-image box and ground truth at
    the oracle's pose: valid.json and train.json in the records format."""
    (root / "images").mkdir(parents=True)
    images, people = [], []
    for i in range(4):
        image = _image() if i % 2 == 0 else np.ascontiguousarray(_image()[:, ::-1])
        h, w = image.shape[:2]
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        truth = _image_pose(image, pose)
        if i % 2:
            truth = mirror(_image_pose(_image(), pose), w)
        center, scale = box_to_center_scale(np.array([0.0, 0.0, w, h]))
        images.append({"id": i, "file": f"{i}.png", "width": w, "height": h})
        people.append(
            {
                "image_id": i,
                "center": center.tolist(),
                "scale": scale.tolist(),
                "box_score": 1.0,
                "keypoints": [[float(x), float(y), 2] for x, y in truth],
                "box": [0.0, 0.0, float(w), float(h)],
                "extras": {"head_box": [0.0, 0.0, 30.0, 30.0]},
            }
        )
    for split in ("train", "valid"):
        records = {"format": "clpose-records", "version": 1, "dataset": "mpii", "skeleton": "mpii", "split": split}
        records |= {"image_root": "images", "sources": [], "images": images, "people": people}
        (root / f"{split}.json").write_text(json.dumps(records))


@pytest.mark.parametrize("codec_name", ["composite", "heatmap"])
def test_clpose_eval_with_and_without_flip_gives_the_same_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec_name: str
) -> None:
    codec, pose = _codec(codec_name), pose_in_crop()
    name = f"oracle_{codec_name}"
    divisor = 16 if codec_name == "composite" else 4
    build = lambda num_keypoints: MirrorOracle(codec)  # noqa: E731 (weights, i.e. the pose, come from the checkpoint)
    entry = ModelEntry(build, Options, codec_name, lambda o: codec.stride, lambda o: divisor)  # no options of its own
    monkeypatch.setitem(MODELS, name, entry)
    _records(tmp_path / "data", pose)
    raw = {
        "model": {"name": name},
        "codec": {"name": codec_name, "sigma": 16.0 if codec_name == "composite" else 2.0},
        "loss": {"name": "composite" if codec_name == "composite" else "heatmap_mse"},
        "data": {"dataset": "mpii", "root": str(tmp_path / "data"), "input_size": "64x48", "num_workers": 0},
        "eval": {"flip": True, "batch_size": 4},
    }
    recipe = recipe_from_dict(raw, name="oracle")
    write_checkpoint(tmp_path / "oracle.pt", recipe, MirrorOracle(codec, pose).state_dict(), "mpii", 16)
    predictions = {}
    for flip in ("--flip", "--no-flip"):
        out, table = tmp_path / f"p{flip}.npy", tmp_path / f"t{flip}.json"
        argv = ["eval", str(tmp_path / "oracle.pt"), flip, "--save-predictions", str(out), "--json", str(table)]
        result = CliRunner().invoke(app, [*argv, "--device", "cpu", "--amp", "off"])
        assert result.exit_code == 0, result.output
        predictions[flip] = np.load(out)
        assert json.loads(table.read_text())["Mean"] == 100.0
    tol = _image_tolerance(codec_name, _image())
    np.testing.assert_allclose(predictions["--flip"], predictions["--no-flip"], atol=tol, rtol=0)
    truth = np.array([p["keypoints"] for p in json.loads((tmp_path / "data" / "valid.json").read_text())["people"]])
    if codec_name == "composite":  # the facing pictures exactly; the mirrored ones within the half-pixel grid offset
        np.testing.assert_allclose(predictions["--flip"][0::2], truth[0::2, :, :2], atol=tol, rtol=0)
        np.testing.assert_allclose(predictions["--flip"][1::2], truth[1::2, :, :2], atol=1.0 + tol, rtol=0)
