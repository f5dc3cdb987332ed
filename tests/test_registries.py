"""Extension points are one registration each, made here without editing anything under clpose/: a toy codec with two
options of its own and its own target key, its own loss with a part of its own, a toy model with an option, a toy
metric with its own prediction-file format, a toy dataset and a toy runtime, each used through the real commands. And
every registered codec's declared target keys reach the loss on the training device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error
from torch import nn
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.codecs import CODECS, CodecEntry
from clpose.config import Options, option
from clpose.data.prepare import run_prepare
from clpose.evaluation.metrics import METRICS, Metric, Predictions, ScoreOptions
from clpose.losses import LOSSES, LossEntry, LossPart
from clpose.models import MODELS, ModelEntry
from clpose.recipes import recipe_from_dict

runner = CliRunner()
STRIDE = 8


@dataclass
class ArgmaxCellOptions(Options):
    """The toy codec's two options."""

    name: str = "argmax_cell"
    smoothing: float = option(0.0, "share of the target spread over every cell", check="[0, 1)")
    score_power: float = option(1.0, "a keypoint's score is its cell's value to this power", check="> 0")


class ArgmaxCellCodec:
    """A toy codec: one map per keypoint, 1 - smoothing at the keypoint's cell plus smoothing spread over the map
    ("cells"), decoded as the arg-max cell's centre with the cell's value ** score_power as the score."""

    tau = None

    def __init__(self, input_hw: tuple[int, int], stride: int, options: ArgmaxCellOptions) -> None:
        self.input_hw, self.stride = (int(input_hw[0]), int(input_hw[1])), int(stride)
        self.heatmap_hw = (self.input_hw[0] // stride, self.input_hw[1] // stride)
        self.smoothing, self.score_power = options.smoothing, options.score_power

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
                cells[k] = self.smoothing / (hp * wp)
                cells[k, i, j] += 1.0 - self.smoothing
                weights[k] = 1.0
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
        return torch.stack([x, y], dim=-1), scores.clamp_min(0) ** self.score_power

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

    @staticmethod
    def build(options: ArgmaxCellOptions, input_hw: tuple[int, int], stride: int) -> ArgmaxCellCodec:
        return ArgmaxCellCodec(input_hw, stride, options)


@dataclass
class CellCEOptions(Options):
    """The toy loss's option."""

    temperature: float = option(1.0, "the logits are divided by it", check="> 0")


class CellCrossEntropy(nn.Module):
    """The toy codec's loss: cross-entropy of each labelled keypoint's cell over the map, at a temperature."""

    def __init__(self, temperature: float = CellCEOptions.temperature) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, output: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cells, weights = targets["cells"], targets["keypoint_weights"]
        logits = output.float().flatten(2) / self.temperature
        ce = -(torch.log_softmax(logits, -1) * cells.flatten(2)).sum(-1)
        loss = (ce * weights).sum() / weights.sum().clamp_min(1)
        return {"loss": loss, "ce": loss}


@dataclass
class ToyNetOptions(Options):
    width: int = option(8, "channels of the hidden layer", check=">= 1")


class ToyNet(nn.Module):
    """A toy model: two convolutions down to stride 8, one map per keypoint."""

    num_stages = 1

    def __init__(self, num_keypoints: int, width: int = ToyNetOptions.width) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(width, num_keypoints, 3, 2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


CE_COLOR = (10, 200, 250)  # BGR: the toy loss part's curve


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The three registrations, one call each."""
    monkeypatch.setitem(
        CODECS,
        "argmax_cell",
        CodecEntry(ArgmaxCellOptions, ArgmaxCellCodec.build, 1, ("cells", "keypoint_weights"), "cell_ce"),
    )
    build = lambda cfg, codec: CellCrossEntropy(cfg.temperature)  # noqa: E731
    entry = LossEntry(CellCEOptions, build, ("argmax_cell",), {"ce": LossPart("", CE_COLOR)})
    monkeypatch.setitem(LOSSES, "cell_ce", entry)
    monkeypatch.setitem(
        MODELS, "toy_cells", ModelEntry(ToyNet, ToyNetOptions, "argmax_cell", lambda o: STRIDE, lambda o: STRIDE)
    )


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


def test_recipes_refuse_names_no_registry_holds(monkeypatch, tmp_path: Path, data: Path) -> None:
    """Without the registrations the same recipe names a model, then (the model registered) a codec that does not
    exist."""
    from clpose.errors import ClposeError
    from clpose.recipes import load_recipe

    with pytest.raises(ClposeError, match=r"model\.name: expected one of 'clnet_resnet10', .*got 'toy_cells'"):
        load_recipe(_recipe(tmp_path, data))
    toy = ModelEntry(ToyNet, ToyNetOptions, "argmax_cell", lambda o: STRIDE, lambda o: STRIDE)
    monkeypatch.setitem(MODELS, "toy_cells", toy)
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


# ----------------------------------------------------------------------------------------------------------------------
# each entry owns its options: set from a recipe, checked by name, drawn and read where the entry says


def _toy_recipe(tmp_path: Path, data: Path, codec: str = "", model: str = "", epochs: int = 1, loss: str = "") -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(
        f"model: {{name: toy_cells{model}}}\ncodec: {{name: argmax_cell{codec}}}\nloss: {{name: cell_ce{loss}}}\n"
        f"data: {{dataset: synthetic, root: {data}, input_size: 64x64, num_workers: 0}}\n"
        f"train: {{epochs: {epochs}, batch_size: 4, amp: off}}\neval: {{batch_size: 4}}\n"
    )
    return path


def test_a_toy_codecs_and_models_own_options_come_from_the_recipe_and_are_checked_by_name(
    toys, tmp_path: Path, data: Path
) -> None:
    from clpose.engine.posemodel import recipe_codec
    from clpose.losses import build_loss
    from clpose.models import build_model, model_options
    from clpose.recipes import load_recipe

    recipe = load_recipe(
        _toy_recipe(tmp_path, data, ", smoothing: 0.5, score_power: 2.0", ", width: 3", loss=", temperature: 2.0")
    )
    codec = recipe_codec(recipe)
    assert build_loss(recipe.loss, codec).temperature == 2.0
    assert (codec.smoothing, codec.score_power) == (0.5, 2.0)
    cells = codec.encode(np.array([[20.0, 36.0]]), np.ones(1))["cells"][0]  # cell (4, 2) of the 8 x 8 map
    assert cells[4, 2] == pytest.approx(0.5 + 0.5 / 64) and cells[0, 0] == pytest.approx(0.5 / 64)
    _, scores = codec.decode(torch.from_numpy(cells)[None, None])
    assert scores.item() == pytest.approx((0.5 + 0.5 / 64) ** 2)
    assert build_model("toy_cells", 2, **model_options(recipe.model)).body[0].out_channels == 3
    assert load_recipe(_toy_recipe(tmp_path, data)).codec.smoothing == 0.0  # the option's own default
    for extra, said in [
        (", smoothing: 1.0", "codec.smoothing must be in [0, 1), got 1.0"),
        (", score_power: 0", "codec.score_power must be > 0, got 0"),
        (", tau: 0.5", "codec.tau is an option of the composite codec, not of codec 'argmax_cell'"),
        (", smothing: 0.1", "unknown key codec.smothing (did you mean codec.smoothing?)"),
    ]:
        result = runner.invoke(app, ["train", str(_toy_recipe(tmp_path, data, extra)), "--out", str(tmp_path / "r")])
        one_line_error(result, said)
    result = runner.invoke(app, ["train", str(_toy_recipe(tmp_path, data, model=", width: 0")), "--out", str(tmp_path)])
    one_line_error(result, "model.width must be >= 1, got 0")
    result = runner.invoke(
        app, ["train", str(_toy_recipe(tmp_path, data, loss=", temperature: 0")), "--out", str(tmp_path)]
    )
    one_line_error(result, "loss.temperature must be > 0, got 0.0")
    result = runner.invoke(
        app, ["train", str(_toy_recipe(tmp_path, data)), "--out", str(tmp_path / "r"), "--set", "codec.dark=true"]
    )
    one_line_error(result, "--set codec.dark=true: codec.dark is an option of the heatmap codec, not of codec")


def test_a_toy_loss_part_is_drawn_in_curves_png(toys, tmp_path: Path, data: Path) -> None:
    import cv2

    result = runner.invoke(app, ["train", str(_toy_recipe(tmp_path, data, epochs=2)), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    curves = cv2.imread(str(tmp_path / "run" / "curves.png"))
    left = curves[:, : curves.shape[1] // 2]  # the loss panel
    assert (left == CE_COLOR).all(-1).sum() >= 20  # its two points (filled circles), its line and its legend


def _mean_error_file(predictions: Path, annotations: Path, o: ScoreOptions) -> dict:
    """The toy metric's own file format: one line "x y" per keypoint, against an .npy of (N, K, 3) ground truth."""
    gt = np.load(annotations)
    rows = [line.split() for line in predictions.read_text().splitlines() if line.strip()]
    pred = np.array(rows, dtype=float).reshape(gt.shape[0], gt.shape[1], 2)
    labelled = gt[..., 2] > 0
    return {"MPE": float(np.linalg.norm(pred - gt[..., :2], axis=-1)[labelled].mean()), "metric": "mpe"}


def test_a_toy_metric_scores_its_own_prediction_file_format(monkeypatch, tmp_path: Path) -> None:
    metric = Metric("mpe", "mean pixel error", ("MPE",), "MPE", None, 1.0, _mean_pixel_error, _mean_error_file, False)
    monkeypatch.setitem(METRICS, "mpe", metric)
    gt = np.array([[[10.0, 20.0, 2.0], [30.0, 40.0, 2.0], [0.0, 0.0, 0.0]]])
    np.save(tmp_path / "gt.npy", gt)
    (tmp_path / "pred.txt").write_text("13 24\n30 40\n99 99\n")  # 5 px off, exact, unlabelled
    out = tmp_path / "mpe.json"
    args = ["eval", "--predictions", str(tmp_path / "pred.txt"), "--annotations", str(tmp_path / "gt.npy")]
    result = runner.invoke(app, [*args, "--metric", "mpe", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["MPE"] == 2.5


class CountingRunner:
    """The toy runtime: ONNX Runtime underneath, counting the batches it ran."""

    autocast, last_stage_only = False, True
    batches = 0

    def __init__(self, graph: Path, threads: int, precision) -> None:
        from clpose.engine.runners import OnnxRuntimeRunner

        self.inner, self.name = OnnxRuntimeRunner(graph, threads), "toy counting runtime"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        CountingRunner.batches += 1
        return self.inner(x)


def test_a_toy_runtime_is_a_choice_of_every_runtime_option_and_runs_the_network(
    monkeypatch, tmp_path: Path, data: Path
) -> None:
    pytest.importorskip("onnxruntime", reason="the toy runtime runs ONNX Runtime underneath")
    pytest.importorskip("onnxscript", reason="the graph is exported with the deploy extra")
    from clpose.engine.runtime_names import RUNTIMES, RuntimeEntry

    monkeypatch.setitem(RUNTIMES, "toy", RuntimeEntry("the graph, batches counted", "onnxruntime", CountingRunner))
    from typer.main import get_command

    commands = get_command(app).commands  # the click commands as typer builds them for a run (help and choices)
    options = {c: next(p for p in commands[c].params if p.name == "runtime") for c in ("infer", "eval", "bench")}
    for command, param in options.items():
        assert "toy" in param.metavar.strip("[]").split("|"), command
    assert "toy: the graph, batches counted" in options["infer"].help and "toy, or all" in options["bench"].help
    export = next(p for p in commands["export"].params if p.name == "runtime")  # --int8's: no int8 path, no choice
    assert "toy" not in export.metavar and "openvino" in export.metavar
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{name: clnet_resnet10}}\ndata: {{dataset: synthetic, root: {data}, input_size: 64x64, "
        "num_workers: 0}\ntrain: {epochs: 1, batch_size: 4, amp: off}\neval: {batch_size: 4, flip: false}\n"
    )
    assert runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")]).exit_code == 0
    scores = {}
    for name in ("torch", "toy"):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--runtime", name, "--json", str(out)])
        assert result.exit_code == 0, result.output
        scores[name] = json.loads(out.read_text())
    assert CountingRunner.batches >= 1 and scores["toy"]["settings"]["runtime"]["runtime"] == "toy"
    assert scores["toy"]["Mean"] == pytest.approx(scores["torch"]["Mean"], abs=0.5)
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "run"), "--runtime", "toyy"]),
                   "--runtime 'toyy': unknown (did you mean toy?)")  # fmt: skip


