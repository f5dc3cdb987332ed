"""`--runtime torch|onnxruntime|openvino|auto` of `infer`, `eval` and `bench`: the same predictions and scores as
torch (fp32), the graph cache keyed by the checkpoint's bytes, the choice and its fallbacks, threads and precision."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import fit_recipe, one_line_error
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.data.synthetic import render_sample
from clpose.engine import graph_cache, runners, runtimes
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.precision import Precision

pytest.importorskip("onnxruntime", reason="the runtimes need the deploy extra: pip install 'clpose[deploy]'")
pytest.importorskip("onnxscript", reason="the runtimes need the deploy extra: pip install 'clpose[deploy]'")
GRAPH_RUNTIMES = [
    "onnxruntime",
    pytest.param("openvino", marks=pytest.mark.skipif(not runtimes.installed("openvino"), reason="no openvino")),
]
runner = CliRunner()


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLNet-ResNet-10 trained for one epoch on synthetic people (64x64): PCK is neither 0 nor 100."""
    root = tmp_path_factory.mktemp("runtimes")
    run_prepare("synthetic", root, root, synthetic={"train": 16, "val": 8, "size": 96, "workers": 1}, show=False)
    recipe = (
        f"model: {{name: clnet_resnet10}}\ndata: {{dataset: synthetic, root: {root}, input_size: 64x64, "
        "num_workers: 0}\ntrain: {epochs: 1, batch_size: 8}\neval: {batch_size: 4}\n"
    )
    return fit_recipe(root / "r.yaml", recipe, root / "run")


def _eval(run: Path, out: Path, *args: str) -> dict:
    result = runner.invoke(app, ["eval", str(run), "--json", str(out.with_suffix(".json")), *args])
    assert result.exit_code == 0, result.output
    return json.loads(out.with_suffix(".json").read_text()) | {"output": result.output}


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_eval_with_a_runtime_scores_as_torch_does(run: Path, runtime: str, tmp_path: Path) -> None:
    """PCK within 0.05 points of torch (fp32: the same hits), every keypoint within 1e-3 px."""
    ref = _eval(run, tmp_path / "torch", "--save-predictions", str(tmp_path / "torch.npy"))
    got = _eval(run, tmp_path / runtime, "--runtime", runtime, "--save-predictions", str(tmp_path / f"{runtime}.npy"))
    assert 0 < ref["Mean"] < 100 and abs(got["Mean"] - ref["Mean"]) <= 0.05
    diff = np.abs(np.load(tmp_path / f"{runtime}.npy") - np.load(tmp_path / "torch.npy")).max()
    assert diff < 1e-3
    assert got["settings"]["runtime"]["runtime"] == runtime and got["settings"]["precision"] == "fp32"
    assert ref["settings"]["runtime"]["runtime"] == "torch"
    assert f"runtime: {runtime} " in got["output"] and "precision: fp32" in got["output"]
    assert len(list((run / "cache").glob("best-*.onnx"))) == 1  # one graph, shared by the runtimes


def _coco_root(tmp_path: Path) -> Path:
    """Six 96x96 images, one rendered person each, as COCO val2017 (17 keypoints: the 16 joints and their mean)."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(6):
        image, figure = render_sample(np.random.default_rng([i, 5]), 96)
        xy = np.concatenate([figure.joints, figure.joints.mean(0, keepdims=True)])
        lo, hi = xy.min(0) - 4, xy.max(0) + 4
        images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 96, "height": 96})
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": float(np.prod(hi - lo)),
                "bbox": [*lo.tolist(), *(hi - lo).tolist()],
                "num_keypoints": 17,
                "keypoints": np.concatenate([xy, np.full((17, 1), 2.0)], 1).reshape(-1).tolist(),
            }
        )
        cv2.imwrite(str(root / "val2017" / images[-1]["file_name"]), image)
    cats = [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)]}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    return root


def test_oks_ap_with_each_runtime_equals_torchs(tmp_path: Path) -> None:
    """OKS AP within 0.001 of torch (fp32). The ground truth is torch's own predictions, three people exact and
    three moved by 4 px, so that AP is neither 0 nor 1 and a runtime's different keypoints would change it."""
    root = _coco_root(tmp_path)
    run_prepare("coco", root, root, show=False)
    recipe = (
        f"model: {{name: clnet_resnet10}}\ndata: {{dataset: coco, root: {root}, input_size: 64x48, "
        "train_split: val, val_split: val, num_workers: 0}\ntrain: {epochs: 1, batch_size: 6}\n"
        "eval: {batch_size: 6, flip: false}\n"
    )
    run = fit_recipe(tmp_path / "coco.yaml", recipe, tmp_path / "run")
    results = tmp_path / "results.json"
    _eval(run, tmp_path / "first", "--save-predictions", str(results))
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    predicted = sorted(json.loads(results.read_text()), key=lambda r: r["image_id"])
    for ann, result in zip(gt["annotations"], predicted, strict=True):
        kp = np.array(result["keypoints"]).reshape(17, 3)
        kp[:, :2] += 4.0 * (ann["id"] % 2)
        kp[:, 2] = 2
        ann["keypoints"] = kp.reshape(-1).tolist()
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(gt))
    ref = _eval(run, tmp_path / "torch", "--annotations", str(truth))
    assert 0.1 < ref["AP"] < 0.99
    for runtime in ["onnxruntime", *(["openvino"] if runtimes.installed("openvino") else [])]:
        got = _eval(run, tmp_path / runtime, "--annotations", str(truth), "--runtime", runtime)
        assert abs(got["AP"] - ref["AP"]) <= 0.001 and got["settings"]["runtime"]["runtime"] == runtime


