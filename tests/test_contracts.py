"""The contracts between the parts: a codec's targets travel in their own namespace of the sample, the training row is
a typed record whose loss parts cannot overwrite its fields, and a section's keys belong to the entry it names."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from clpose.codecs import CompositeCodec
from clpose.data import TopDownDataset
from clpose.data.records import new_records
from clpose.errors import ClposeError
from clpose.recipes import recipe_from_dict
from clpose.skeletons import SYNTHETIC
from clpose.training.rows import EpochRow


class KeypointsTarget(CompositeCodec):
    """A codec whose target is named like a sample key: before the namespace it overwrote the sample's keypoints."""

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
        return {**super().encode(keypoints, visible), "keypoints": np.full((2,), 7.0, np.float32)}


def test_a_target_named_like_a_sample_key_does_not_replace_it(tmp_path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((200, 200, 3), np.uint8))
    kpts = np.zeros((16, 3))
    kpts[:, :2], kpts[:, 2] = [100.0, 80.0], 2  # every keypoint at the box's centre
    people = [{"image_index": 0, "center": [100.0, 80.0], "scale": [0.5, 1.0], "keypoints": kpts}]
    images = [{"id": 0, "file": "0.png", "width": 200, "height": 200}]
    records = new_records("synthetic", "synthetic", "valid", images, people, tmp_path, ["test"])
    sample = TopDownDataset(records, SYNTHETIC, KeypointsTarget((64, 48)), (64, 48), train=False)[0]
    assert sample["targets"]["keypoints"].tolist() == [7.0, 7.0]  # the codec's own
    assert sample["keypoints"].shape == (16, 2)  # the person's, at the crop's centre ((W - 1) / 2, (H - 1) / 2)
    assert sample["keypoints"][0].tolist() == pytest.approx([23.5, 31.5], abs=1e-4)
    assert set(sample["targets"]) == {"heatmaps", "offsets", "keypoint_weights", "keypoints"}


def test_the_row_keeps_metrics_jsonl_s_layout_and_reads_it_back() -> None:
    row = EpochRow(3, 0.25, {"heatmap": 0.1, "offset_y": 0.05}, 88.0, 0.1, 12, 9.5, 1e-3, "fp32", "off", "pck", 0.5,
                   1.0, {"Mean": 0.5})  # fmt: skip
    line = json.loads(json.dumps(row.to_json()))
    fields = ["samples_per_s", "data_wait", "steps", "seconds", "lr", "precision", "precision_reason", "metric"]
    assert list(line) == ["epoch", "loss", "heatmap", "offset_y", *fields, "value", "scale", "table", "warnings"]
    assert EpochRow.from_json(line) == row
    old = EpochRow.from_json({"epoch": 1, "loss": 0.3, "heatmap": 0.2, "metric": "pck", "value": None})  # an old row
    assert old.parts == {"heatmap": 0.2} and old.scale == 1.0 and not old.scored() and math.isnan(old.lr)


@pytest.mark.parametrize("part", ["lr", "epoch", "value", "warnings"])
def test_a_loss_part_named_like_a_row_field_is_refused_by_name(part: str) -> None:
    with pytest.raises(ClposeError, match=f"the loss returns a part named '{part}', the name of a field"):
        EpochRow.check_parts({"heatmap": 0.1, part: 0.2})
    row = EpochRow(1, 0.1, {part: 0.2})
    with pytest.raises(ClposeError, match=f"part named '{part}'"):
        row.to_json()


def test_the_train_step_moves_only_the_codecs_targets_from_their_namespace() -> None:
    from clpose.losses import build_loss
    from clpose.models import build_model
    from clpose.precision import FP32
    from clpose.training.loop import train_step
    from clpose.training.setup import Step

    recipe = recipe_from_dict({"model": {"name": "clnet_resnet10"}, "data": {"dataset": "synthetic", "root": "x"}})
    model = build_model("clnet_resnet10", 2)
    keys = ("heatmaps", "offsets", "keypoint_weights")
    loss = build_loss(recipe.loss, CompositeCodec((32, 32), 16))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step = Step(model, loss, torch.optim.SGD(model.parameters(), 0.0), scaler, torch.device("cpu"), FP32, keys)
    targets = {
        "heatmaps": torch.rand(2, 2, 2, 2),
        "offsets": torch.zeros(2, 4, 2, 2),
        "keypoint_weights": torch.ones(2, 2),
    }
    batch = {"image": torch.randn(2, 3, 32, 32), "targets": targets, "heatmaps": "not a target: outside the namespace"}
    assert torch.isfinite(train_step(step, batch, recipe.train)["loss"])
    with pytest.raises(ClposeError, match=r"the batch lacks the codec's targets offsets \(it has heatmaps, keypoint_w"):
        train_step(step, {**batch, "targets": {k: v for k, v in targets.items() if k != "offsets"}}, recipe.train)