def test_a_toy_dataset_is_prepared_and_scored_with_the_metric_its_entry_names(
    toys, toy_metric, monkeypatch, tmp_path: Path
) -> None:
    import dataclasses

    from clpose.data.prepare import DATASETS, DatasetEntry

    def convert(args, report):
        records, tables = DATASETS["synthetic"].convert(args, report)
        return {split: dataclasses.replace(r, dataset="toyset") for split, r in records.items()}, tables

    monkeypatch.setitem(DATASETS, "toyset", DatasetEntry(convert, "mpe", download=False, splits=("train", "valid")))
    root = tmp_path / "toyset"
    result = runner.invoke(
        app, ["prepare", "toyset", "--root", str(root), "--train", "8", "--val", "4", "--size", "64"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "toy.yaml"
    path.write_text(_toy_recipe(tmp_path, root).read_text().replace("dataset: synthetic", "dataset: toyset"))
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["metric"] == "mpe"  # eval.metric auto: the dataset's entry names it


def test_docs_recipes_lists_each_registered_codecs_and_losss_own_keys(toys) -> None:
    from clpose.recipes import reference

    text = reference()
    assert "### codec `argmax_cell`" in text and "| `codec.smoothing` | number | [0, 1) | `0.0` |" in text
    assert "### model `toy_cells`" in text and "| `model.width` | integer | >= 1 | `8` |" in text
    assert "### loss `cell_ce`" in text and "| `loss.temperature` | number | > 0 | `1.0` |" in text