def test_the_graph_is_made_once_per_checkpoint_bytes(run: Path, tmp_path: Path, monkeypatch) -> None:
    """Reused while the checkpoint is unchanged; a checkpoint with other bytes, or a damaged graph, is exported
    again; the graphs of earlier bytes are removed."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    made = []
    real_export = graph_cache.export_onnx
    monkeypatch.setattr(graph_cache, "export_onnx", lambda *a, **k: made.append(1) or real_export(*a, **k))
    first = graph_cache.cached_graph(checkpoint, pose)
    assert graph_cache.cached_graph(checkpoint, pose) == first and made == [1]
    record = json.loads(first.with_suffix(".json").read_text())
    assert record["checkpoint_sha256"] == graph_cache.sha256(checkpoint) and record["input_size"] == "64x64"
    first.write_bytes(first.read_bytes()[:-10])  # damaged
    assert graph_cache.cached_graph(checkpoint, pose) == first and made == [1, 1]
    state = torch.load(checkpoint, weights_only=False)
    state["epoch"] = 7  # other bytes, same weights: still a new key (the bytes are what is known)
    torch.save(state, checkpoint)
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    second = graph_cache.cached_graph(checkpoint, pose)
    assert second != first and made == [1, 1, 1]
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.onnx")) == [second.name]
    other_size = PoseModel.from_checkpoint(checkpoint, amp="off", input_hw=(64, 48))
    third = graph_cache.cached_graph(checkpoint, other_size)
    assert third != second  # another crop size, another graph; the first size's graph stays
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.onnx")) == sorted([second.name, third.name])
    assert graph_cache.cached_graph(checkpoint, pose) == second and made == [1, 1, 1, 1]


def test_a_checkpoint_replaced_after_loading_never_gets_the_old_weights_graph(run: Path, tmp_path: Path) -> None:
    """A training may write a new best.pt between the moment a run loads it and the moment the graph is made: the
    graph is keyed by the bytes the weights came from, so the new file gets a graph of its own weights."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    old = PoseModel.from_checkpoint(checkpoint, amp="off")
    state = torch.load(checkpoint, weights_only=False)
    state["model"] = {k: v * 1.1 if v.dim() == 4 else v for k, v in state["model"].items()}  # other conv weights
    torch.save(state, checkpoint)  # replaced after `old` was loaded
    graph = graph_cache.cached_graph(checkpoint, old)
    assert json.loads(graph.with_suffix(".json").read_text())["checkpoint_sha256"] == old.checkpoint_sha256
    assert old.checkpoint_sha256 != graph_cache.sha256(checkpoint)
    new = PoseModel.from_checkpoint(checkpoint, amp="off")
    new_graph = graph_cache.cached_graph(checkpoint, new)
    assert new_graph != graph
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want, stale = new.model(x), old.model(x)
    got = runners.OnnxRuntimeRunner(new_graph, 1)(x)
    assert float((got - want).abs().max()) < 1e-3 < float((stale - want).abs().max())


