"""`--int8` (clpose.engine.int8): NNCF's int8 graph of a checkpoint, calibrated on real crops, checked against fp32
on held-out crops every time it is made, refused (or its head kept in float) past the budget, cached beside the
checkpoint by what it depends on, made once by concurrent processes, and run by infer, eval, bench and export.

The budget's decisions are tested with planted quantisations and exact numbers; the happy paths (a tiny network
trained for one epoch, whose keypoints sit on near-ties a CPU's int8 kernels may break either way) run with a wide
budget, since what they test is the plumbing, not this network's accuracy."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import fit_recipe, one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine import int8 as int8_module
from clpose.engine.calibration import default_calibration, spread
from clpose.engine.int8 import LADDER, SMOOTHING, CheckSet, Rung, head_nodes
from clpose.engine.posemodel import PoseModel
from clpose.engine.runners import distribution_version
from clpose.engine.runtimes import installed, use_runtime
from clpose.errors import ClposeError
from clpose.precision import Precision

pytest.importorskip("nncf", reason="--int8 needs the deploy extra: pip install 'clpose[deploy]'")
pytest.importorskip("onnxscript", reason="--int8 needs the deploy extra: pip install 'clpose[deploy]'")
RUNTIME = "openvino" if installed("openvino") else "onnxruntime"
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLNet-ResNet-10 trained for one epoch on synthetic people (64x64)."""
    root = tmp_path_factory.mktemp("int8")
    run_prepare("synthetic", root, root, synthetic={"train": 24, "val": 8, "size": 96, "workers": 1}, show=False)
    recipe = (
        f"model: {{name: clnet_resnet10}}\ndata: {{dataset: synthetic, root: {root}, input_size: 64x64, "
        "num_workers: 0}\ntrain: {epochs: 1, batch_size: 8}\neval: {batch_size: 4}\n"
    )
    run = fit_recipe(root / "r.yaml", recipe, root / "run")
    from clpose.engine.graph_cache import cached_graph

    cached_graph(run / "best.pt", PoseModel.from_checkpoint(run / "best.pt", amp="off"))  # its fp32 graph, once
    return run


@pytest.fixture
def wide_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int8_module, "INT8_BUDGET", 100.0)
    monkeypatch.setattr(int8_module, "INT8_RELATIVE_BUDGET", 100.0)
    monkeypatch.setattr(int8_module, "DISPLACEMENT_BUDGET", 10.0)


@pytest.fixture
def checkpoint(run: Path, tmp_path: Path) -> Path:
    """A copy of the run in a folder of the test's own (its cache/ starts empty), its data where the recipe says."""
    folder = tmp_path / "run"
    (folder / "cache").mkdir(parents=True)
    for name in ("best.pt", "metrics.jsonl", "run.json"):
        (folder / name).write_bytes((run / name).read_bytes())
    for graph in (run / "cache").glob("best-*.*"):  # the fp32 graph (not exported again in every test)
        if ".int8." not in graph.name:
            (folder / "cache" / graph.name).write_bytes(graph.read_bytes())
    return folder / "best.pt"


def checkpoint_data(checkpoint: Path) -> str:
    return torch.load(checkpoint, weights_only=False)["recipe"]["data"]["root"]