OLD_DUMP = {  # the model, codec and loss sections as checkpoints before issue 34 embed them: every key of every entry
    "model": {"name": "simplebaseline_resnet18", "pretrained": None, "stride": None, "stacks": None},
    "codec": {
        "name": "heatmap",
        "sigma": None,
        "tau": 0.6,
        "target": "gaussian",
        "disk_radius": None,
        "dark": True,
        "decode": "weighted",
        "sigma_rule": "fixed",
    },
    "loss": {"name": "heatmap_mse", "w_h": 0.5, "w_o": 2.0, "region": "pred"},
    "data": {"dataset": "synthetic", "root": "x"},
}


def test_a_recipe_an_older_clpose_wrote_out_in_full_still_loads(capsys) -> None:
    recipe = recipe_from_dict(OLD_DUMP, "old.pt")
    assert (recipe.codec.sigma, recipe.codec.dark) == (2.0, True)  # null sigma: the codec's default
    assert not hasattr(recipe.codec, "tau") and not hasattr(recipe.loss, "region") and recipe.loss.w_h == 0.5
    assert capsys.readouterr().err == ""  # the other entries' keys held their old defaults: nothing to say
    composite = {**OLD_DUMP["codec"], "name": "composite", "dark": True}
    loss = {**OLD_DUMP["loss"], "name": "composite"}
    model = {**OLD_DUMP["model"], "name": "clnet_resnet18"}
    recipe = recipe_from_dict({**OLD_DUMP, "model": model, "codec": composite, "loss": loss}, "old.pt")
    assert recipe.codec.sigma == 16.0 and recipe.loss.region == "pred"
    said = capsys.readouterr().err
    assert "old.pt: codec.dark True is not an option of the composite codec; it had no effect and is dropped" in said


def test_a_key_of_another_codec_in_a_users_recipe_is_refused_by_name() -> None:
    data = {"model": {"name": "clnet_resnet18"}, "data": {"dataset": "synthetic", "root": "x"}}
    with pytest.raises(ClposeError, match=r"^r.yaml: codec.dark is an option of the heatmap codec, not of codec "):
        recipe_from_dict({**data, "codec": {"name": "composite", "dark": True}}, "r.yaml")
    with pytest.raises(ClposeError, match=r"codec.tau is an option of the composite codec, not of codec 'heatmap'"):
        recipe_from_dict(
            {**data, "model": {"name": "simplebaseline_resnet18"}, "codec": {"name": "heatmap", "tau": 0.5}}
        )
    with pytest.raises(ClposeError, match=r"loss.region is an option of the composite loss, not of loss 'heatmap_mse'"):
        recipe_from_dict({**data, "codec": {"name": "heatmap"}, "loss": {"name": "heatmap_mse", "region": "gt"}})


def test_a_misspelt_key_left_null_is_still_refused_and_another_entrys_lists_all_its_owners() -> None:
    data = {"model": {"name": "simplebaseline_resnet18"}, "data": {"dataset": "synthetic", "root": "x"}}
    with pytest.raises(ClposeError, match=r"unknown key codec.sigmaa \(did you mean codec.sigma\?\)"):
        recipe_from_dict({**data, "codec": {"name": "heatmap", "sigmaa": None}})
    assert recipe_from_dict({**data, "codec": {"name": "heatmap", "tau": None}, "loss": {"name": "heatmap_mse"}})
    with pytest.raises(ClposeError, match=r"loss.w_o is an option of the composite, peak_mse and grmi losses, not of"):
        recipe_from_dict({**data, "codec": {"name": "heatmap"}, "loss": {"name": "heatmap_mse", "w_o": 1.0}})