@pytest.mark.skipif(not runtimes.installed("openvino"), reason="no openvino")
def test_a_runtime_checks_a_cached_graph_once_before_it_runs_it(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once per user, graph bytes and runtime: the check is remembered in the user's cache, not in the run folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    graph = graph_cache.cached_graph(checkpoint, pose, runtimes.parity_check("onnxruntime"), "onnxruntime")
    key = graph_cache.graph_key(pose.checkpoint_sha256, pose)
    remembered = tmp_path / "xdg" / "clpose" / "verified" / f"{graph_cache.sha256(graph)}-{key}.json"
    assert json.loads(remembered.read_text())["checked_by"] == ["onnxruntime"]
    checked = []
    real = runtimes.parity_check("openvino")
    graph_cache.cached_graph(checkpoint, pose, lambda path: checked.append(path) or real(path), "openvino")
    assert checked == [graph] and json.loads(remembered.read_text())["checked_by"] == ["onnxruntime", "openvino"]
    graph_cache.cached_graph(checkpoint, pose, lambda path: checked.append(path) or real(path), "openvino")
    assert checked == [graph]  # once
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-user"))
    graph_cache.cached_graph(checkpoint, pose, lambda path: checked.append(path) or real(path), "openvino")
    assert checked == [graph, graph]  # another user's clpose checks it for itself


def _other_weights(run: Path, path: Path) -> Path:
    state = torch.load(run / "best.pt", weights_only=False)
    state["model"] = {k: v * 1.3 if v.dim() == 4 else v for k, v in state["model"].items()}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("forged_checks", [[], ["onnxruntime", "openvino"]])
def test_a_graph_placed_in_the_run_folder_is_never_run_unchecked(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forged_checks: list[str]
) -> None:
    """Issue 31, class 6: another checkpoint's graph with a record naming this checkpoint (its key, the graph's hash,
    even `checked_by`) was run by `eval --runtime openvino` and the default `infer` without a check (PCK 6.0 where
    torch gives 15.8). It is now checked against this checkpoint before it runs, found wrong, and exported again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    mine, theirs = tmp_path / "mine" / "best.pt", _other_weights(run, tmp_path / "theirs.pt")
    mine.parent.mkdir()
    mine.write_bytes((run / "best.pt").read_bytes())
    other = graph_cache.cached_graph(theirs, PoseModel.from_checkpoint(theirs, amp="off"))
    pose = PoseModel.from_checkpoint(mine, amp="off")
    key = graph_cache.graph_key(pose.checkpoint_sha256, pose)
    planted = mine.parent / "cache" / f"best-{key}.onnx"
    planted.parent.mkdir()
    planted.write_bytes(other.read_bytes())
    record = {"key": key, "graph_sha256": graph_cache.sha256(planted), "checked_by": forged_checks}
    planted.with_suffix(".json").write_text(json.dumps(record))
    result = runner.invoke(app, ["eval", str(mine), "--runtime", "onnxruntime", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "does not reproduce" in result.stderr and "made again" in result.stderr
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = pose.model.eval()(x)
    got = runners.OnnxRuntimeRunner(planted, 1)(x)  # the graph there now is this checkpoint's
    assert float((got - want).abs().max()) < 1e-3
    ref = _eval(mine.parent, tmp_path / "torch", "--runtime", "torch")
    assert json.loads((tmp_path / "e.json").read_text())["Mean"] == pytest.approx(ref["Mean"], abs=0.05)


def test_a_cache_folder_that_is_a_link_is_not_followed(run: Path, tmp_path: Path, monkeypatch) -> None:
    """A `cache` symlink sent the graph, the record and the lock outside the run folder: the user's cache is used."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (checkpoint.parent / "cache").symlink_to(elsewhere)
    graph = graph_cache.cached_graph(checkpoint, PoseModel.from_checkpoint(checkpoint, amp="off"))
    assert graph.parent == tmp_path / "xdg" / "clpose" / "graphs" and not any(elsewhere.iterdir())


def test_a_lock_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    from clpose.io import file_lock

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / ".clpose-locks").symlink_to(elsewhere)
    with pytest.raises(ClposeError, match=r"\.clpose-locks is a symbolic link"), file_lock(tmp_path / "cache" / "g"):
        pass
    (tmp_path / "cache" / ".clpose-locks").unlink()
    (tmp_path / "cache" / ".clpose-locks").mkdir()
    (tmp_path / "cache" / ".clpose-locks" / "h.lock").symlink_to(elsewhere / "planted")
    with pytest.raises(ClposeError, match=r"h\.lock is a symbolic link"), file_lock(tmp_path / "cache" / "h"):
        pass
    assert not any(elsewhere.iterdir())