def _count_quantisations(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    made: list[bool] = []
    real = int8_module.quantize_graph

    def counted(fp32, crops, out, rung):
        made.append(rung.head_in_float)
        return real(fp32, crops, out, rung)

    monkeypatch.setattr(int8_module, "quantize_graph", counted)
    return made


def test_eval_int8_says_int8_its_calibration_and_its_check(checkpoint: Path, tmp_path: Path, wide_budget) -> None:
    out = tmp_path / "e.json"
    result = runner.invoke(app, ["eval", str(checkpoint), "--runtime", RUNTIME, "--int8", "--json", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "quantising the network to int8 with NNCF" in said and "int8 check on 8 held-out crops" in said
    runtime = json.loads(out.read_text())["settings"]["runtime"]
    assert runtime["runtime"] == RUNTIME and runtime["precision"] == "int8"
    info = runtime["int8"]
    assert info["calibration"].startswith("people of ") and info["calibration"].endswith(
        "train.json, cropped as evaluation does"
    )
    assert info["calibration_crops"] == 24  # all 24 training people (fewer than 300)
    check = info["check"]
    assert check["metric"] == "pck" and check["crops"] == 8 and check["passed"] is True
    assert check["source"].endswith("valid.json") and set(check["displacement_px"]) >= {"median", "p95", "worst"}
    assert check["fp32"] == pytest.approx(json.loads(out.read_text())["Mean"], abs=100)  # a PCK, on its scale
    graph = Path(info["graph"])
    assert graph.parent == checkpoint.parent / "cache" and graph.name.endswith(".int8.onnx")
    record = json.loads(graph.with_suffix(".json").read_text())
    assert record["calibration"]["count"] == 24 and record["check"] == check and record["head_in_float"] is False
    assert record["smoothing"] is None and record["earlier_tries"] == []
    assert record["versions"]["nncf"] == distribution_version("nncf")


def test_the_graph_is_cached_by_what_it_depends_on(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wide_budget
) -> None:
    """Made once; other checkpoint bytes or other calibration crops make another; a graph planted in the run folder
    (even with its record) is checked before it runs."""
    made = _count_quantisations(monkeypatch)
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    first = Path(use_runtime(pose, checkpoint, RUNTIME, 1, int8=True).int8["graph"])
    again = Path(use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
                 .int8["graph"])  # fmt: skip
    assert again == first and made == [False]
    images = tmp_path / "images"
    images.mkdir()
    _people_pictures(images, 12)
    from clpose.inference.calibration import path_calibration, whole_frames

    other = use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True,
                        calibration=path_calibration(images, whole_frames, "whole"))  # fmt: skip
    assert Path(other.int8["graph"]) != first and made == [False, False]
    state = torch.load(checkpoint, weights_only=False)
    state["epoch"] = 9  # other bytes
    torch.save(state, checkpoint)
    newer = use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
    assert Path(newer.int8["graph"]) != first and made == [False, False, False]


def test_a_planted_int8_graph_is_checked_before_it_runs(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wide_budget
) -> None:
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    graph = Path(use_runtime(pose, checkpoint, RUNTIME, 1, int8=True).int8["graph"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-user"))  # the user's record of checks: empty
    checked = []
    real = int8_module.run_check
    monkeypatch.setattr(int8_module, "run_check", lambda *a, **k: checked.append(1) or real(*a, **k))
    use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
    assert checked == [1] and graph.is_file()
    use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
    assert checked == [1]  # remembered for this user


def test_a_graph_checked_with_other_int8_kernels_is_checked_again(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, wide_budget
) -> None:
    """A cache shared by CPUs with other int8 kernels (a home folder on a cluster's VNNI and AVX2 nodes): the same
    graph scores differently in VNNI's and AVX2's kernels (docs/benchmarks.md), so a check made with one set is not
    taken for the other."""
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    use_runtime(pose, checkpoint, RUNTIME, 1, int8=True)
    checked = []
    real = int8_module.run_check
    monkeypatch.setattr(int8_module, "run_check", lambda *a, **k: checked.append(1) or real(*a, **k))
    use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
    assert checked == []  # the same kernels: remembered
    other = Precision("int8", "--int8", "NNCF post-training quantisation; other int8 kernels")
    monkeypatch.setattr(int8_module, "int8_precision", lambda: other)
    use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)
    assert checked == [1]


def _plant(monkeypatch: pytest.MonkeyPatch, fixed_by: Rung | None) -> list[Rung]:
    """Plant the quantisation: the int8 graph is the fp32 graph whose map-writing convolution has lost its weights
    (its maps are its bias alone: every keypoint in one place), as a head quantised with a wrong range would be; made
    by the rung `fixed_by` (None: by none) it is the fp32 graph itself. Returns the rungs tried."""
    import onnx
    from onnx import numpy_helper

    made: list[Rung] = []

    def planted(fp32, crops, out, rung):
        made.append(rung)
        model = onnx.load(str(fp32))
        (head,) = head_nodes(model)
        if rung != fixed_by:
            weight = next(n for n in model.graph.node if n.name == head).input[1]
            tensor = next(t for t in model.graph.initializer if t.name == weight)
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), weight))
        onnx.save(model, str(out))
        return [head] if rung.head_in_float else []

    monkeypatch.setattr(int8_module, "quantize_graph", planted)
    return made


