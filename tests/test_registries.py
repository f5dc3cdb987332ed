"""Extension points are one registration each, made here without editing anything under clpose/: a toy codec with its
own target key and its own loss, a toy model, and a toy metric, each used through the real commands. And every
registered codec's declared target keys reach the loss on the training device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error
from torch import nn
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.codecs import CODECS, CodecEntry
from clpose.config import recipe_from_dict
from clpose.data.prepare import run_prepare
from clpose.evaluation.metrics import METRICS, Metric, Predictions, ScoreOptions
from clpose.losses import LOSSES, LossEntry
from clpose.models import MODELS, ModelEntry

runner = CliRunner()
STRIDE = 8


class ArgmaxCellCodec:
    """A toy codec: one map per keypoint, 1 at the keypoint's cell ("cells"), decoded as the arg-max cell's centre."""

    tau = None

    def __init__(self, input_hw: tuple[int, int], stride: int) -> None:
        self.input_hw, self.stride = (int(input_hw[0]), int(input_hw[1])), int(stride)
        self.heatmap_hw = (self.input_hw[0] // stride, self.input_hw[1] // stride)

    @property
    def channels_per_keypoint(self) -> int:
        return 1

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
        hp, wp = self.heatmap_hw
        cells = np.zeros((len(keypoints), hp, wp), np.float32)
        weights = np.zeros(len(keypoints), np.float32)
        for k, ((x, y), v) in enumerate(zip(keypoints, visible, strict=True)):
            j, i = int(x // self.stride), int(y // self.stride)
            if v > 0 and 0 <= i < hp and 0 <= j < wp:
                cells[k, i, j], weights[k] = 1.0, 1.0
        return {"cells": cells, "keypoint_weights": weights}

    def encode_batch(self, keypoints: torch.Tensor, visible: torch.Tensor) -> dict[str, torch.Tensor]:
        out = [self.encode(k.cpu().numpy(), v.cpu().numpy()) for k, v in zip(keypoints, visible, strict=True)]
        return {key: torch.from_numpy(np.stack([o[key] for o in out])).to(keypoints.device) for key in out[0]}

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor]:
        return (output,)

    def decode(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k, _, wp = maps.shape
        scores, idx = maps.reshape(n, k, -1).max(-1)
        x = (idx % wp).float() * self.stride + self.stride / 2
        y = torch.div(idx, wp, rounding_mode="floor").float() * self.stride + self.stride / 2
        return torch.stack([x, y], dim=-1), scores

    def decode_output(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(output)

    def decode_targets(self, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(targets["cells"][None])

    def flip_back(self, output: torch.Tensor, flip_index: list[int]) -> torch.Tensor:
        return output.flip(-1)[:, torch.as_tensor(flip_index, device=output.device)]

    def target_map(self, targets: dict[str, torch.Tensor], k: int) -> np.ndarray:
        return targets["cells"][k].numpy()

    def votes(self, targets: dict[str, torch.Tensor], k: int) -> list:
        return []


class CellCrossEntropy(nn.Module):
    """The toy codec's loss: cross-entropy of each labelled keypoint's cell over the map."""

    def forward(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cells, weights = targets["cells"], targets["keypoint_weights"]
        logits = output.float().flatten(2)
        ce = -(torch.log_softmax(logits, -1) * cells.flatten(2)).sum(-1)
        loss = (ce * weights).sum() / weights.sum().clamp_min(1)
        return {"loss": loss, "ce": loss}


class ToyNet(nn.Module):
    """A toy model: two convolutions down to stride 8, one map per keypoint."""

    codec, num_stages, stride = "argmax_cell", 1, STRIDE

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, num_keypoints, 3, stride=2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The three registrations, one call each."""
    monkeypatch.setitem(
        CODECS,
        "argmax_cell",
        CodecEntry(lambda cfg, hw, stride: ArgmaxCellCodec(hw, stride), 1, ("cells", "keypoint_weights"), "cell_ce"),
    )
    monkeypatch.setitem(LOSSES, "cell_ce", LossEntry(lambda cfg, tau: CellCrossEntropy(), ("argmax_cell",)))
    monkeypatch.setitem(MODELS, "toy_cells", ModelEntry(ToyNet, (), "argmax_cell", lambda o: STRIDE, lambda o: STRIDE))


def _mean_pixel_error(dataset, preds: Predictions, o: ScoreOptions) -> tuple[dict, None]:
    gt = dataset.records.keypoints[preds.indices]
    labelled = gt[..., 2] > 0
    err = np.linalg.norm(preds.keypoints[o.stage] - gt[..., :2], axis=-1)[labelled]
    return {"MPE": float(err.mean()), "metric": "mpe", "people": len(gt)}, None