def test_no_writable_cache_runs_torch_under_auto_and_is_one_line_otherwise(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only run folder and no user cache (a service account without a home): `--runtime auto` runs torch and
    says why; an explicit runtime is one line naming both folders. (Files stand where the folders would be made:
    the tests may run as root, whom permissions do not stop.)"""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    (tmp_path / "cache").write_text("in the way")
    (tmp_path / "xdg").write_text("in the way")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(runtimes, "installed", lambda name: True)
    pose = PoseModel.from_checkpoint(checkpoint, amp="off")
    info = runtimes.use_runtime(pose, checkpoint, "auto", threads=1)
    assert info.runtime == "torch" and "needs a graph cache" in info.why and str(tmp_path / "cache") in info.why
    result = runner.invoke(app, ["eval", str(checkpoint), "--runtime", "onnxruntime"])
    one_line_error(result, f"neither {tmp_path / 'cache'} nor {tmp_path / 'xdg'}", "XDG_CACHE_HOME")


def test_an_unwritable_run_folder_caches_in_the_users_cache(run: Path, tmp_path: Path, monkeypatch) -> None:
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    (tmp_path / "cache").write_text("a file where the folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    graph = graph_cache.cached_graph(checkpoint, PoseModel.from_checkpoint(checkpoint, amp="off"))
    assert graph.parent == tmp_path / "home-cache" / "clpose" / "graphs" and graph.is_file()


def test_auto_falls_back_to_torch_with_one_line_when_openvino_is_absent(monkeypatch) -> None:
    monkeypatch.setattr(runtimes, "installed", lambda name: name != "openvino")
    choice = runtimes.choose_runtime("auto", "cpu")
    assert choice.name == "torch" and "pip install 'clpose[deploy]'" in choice.why
    with pytest.raises(ClposeError, match=r"--runtime openvino: the openvino package is not installed: pip install"):
        runtimes.choose_runtime("openvino", "cpu")
    monkeypatch.setattr(runtimes, "installed", lambda name: True)
    assert runtimes.choose_runtime("auto", "cpu").name == "openvino"
    assert runtimes.choose_runtime("auto", "cuda:0").name == "torch"  # the GPU runs torch
    with pytest.raises(ClposeError, match=r"--runtime onnxruntime runs on the CPU; on --device cuda:0"):
        runtimes.choose_runtime("onnxruntime", "cuda:0")


def test_each_runtime_states_the_precision_it_runs() -> None:
    native = Precision("bf16", "auto", "AMX")
    emulated = Precision("bf16", "bf16", "no AMX", native=False)
    fp32 = Precision("fp32", "auto", "no native bf16")
    assert runtimes.runtime_precision("torch", native) is native
    assert runtimes.runtime_precision("onnxruntime", native).name == "fp32"
    assert "ONNX Runtime's CPU convolutions are fp32" in runtimes.runtime_precision("onnxruntime", native).reason
    assert runtimes.runtime_precision("openvino", emulated).name == "fp32"
    assert runtimes.runtime_precision("openvino", fp32) is fp32
    if runtimes.installed("openvino"):
        assert runtimes.runtime_precision("openvino", native).name == (
            "bf16" if runners.openvino_has_bf16() else "fp32"
        )


def test_threads_reach_the_runtimes(run: Path, restore_threads) -> None:
    pose = PoseModel.from_checkpoint(run / "best.pt", amp="off")
    graph = graph_cache.cached_graph(run / "best.pt", pose)
    options = runners.OnnxRuntimeRunner(graph, 1).session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # idle threads free the cores
    if runtimes.installed("openvino"):
        assert runners.OpenVinoRunner(graph, 1, bf16=False).compiled.get_property("INFERENCE_NUM_THREADS") == 1
    info = runtimes.use_runtime(pose, run / "best.pt", "onnxruntime", threads=1)
    assert info.threads == 1 and torch.get_num_threads() == 1 and "1 threads" in info.describe()
    with pytest.raises(ClposeError, match="--threads must be between 1 and 1024, got 0"):
        runtimes.check_threads(0)
    with pytest.raises(ClposeError, match="--threads must be between 1 and 1024, got 4294967296"):
        runtimes.check_threads(2**32)  # torch itself would fail with an overflow traceback


def test_what_a_graph_cannot_do_is_one_line(run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(run), "--stages", "all", "--runtime", "onnxruntime"])
    one_line_error(result, "runs the exported graph, which has the last stage only: use torch")
    result = runner.invoke(app, ["eval", str(run), "--compile", "--runtime", "onnxruntime"])
    one_line_error(result, "--compile compiles the torch runtime; --runtime onnxruntime runs onnxruntime")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clpose.data.prepare.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 6, seed=0, width=160, height=120, people=1)


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_infer_with_a_runtime_predicts_what_torch_predicts(run: Path, clip: Path, runtime: str, tmp_path: Path) -> None:
    poses = {}
    for name in ("torch", runtime):
        out = tmp_path / f"{name}.json"
        args = ["infer", str(clip), "--checkpoint", str(run), "--boxes", str(clip.with_suffix(".boxes.json"))]
        result = runner.invoke(app, [*args, "--runtime", name, "--amp", "off", "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"runtime: {name} ")
        record = json.loads(out.read_text())
        assert record["runtime"]["runtime"] == name and record["runtime"]["precision"] == "fp32"
        poses[name] = np.array([p["keypoints"] for f in record["frames"] for p in f["people"]])
    assert poses["torch"].shape == (6, 16, 2) and np.abs(poses[runtime] - poses["torch"]).max() <= 0.01  # 2 decimals


def test_infer_compiles_the_torch_runtime_and_says_how_long_it_took(run: Path, clip: Path, tmp_path: Path) -> None:
    args = ["infer", str(clip), "--checkpoint", str(run), "--boxes", str(clip.with_suffix(".boxes.json"))]
    plain, compiled = tmp_path / "plain.json", tmp_path / "compiled.json"
    assert runner.invoke(app, [*args, "--amp", "off", "--json", str(plain)]).exit_code == 0
    result = runner.invoke(app, [*args, "--amp", "off", "--compile", "--batch", "4", "--json", str(compiled)])
    if "does not compute what the network does" in result.output:
        # tests/test_models.py's upstream bug: torch 2.14.1's inductor AVX2 code gives wrong maps for a CLNet (seen
        # with the CPUID masked to AVX2 on a Xeon and a Zen 4); they are refused (the next test), never written
        assert result.exit_code == 2 and not compiled.exists()
        assert str(torch._inductor.cpu_vec_isa.pick_vec_isa()) == "avx2", result.output
        pytest.xfail("torch inductor's AVX2 code returns wrong maps for this graph (an upstream bug): refused")
    assert result.exit_code == 0, result.output
    assert "channels_last, torch.compile" in result.output
    assert "compiling the network for batches of 4" in result.output  # 6 frames: a batch of 4, one of 2
    assert "compiling the network for batches of 2" in result.output
    assert "torch.compile took " in result.output and "(batch sizes 2, 4)" in result.output

    def keypoints(path: Path) -> np.ndarray:
        people = [p["keypoints"] for f in json.loads(path.read_text())["frames"] for p in f["people"]]
        return np.array([[[np.nan if v is None else v for v in xy] for xy in kp] for kp in people], dtype=float)

    assert np.abs(keypoints(compiled) - keypoints(plain)).max() <= 0.01


def test_compiled_code_that_computes_something_else_is_refused() -> None:
    """torch 2.14.1's inductor code for AVX2 CPUs returns wrong maps for a CLNet (tests/test_models.py's upstream
    bug: non-finite on a masked Xeon, finite and 30 px off on a masked Zen 4, where `infer --compile` wrote them as
    keypoints): each newly compiled shape is compared with the network's own maps on its first batch, with the ONNX
    parity check's tolerance (1e-3 times the largest |map| above 1)."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    x = 4 * torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        largest = float(model(x).abs().max())
    assert largest > 1  # the tolerance scales with it: 1e-3 x largest
    compiled = runtimes.CompiledRunner(model)
    compiled.compiled = lambda t: model(t) * 1.01  # 1% off: ten times the tolerance
    refused = (
        rf"^torch\.compile's code for batches of 2 does not compute what the network does \(maps differ by "
        rf"{0.01 * largest:.3g} \(tolerance {1e-3 * largest:.3g}\); torch .*\): run without --compile$"
    )
    with pytest.raises(ClposeError, match=refused):
        compiled(x)
    compiled = runtimes.CompiledRunner(model)
    compiled.compiled = lambda t: torch.full_like(model(t), float("nan"))
    with pytest.raises(ClposeError, match=r"\(non-finite maps; torch "):
        compiled(x[:1])
    compiled = runtimes.CompiledRunner(model)
    compiled.compiled = lambda t: model(t) * (1 + 1e-5)  # sums in another order: within
    assert torch.equal(compiled(x[:1]), model(x[:1]) * (1 + 1e-5)) and compiled.compile_seconds.keys() == {1}
    with torch.autocast("cpu", torch.bfloat16):  # under bf16 autocast both round alike: 5e-2 x largest allowed
        compiled = runtimes.CompiledRunner(model)
        compiled.compiled = lambda t: model(t) * 1.01
        compiled(x)
        compiled.compiled = lambda t: model(t) * 1.08
        compiled.compile_seconds.clear()
        with pytest.raises(ClposeError, match=r"maps differ by"):
            compiled(x)