@pytest.fixture
def random_net(run: Path, tmp_path: Path) -> tuple[Path, CheckSet]:
    """A CLNet-ResNet-10 of random weights (its maps follow its input, unlike a network trained for one epoch, which
    predicts one pose for everybody) and a check set labelled with its own fp32 keypoints: fp32 scores PCK 100, and
    any graph that moves keypoints scores less."""
    from helpers import write_checkpoint

    from clpose.data import dataset_from_records, load_split
    from clpose.engine.predict import predict
    from clpose.evaluation.metrics import ScoreOptions, get_metric

    trained = PoseModel.from_checkpoint(run / "best.pt", amp="off")
    torch.manual_seed(0)
    model = type(trained.model)(10, 16)
    path = write_checkpoint(tmp_path / "net" / "best.pt", trained.recipe, model.state_dict(), "synthetic", 16)
    pose = PoseModel.from_checkpoint(path, amp="off")
    records = load_split(pose.recipe, "valid")
    dataset = dataset_from_records(pose.recipe, records, False, pose.codec)
    records.keypoints[:, :, :2] = predict(pose, dataset, 8, flip=False).keypoints[-1]
    records.keypoints[:, :, 2] = 2
    labelled = dataset_from_records(pose.recipe, records, False, pose.codec)
    return path, CheckSet("8 people labelled with fp32's keypoints", labelled, get_metric("pck"), ScoreOptions())


def _planted_calibration(check_set: CheckSet) -> object:
    crops = torch.zeros(4, 3, 64, 64)
    return lambda pose: int8_module.Calibration("planted", "planted", 4, lambda: (crops, check_set))