@pytest.fixture
def toy_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    # models only: no scorer for --predictions files
    metric = Metric("mpe", "mean pixel error", ("MPE",), "MPE", None, 1.0, _mean_pixel_error, None, False)
    monkeypatch.setitem(METRICS, "mpe", metric)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toys")
    run_prepare("synthetic", root, root, synthetic={"train": 8, "val": 4, "size": 64, "workers": 1}, show=False)
    return root


def _recipe(tmp_path: Path, data: Path, metric: str = "auto") -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(
        "model: {name: toy_cells}\ncodec: {name: argmax_cell}\nloss: {name: cell_ce}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}\n"
        f"train: {{epochs: 1, batch_size: 4, amp: off}}\neval: {{batch_size: 4, metric: {metric}}}\n"
    )
    return path


def test_a_toy_codec_loss_and_model_train_and_evaluate(toys, tmp_path: Path, data: Path) -> None:
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, data)), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["steps"] == 2 and row["ce"] > 0 and row["metric"] == "pck"  # its own loss part, the dataset's metric
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json", str(out), "--amp", "off"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["Mean"] == row["value"]  # best.pt rebuilt through the registries
    pictures = tmp_path / "vis"
    result = runner.invoke(app, ["vis", "targets", str(_recipe(tmp_path, data)), "--num", "1", "--out", str(pictures)])
    assert result.exit_code == 0, result.output  # vis colours the codec's own map ("cells", not "heatmaps")
    assert len(list(pictures.glob("targets_train_*.png"))) == 1


def test_a_toy_metric_is_a_choice_of_eval_and_recipes_and_prints_its_table(
    toys, toy_metric, tmp_path: Path, data: Path
) -> None:
    result = runner.invoke(app, ["train", str(_recipe(tmp_path, data, "mpe")), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output  # eval.metric: mpe is a valid recipe value
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["metric"] == "mpe" and (tmp_path / "run" / "best.pt").is_file()  # lower is better: still saved
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--metric", "mpe", "--json", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the table's title wraps to the width of its one column
    assert "mean pixel error" in said and "┃ MPE ┃" in said
    assert json.loads(out.read_text())["MPE"] == pytest.approx(row["value"])
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "run"), "--metric", "mp"]),
                   "--metric 'mp': unknown (did you mean mpe?); valid: pck, pckh, oks, mpe")  # fmt: skip
    files = ["eval", "--metric", "mpe", "--predictions", str(out), "--annotations", str(out)]
    one_line_error(runner.invoke(app, files), "--metric mpe scores a checkpoint's predictions only")


def test_recipes_refuse_names_no_registry_holds(tmp_path: Path, data: Path) -> None:
    """Without the registrations the same recipe names a codec that does not exist."""
    from clpose.config import load_recipe
    from clpose.errors import ClposeError

    with pytest.raises(ClposeError, match=r"codec\.name: expected one of 'composite', 'heatmap', got 'argmax_cell'"):
        load_recipe(_recipe(tmp_path, data))


@pytest.mark.parametrize("codec_name", ["composite", "heatmap", "argmax_cell"])
def test_every_codecs_declared_targets_reach_the_loss_on_the_training_device(
    toys, codec_name: str, tmp_path: Path, data: Path
) -> None:
    """The trainer moves what the codec declares (CodecEntry.target_keys): a new codec's targets are not dropped."""
    from clpose.engine import distributed
    from clpose.training.loop import train_step
    from clpose.training.setup import build_setup

    entry = CODECS[codec_name]
    model = {"composite": "clnet_resnet18", "heatmap": "simplebaseline_resnet18", "argmax_cell": "toy_cells"}
    raw = {
        "model": {"name": model[codec_name]},
        "codec": {"name": codec_name},
        "loss": {"name": entry.default_loss},
        "data": {"dataset": "synthetic", "root": str(data), "input_size": "64x64", "num_workers": 0},
        "train": {"batch_size": 4, "amp": "off"},
    }
    setup = build_setup(recipe_from_dict(raw), distributed.Dist(), torch.device("cpu"))
    seen: dict[str, torch.device] = {}
    real = setup.step.loss_fn

    def spy(output, targets):
        seen.update({k: v.device for k, v in targets.items()})
        return real(output, targets)

    setup.step.loss_fn = spy
    batch = next(iter(setup.loader))
    parts = train_step(setup.step, batch, recipe_from_dict(raw).train)
    assert set(seen) == set(entry.target_keys) and all(d == setup.device for d in seen.values())
    assert torch.isfinite(parts["loss"])