def test_bench_times_each_model_in_each_runtime(tmp_path: Path, restore_threads) -> None:
    out = tmp_path / "b.json"
    args = ["bench", "--model", "clnet_resnet10", "--input-size", "64x64", "--batch", "1", "--runs", "2"]
    result = runner.invoke(app, [*args, "--warmup", "1", "--runtime", "torch", "--runtime", "onnxruntime",
                                 "--threads", "1", "--amp", "off", "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["runtime"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnxruntime", "fp32")]
    assert all(r["fps"] > 0 and r["gmacs"] == rows[0]["gmacs"] for r in rows)
    assert "precision (onnxruntime): fp32" in result.output and "runtime" in result.output
    one_line_error(runner.invoke(app, [*args, "--runtime", "tensorrt"]), "--runtime 'tensorrt': expected one of")
    one_line_error(runner.invoke(app, [*args, "--flops", "--runtime", "onnxruntime"]), "--flops alone times nothing")


def test_paths_and_hints_with_brackets_are_printed_as_they_are(run: Path, clip: Path, tmp_path: Path, monkeypatch):
    """Square brackets are rich markup: a folder named c[/x] or c[v2] and `pip install 'clpose[deploy]'` must reach
    the screen unchanged (c[/x] used to end the run with a MarkupError traceback)."""
    folder = tmp_path / "c[/x]" / "r[v2]"
    folder.mkdir(parents=True)
    for name in ("best.pt", "recipe.yaml"):
        (folder / name).write_bytes((run / name).read_bytes())
    args = ["infer", str(clip), "--checkpoint", str(folder), "--boxes", str(clip.with_suffix(".boxes.json"))]
    result = runner.invoke(app, [*args, "--runtime", "onnxruntime", "--amp", "off", "--json", str(tmp_path / "o.json")])
    assert result.exit_code == 0, result.output
    assert str(folder / "cache") in result.output.replace("\n", "")
    monkeypatch.setattr(runtimes, "installed", lambda name: name != "openvino")
    result = runner.invoke(app, [*args, "--runtime", "auto", "--amp", "off", "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0 and "pip install 'clpose[deploy]'" in result.output.replace("\n", "")


def test_runtimes_take_turns_in_blocks_and_models_alternate_within_one() -> None:
    """A runtime's thread pool holds the cores for a while after it worked: bench gives each runtime a block of runs
    (after one untimed run) and alternates the models run by run inside it; every entry gets exactly --runs times."""
    from clpose.codecs import CompositeOptions, build_codec
    from clpose.precision import resolve_precision
    from clpose.speed import bench

    calls: list[str] = []

    def forward(label: str):
        def run(x: torch.Tensor) -> torch.Tensor:
            calls.append(label)
            return torch.zeros(1, 3, 4, 4)

        return run

    fp32 = resolve_precision("off", "cpu")
    codec = build_codec(CompositeOptions(), (64, 64), 16)
    entries = [bench._Entry(m, r, forward(f"{m}/{r}"), codec, fp32) for r in ("torch", "ort") for m in ("A", "B")]
    settings = bench.BenchSettings((64, 64), 1, [1], runs=7, warmup=1, runtimes=["torch", "ort"])
    assert bench._blocks(7) == [2, 2, 1, 1, 1] and bench._blocks(20) == [4] * 5 and bench._blocks(2) == [1, 1]
    rows = bench._time_models(entries, {"A": [1], "B": [1]}, {}, settings, torch.device("cpu"),
                              {"fp32": (1.0, "test")}, show_progress=False)  # fmt: skip
    warm, timed = calls[:4], calls[4:-4]
    assert warm == ["A/torch", "B/torch", "A/ort", "B/ort"] and len(rows) == 4
    torch_turn = ["A/torch", "B/torch"] * 3  # the untimed run, then a block of two
    ort_turn = ["A/ort", "B/ort"] * 3
    short = ["A/torch", "B/torch"] * 2 + ["A/ort", "B/ort"] * 2
    assert timed == torch_turn + ort_turn + torch_turn + ort_turn + short * 3
    assert calls[-4:] == ["A/torch", "B/torch", "A/ort", "B/ort"]  # the outputs the decode is timed on


def test_auto_runs_torch_when_the_graph_cannot_be_made(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 4 re-run: the default `infer` (--runtime auto) refused a valid checkpoint whose graph missed the parity
    check; auto now runs torch and says why, and an explicit runtime is still one line."""

    def refused(*args, **kwargs):
        raise ClposeError("the export does not reproduce PyTorch on random inputs: maps differ by 0.5")

    monkeypatch.setattr(runtimes, "cached_graph", refused)
    monkeypatch.setattr(runtimes, "installed", lambda name: True)
    pose = PoseModel.from_checkpoint(run / "best.pt", amp="off")
    info = runtimes.use_runtime(pose, run / "best.pt", "auto", threads=1)
    assert info.runtime == "torch" and "could not run this network (the export does not reproduce" in info.why
    with pytest.raises(ClposeError, match=r"maps differ by 0\.5"):
        runtimes.use_runtime(pose, run / "best.pt", "onnxruntime", threads=1)


def test_torch_threads_are_set_inside_the_block_and_put_back_after(restore_threads) -> None:
    torch.set_num_threads(2)
    with runtimes.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="planted"), runtimes.torch_threads(1):
        raise RuntimeError("planted")
    assert torch.get_num_threads() == 2  # put back when the block fails too


def test_torch_runs_one_thread_beside_a_graph_runtime_and_its_own_threads_otherwise(restore_threads) -> None:
    torch.set_num_threads(3)
    fp32 = Precision("fp32", "off", "test")
    beside = runtimes.torch_threads_beside
    assert beside(runtimes.RuntimeInfo("openvino", "x", "test", fp32, 2)) == 1
    assert beside(runtimes.RuntimeInfo("onnxruntime", "x", "test", fp32, 4)) == 1
    assert beside(runtimes.RuntimeInfo("torch", "x", "test", fp32, 2)) == 3  # torch runs the network: its threads
    assert beside(runtimes.RuntimeInfo("openvino", "x", "test", fp32, 1)) == 3  # nothing to give back
    assert beside(None) == 3


@pytest.mark.parametrize(("runtime", "inside"), [("onnxruntime", 1), ("torch", 2)])
def test_infer_runs_torch_on_one_thread_beside_a_graph_runtime(
    run: Path, clip: Path, runtime: str, inside: int, restore_threads, monkeypatch, tmp_path: Path
) -> None:
    """A graph runtime runs the network with --threads; torch's small work around it (crops, decoding) runs on one
    thread, so that torch's idle OpenMP workers do not spin on the cores the runtime wants; torch's threads are put
    back after the run."""
    from clpose.inference.predictor import Predictor
    from clpose.inference.run import InferOptions, run_infer

    predictor = Predictor.from_checkpoint(run / "best.pt", torch.device("cpu"), runtime=runtime, threads=2)
    seen: list[int] = []
    decode = predictor.pose.decode
    monkeypatch.setattr(predictor.pose, "decode", lambda maps: (seen.append(torch.get_num_threads()), decode(maps))[1])
    opts = InferOptions(boxes=str(clip.with_suffix(".boxes.json")), json_out=tmp_path / "out.json", batch=1)
    report = run_infer(str(clip), predictor, opts, show_progress=False)
    assert report.frames == 6 and seen == [inside] * 6
    assert torch.get_num_threads() == 2