def test_a_graph_past_the_budget_keeps_its_head_in_float(
    random_net: tuple[Path, CheckSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try misses the budget (PCK 100 -> far less: every keypoint moved); the second keeps the layers that
    write the maps in float and is used, and the record says so."""
    checkpoint, check_set = random_net
    made = _plant(monkeypatch, fixed_by=LADDER[1])
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    info = use_runtime(pose, checkpoint, RUNTIME, 1, int8=True, calibration=_planted_calibration(check_set))
    assert made == [Rung(), Rung(head_in_float=True)]
    record = json.loads(Path(info.int8["graph"]).with_suffix(".json").read_text())
    (first,), used = record["earlier_tries"], record["check"]
    assert first["fp32"] == 100.0 and first["int8"] < 50.0 and first["passed"] is False
    assert used == info.int8["check"] and used["int8"] == 100.0 and used["head_in_float"] is True
    assert record["head_in_float"] is True and record["smoothing"] is None and len(record["float_layers"]) == 1


def test_a_graph_past_the_budget_with_its_head_in_float_is_smoothed(
    random_net: tuple[Path, CheckSet], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Past the budget twice, the third rung (SmoothQuant, residual additions and head in float) is used: the check
    printed, its rung in the record, the two tries before it kept."""
    checkpoint, check_set = random_net
    made = _plant(monkeypatch, fixed_by=LADDER[2])
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    info = use_runtime(pose, checkpoint, RUNTIME, 1, int8=True, calibration=_planted_calibration(check_set))
    assert made == list(LADDER) and LADDER[2] == Rung(head_in_float=True, smoothing=SMOOTHING)
    record = json.loads(Path(info.int8["graph"]).with_suffix(".json").read_text())
    assert [t["passed"] for t in record["earlier_tries"]] == [False, False]
    assert [t["head_in_float"] for t in record["earlier_tries"]] == [False, True]
    assert record["check"]["int8"] == 100.0 and record["check"]["smoothing"] == record["smoothing"] == 0.8
    said = "(8 people labelled with fp32's keypoints, head in float, smoothed (SmoothQuant 0.8, residual additions in "
    assert f"{said}float)): pck 100.00 fp32, 100.00 int8;" in " ".join(capsys.readouterr().out.split())
    # checked again by another user: with the rung it was made by
    monkeypatch.setenv("XDG_CACHE_HOME", str(checkpoint.parent / "another-user"))
    again = use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True,
                        calibration=_planted_calibration(check_set))  # fmt: skip
    assert again.int8["graph"] == info.int8["graph"] and len(made) == 3
    assert f"checked the cached int8 graph with {RUNTIME}: int8 check on 8 held-out crops {said}" in " ".join(
        capsys.readouterr().out.split()
    )


def test_a_graph_past_the_budget_on_every_rung_is_refused(
    random_net: tuple[Path, CheckSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, check_set = random_net
    made = _plant(monkeypatch, fixed_by=None)
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    # the last try in full, the others in a few words (all were printed as they ran)
    refused = (
        r"^int8 misses the accuracy budget even smoothed with the head in float \(int8 check on .*, head in float, "
        r"smoothed \(SmoothQuant 0\.8, residual additions in float\)\): pck 100\.00 fp32, .*; all int8: pck "
        r"\d+\.\d\d int8, p95 \d+\.\d\d px; head in float: pck \d+\.\d\d int8, p95 \d+\.\d\d px\): run without --int8$"
    )
    with pytest.raises(ClposeError, match=refused):
        use_runtime(pose, checkpoint, RUNTIME, 1, int8=True, calibration=_planted_calibration(check_set))
    assert made == list(LADDER) and not list((checkpoint.parent / "cache").glob("*.int8.onnx"))


@pytest.mark.skipif(not (installed("openvino") and installed("onnxruntime")), reason="needs both graph runtimes")
def test_onnxruntime_stops_before_the_smoothed_rung_and_refuses_a_smoothed_graph(
    random_net: tuple[Path, CheckSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime runs a smoothed graph slower than its fp32 one (docs/benchmarks.md): it tries the first two rungs
    and its refusal says where the third is tried; a smoothed graph made for OpenVINO is refused there, not run."""
    checkpoint, check_set = random_net
    made = _plant(monkeypatch, fixed_by=LADDER[2])
    tail = (
        r"run without --int8, or with --runtime openvino, which also tries a smoothed graph \(onnxruntime runs those "
        r"slower than fp32\)$"
    )
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    with pytest.raises(ClposeError, match=r"^int8 misses the accuracy budget even with the head in float \(.*; all "
                       r"int8: pck \d+\.\d\d int8, p95 \d+\.\d\d px\): " + tail):  # fmt: skip
        use_runtime(pose, checkpoint, "onnxruntime", 1, int8=True, calibration=_planted_calibration(check_set))
    assert made == list(LADDER[:2])
    graph = use_runtime(pose, checkpoint, "openvino", 1, int8=True, calibration=_planted_calibration(check_set))
    assert (
        made == [*LADDER[:2], *LADDER]
        and json.loads(Path(graph.int8["graph"]).with_suffix(".json").read_text())["smoothing"] == SMOOTHING
    )
    with pytest.raises(ClposeError, match=r"^\S+\.int8\.onnx is a smoothed int8 graph \(.*\): " + tail):
        use_runtime(pose, checkpoint, "onnxruntime", 1, int8=True, calibration=_planted_calibration(check_set))


def test_the_smoothed_rung_leaves_the_residual_additions_in_float(run: Path, tmp_path: Path) -> None:
    """NNCF's own graphs (not planted): all int8 quantises the inputs of the residual additions; the smoothed rung
    leaves every addition's inputs float, scales the convolutions' inputs (SmoothQuant's Mul nodes) and keeps the
    head in float; both run within a small distance of the fp32 graph."""
    import onnx

    from clpose.engine.graph_cache import cached_graph

    pose = PoseModel.from_checkpoint(run / "best.pt", amp="off")
    fp32 = cached_graph(run / "best.pt", pose)
    crops = torch.stack([pose.crop(*_person(seed))[0] for seed in range(8)])
    graphs = {}
    for rung in (LADDER[0], LADDER[2]):
        out = tmp_path / f"{rung.smoothing}.onnx"
        kept = int8_module.quantize_graph(fp32, crops, out, rung)
        model = onnx.load(str(out))
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        adds = [n for n in model.graph.node if n.op_type == "Add" and all(i in producers for i in n.input)]
        quantised = sum(producers[i] == "DequantizeLinear" for n in adds for i in n.input)
        graphs[rung.smoothing] = (kept, quantised, sum(n.op_type == "Mul" for n in model.graph.node), out)
    (kept_all, q_all, mul_all, _), (kept_smooth, q_smooth, mul_smooth, smoothed) = graphs[None], graphs[SMOOTHING]
    assert kept_all == [] and q_all > 0 and kept_smooth == head_nodes(onnx.load(str(fp32)))
    assert q_smooth == 0 and mul_smooth > mul_all
    from clpose.engine.runtimes import graph_runner
    from clpose.precision import int8_precision

    int8 = graph_runner(RUNTIME, smoothed, 1, int8_precision())(crops).numpy()
    with torch.no_grad():
        ref = pose.model.eval()(crops)
    ref = (ref[-1] if isinstance(ref, (list, tuple)) else ref).numpy()
    assert np.abs(int8 - ref).max() < 0.1 * np.abs(ref).max()


def test_the_displacement_budget_decides_without_labels(random_net: tuple[Path, CheckSet]) -> None:
    """Unlabelled held-out crops: p95 of the keypoints' displacement against DISPLACEMENT_BUDGET x the crop height
    (64 px here: 0.64 px); a runner whose maps are one cell over moves keypoints by about the stride (16 px)."""
    pose = PoseModel.from_checkpoint(random_net[0], amp="off")
    crops = torch.stack([pose.crop(*_person(seed))[0] for seed in range(6)])

    class Shifted:  # maps one cell over: keypoints move by the stride, 16 px
        autocast = False
        last_stage_only = True

        def __call__(self, x):
            with torch.no_grad():
                return pose.model.eval()(x).roll(1, dims=-1)

    check = int8_module.run_check(pose, Shifted(), CheckSet("six rendered people", crops=crops))
    assert check.metric is None and check.crops == 6 and not check.passed and check.displacement_px["p95"] > 8
    assert check.budget == "the budget: p95 <= 0.64 px (1% of the crop's height)"
    same = int8_module.run_check(pose, _Same(pose), CheckSet("six rendered people", crops=crops))
    assert same.passed and same.displacement_px["worst"] == 0.0


def test_the_check_compares_with_fp32_when_the_model_runs_bf16(random_net: tuple[Path, CheckSet]) -> None:
    """`clpose eval --int8` under amp auto runs bf16 where the CPU has it natively: the check's reference must still
    be fp32 (it was bf16 and said "fp32"). A runner that is the fp32 network itself moves no keypoint."""
    pose = PoseModel.from_checkpoint(random_net[0], amp="off")
    crops = torch.stack([pose.crop(*_person(seed))[0] for seed in range(6)])
    bf16 = copy.copy(pose)
    bf16.precision = Precision("bf16", "bf16", "as a CPU with native bf16 picks under amp auto")
    check = int8_module.run_check(bf16, _Same(pose), CheckSet("six rendered people", crops=crops))
    assert check.displacement_px["worst"] == 0.0
    assert bf16.precision.name == "bf16" and bf16.runner is None  # the caller's model is left as it was


class _Same:
    autocast = False
    last_stage_only = True

    def __init__(self, pose: PoseModel) -> None:
        self.pose = pose

    def __call__(self, x):
        with torch.no_grad():
            return self.pose.model.eval()(x)


def _person(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from clpose.data.synthetic import render_sample

    image, figure = render_sample(np.random.default_rng([seed, 5]), 96)
    lo, hi = figure.joints.min(0), figure.joints.max(0)
    return image, np.array([*lo, *(hi - lo)])


def _people_pictures(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        image, _ = _person(i)
        paths.append(folder / f"p{i:02d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


@pytest.mark.parametrize("kind", ["image", "folder", "video"])
def test_calibration_from_images_a_folder_or_a_video(checkpoint: Path, tmp_path: Path, kind: str, wide_budget) -> None:
    """A user with only best.pt (the recipe's data.root is gone) calibrates on images, a folder or a video; the
    crops are counted and named, and a source with too few people is one line."""
    folder = tmp_path / "people"
    folder.mkdir()
    paths = _people_pictures(folder, 15)
    if kind == "image":
        source = paths[0]
    elif kind == "folder":
        source = folder
    else:
        source = tmp_path / "people.mp4"
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 96))
        for path in paths:
            writer.write(cv2.imread(str(path)))
        writer.release()
    out = tmp_path / "i.json"
    args = ["infer", str(source), "--checkpoint", str(checkpoint), "--int8", "--calibration", str(source),
            "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    if kind == "image":  # one picture is one crop: fewer than the check needs
        one_line_error(result, f"--calibration {source}: 1 person crops found", "at least 10")
        return
    assert result.exit_code == 0, result.output
    info = json.loads(out.read_text())["runtime"]["int8"]
    assert info["calibration"] == f"{source} (each frame one person)" and info["calibration_crops"] == 12
    assert info["check"]["crops"] == 3 and info["check"]["metric"] is None  # every fifth of 15: no labels


def test_without_training_data_or_calibration_the_error_names_both(checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(checkpoint, weights_only=False)
    state["recipe"]["data"]["root"] = str(tmp_path / "gone")
    torch.save(state, checkpoint)
    result = runner.invoke(app, ["eval", str(checkpoint), "--int8", "--split", "valid"])
    assert result.exit_code == 2  # the split is not there either: eval says so first
    image = tmp_path / "p.png"
    _people_pictures(tmp_path, 1)[0].rename(image)
    result = runner.invoke(app, ["infer", str(image), "--checkpoint", str(checkpoint), "--int8"])
    one_line_error(result, "--int8 needs calibration crops", "training split is not on this machine",
                   "no --calibration PATH")  # fmt: skip


def test_options_that_cannot_go_with_int8_are_one_line(checkpoint: Path, tmp_path: Path) -> None:
    image = _people_pictures(tmp_path, 1)[0]
    cases = [
        (["eval", str(checkpoint), "--int8", "--runtime", "torch"], "--runtime torch has no int8 path"),
        (["eval", str(checkpoint), "--calibration", str(image)], "--calibration needs --int8"),
        (["infer", str(image), "--checkpoint", str(checkpoint), "--calibration", str(image)], "add --int8"),
        (["infer", str(image), "--checkpoint", str(checkpoint), "--int8", "--compile", "--runtime", RUNTIME],
         "--compile compiles the torch runtime"),
        (["export", str(checkpoint), "--int8", "--with-decode"], "--int8 exports the int8 ONNX graph of the maps"),
        (["export", str(checkpoint), "--calibration", str(image)], "add --int8"),
        (["eval", "--metric", "pck", "--predictions", str(image), "--annotations", str(image), "--int8"],
         "--int8 cannot be used with --predictions"),
        (["infer", str(image), "--checkpoint", str(checkpoint), "--int8", "--calibration", str(tmp_path / "none")],
         "does not exist"),
    ]  # fmt: skip
    for args, fragment in cases:
        one_line_error(runner.invoke(app, args), fragment)


def test_nncf_missing_is_one_line(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_nncf(name, *args, **kwargs):
        if name == "nncf":
            raise ImportError("No module named 'nncf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nncf)
    with pytest.raises(ClposeError, match=r"--int8 quantises with NNCF, which is not installed: pip install"):
        use_runtime(PoseModel.from_checkpoint(checkpoint, amp="off"), checkpoint, RUNTIME, 1, int8=True)


_CONCURRENT = """
import sys
from clpose.engine import int8
int8.INT8_BUDGET, int8.INT8_RELATIVE_BUDGET, int8.DISPLACEMENT_BUDGET = 100.0, 100.0, 10.0
from clpose.engine.posemodel import PoseModel
from clpose.engine.runtimes import use_runtime
ck = sys.argv[1]
info = use_runtime(PoseModel.from_checkpoint(ck, amp="off"), ck, sys.argv[2], 1, int8=True)
print("GRAPH", info.int8["graph"])
"""


def test_two_processes_at_once_make_one_graph(checkpoint: Path) -> None:
    argv = [sys.executable, "-c", _CONCURRENT, str(checkpoint), RUNTIME]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = "".join(out for out, _ in outputs)
    assert said.count("quantising the network to int8") == 1
    graphs = {line for out, _ in outputs for line in out.splitlines() if line.startswith("GRAPH")}
    assert len(graphs) == 1 and len(list((checkpoint.parent / "cache").glob("*.int8.onnx"))) == 1


def test_bench_times_an_int8_row_beside_fp32(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    args = ["bench", "--model", "clnet_resnet10", "--input-size", "64x64", "--batch", "1", "--runs", "2", "--warmup",
            "1", "--fps", "--int8", "--runtime", RUNTIME, "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["runtime"], r["precision"]) for r in rows] == [(RUNTIME, "fp32"), (RUNTIME, "int8")]
    said = " ".join(result.output.split())
    assert "int8 (NNCF) in" in said and "GOP/s (int8)" in said and "speed only" in said


def test_export_int8_writes_the_graph_and_its_record(checkpoint: Path, tmp_path: Path, wide_budget) -> None:
    out = tmp_path / "model-int8.onnx"
    result = runner.invoke(app, ["export", str(checkpoint), "--int8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["format"] == "clpose-int8-onnx" and record["check"]["passed"] is True
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
    (maps,) = session.run(None, {"images": np.zeros((2, 3, 64, 64), np.float32)})
    assert maps.shape == (2, 3 * 16, 4, 4)


def test_head_nodes_are_the_convolutions_that_write_the_maps(checkpoint: Path) -> None:
    import onnx

    graph = next((checkpoint.parent / "cache").glob("*.onnx"), None) if (checkpoint.parent / "cache").is_dir() else None
    if graph is None:
        pose = PoseModel.from_checkpoint(checkpoint, amp="off")
        from clpose.engine.graph_cache import cached_graph

        graph = cached_graph(checkpoint, pose)
    model = onnx.load(str(graph))
    (head,) = head_nodes(model)
    node = next(n for n in model.graph.node if n.name == head)
    assert node.op_type == "Conv" and node.output[0] == model.graph.output[0].name


def test_spread_picks_evenly_and_disjointly() -> None:
    assert spread(10, 20).tolist() == list(range(10))
    assert spread(10, 5).tolist() == [0, 2, 4, 6, 8]
    assert spread(10, 5, offset=0.5).tolist() == [1, 3, 5, 7, 9]


def test_default_calibration_is_none_without_the_recipes_data(checkpoint: Path, tmp_path: Path) -> None:
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    assert default_calibration(pose) is not None
    pose.recipe.data.root = str(tmp_path / "gone")
    assert default_calibration(pose) is None


@pytest.mark.parametrize(
    ("fp32", "int8", "passed"),
    [
        (89.74, 89.55, True),  # the demo's network (docs/inference.md)
        (90.0, 89.4, False),  # 0.6 points: past the 0.5
        (5.33, 5.90, True),  # int8 scored higher
        (0.61, 0.18, False),  # within 0.5 points, but 70% of what fp32 scored: past a tenth of it
        (4.0, 3.65, True),  # 0.35 points, under a tenth of 4.0
        (4.0, 3.55, False),  # 0.45 points: within 0.5, past a tenth of 4.0
        (float("nan"), 1.0, False),
    ],
)
def test_the_budget_is_half_a_point_and_a_tenth_of_fp32s_score(fp32: float, int8: float, passed: bool) -> None:
    ok, said = int8_module.within_budget(fp32, int8, True, "pck")
    assert ok is passed
    assert said.startswith("the budget: a drop of at most 0.5 pck points and 10% of fp32's score")
    assert int8_module.within_budget(0.20, 0.25, False, "mpe")[0] is False  # lower is better: a rise is the drop
