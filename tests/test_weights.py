"""Pretrained weights by name (clpose.weights): downloads from a real HTTP server on 127.0.0.1 (no test reaches the
internet), the cache, hashes, offline mode, concurrent fetches, and training that starts from `imagenet`.

A small generated state dict with a few of the trunk's keys stands in for torchvision's files; its name carries its
own SHA-256 prefix, as torchvision's names do."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import Server, one_line_error
from typer.testing import CliRunner

import clpose.weights as weights
from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.engine.checkpoint import load_checkpoint
from clpose.errors import ClposeError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _state_dict_bytes(builder: str = "resnet18", seed: int = 0) -> bytes:
    """The torchvision model's state dict, every name and shape, in kilobytes: conv1.weight as made, every other
    tensor one stored number broadcast to its shape (a trunk refuses a file that lacks any of its tensors)."""
    torch.manual_seed(seed)
    full = getattr(torchvision.models, builder)(weights=None).state_dict()
    small = {k: v.reshape(-1)[:1].clone().reshape([1] * v.dim()).expand(v.shape) if v.dim() else v
             for k, v in full.items() if k != "conv1.weight"}  # fmt: skip
    buffer = io.BytesIO()
    torch.save({"conv1.weight": full["conv1.weight"], **small}, buffer)
    return buffer.getvalue()


def _register(monkeypatch: pytest.MonkeyPatch, server: Server, data: bytes, builder: str = "resnet18",
              name: str = "ResNet18_Weights.TEST", prefix: str | None = None) -> weights.WeightsFile:  # fmt: skip
    """Serve `data` under a torchvision-style name carrying its SHA-256 prefix (or `prefix`) and register it as the
    weights of `builder`: its `imagenet` weights, or the detector's."""
    digest = prefix or hashlib.sha256(data).hexdigest()[:8]
    entry = weights.WeightsFile(name, builder, f"{server.url}{builder}-{digest}.pth", len(data) / 1e6, "test")
    server.files[entry.filename] = data
    monkeypatch.setitem(weights._EXTRA, entry.name, entry)
    monkeypatch.setitem(weights.DETECTORS if builder in weights.DETECTORS else weights.IMAGENET, builder, entry.name)
    return entry


def _cache_files() -> list[str]:
    folder = weights.cache_dir()
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def test_a_download_lands_in_the_cache_loads_and_is_not_fetched_again(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    first = weights.resolve_pretrained("imagenet", "resnet18")
    assert first.path == weights.cache_dir() / entry.filename and first.name == "ResNet18_Weights.TEST"
    assert first.sha256 == hashlib.sha256(server.files[entry.filename]).hexdigest() and first.source == entry.url
    assert server.requests == {entry.filename: 1} and _cache_files() == [entry.filename]
    again = weights.resolve_pretrained("ResNet18_Weights.TEST", "resnet18")  # by its full name, from the cache
    assert again == first and server.requests == {entry.filename: 1}
    from clpose.models import build_model

    model = build_model("clnet_resnet18", 16, pretrained="torchvision://resnet18")  # MMPose's spelling
    expected = torch.load(first.path, weights_only=True)["conv1.weight"]
    assert torch.equal(model.trunk.conv1.weight, expected) and model.pretrained_weights.sha256 == first.sha256


def test_a_server_that_closes_mid_file_leaves_nothing_in_the_cache(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    server.mode = "truncate"
    with pytest.raises(ClposeError) as caught:
        weights.resolve_pretrained("imagenet", "resnet18")
    message = str(caught.value)
    assert message.startswith(f"cannot download {entry.url}: ") and str(weights.cache_dir() / entry.filename) in message
    assert "--set model.pretrained=FILE" in message and "\n" not in message
    assert _cache_files() == []  # no partial file, no temporary file


def test_a_file_whose_hash_does_not_match_its_name_is_refused_and_not_kept(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes(), prefix="deadbeef")
    with pytest.raises(ClposeError, match=r"does not match its name's hash .*expected deadbeef.*nothing was kept"):
        weights.resolve_pretrained("imagenet", "resnet18")
    assert _cache_files() == [] and server.requests == {entry.filename: 1}


def test_a_damaged_cached_file_is_named_with_the_command_to_remove_it(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    path = weights.fetch(entry).path
    path.write_bytes(path.read_bytes()[:100])  # a truncated copy, or one a proxy replaced
    with pytest.raises(ClposeError, match=rf"remove it \(rm {path}\) and run again"):
        weights.resolve_pretrained("imagenet", "resnet18")
    assert server.requests == {entry.filename: 1} and path.stat().st_size == 100  # never used, never re-fetched


def test_offline_makes_no_request_and_names_the_url_and_the_cache_path(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    monkeypatch.setenv("CLPOSE_OFFLINE", "1")
    path = weights.cache_dir() / entry.filename
    with pytest.raises(ClposeError) as caught:
        weights.resolve_pretrained("imagenet", "resnet18")
    assert str(caught.value) == (
        f"ResNet18_Weights.TEST is not in the cache and CLPOSE_OFFLINE=1: download {entry.url} to {path} (e.g. "
        "`clpose weights fetch ResNet18_Weights.TEST` on a machine with a network), or use --set "
        "model.pretrained=FILE"
    )
    assert server.requests == {}


def test_a_mirror_serves_torchvision_file_names(server, monkeypatch) -> None:
    entry = weights.lookup("resnet18")
    assert entry.source() == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    monkeypatch.setenv("CLPOSE_WEIGHTS_MIRROR", server.url)
    assert entry.source() == f"{server.url}resnet18-f37072fd.pth"
    with pytest.raises(ClposeError, match=r"cannot download .*127\.0\.0\.1.*resnet18-f37072fd\.pth \(HTTP 404"):
        weights.fetch(entry)


_FETCH_IN_A_PROCESS = """
import sys
import clpose.weights as w
entry = w.WeightsFile("ResNet18_Weights.TEST", "resnet18", sys.argv[1], 0.0, "test")
w._EXTRA[entry.name] = entry  # the test's file in the catalogue, as the imagenet weights of resnet18
w.IMAGENET["resnet18"] = entry.name
print(w.resolve_pretrained("imagenet", "resnet18").sha256)
"""


def test_two_processes_fetching_at_once_end_with_one_good_file(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    server.mode = "slow"  # the first download takes a second: the second process arrives meanwhile
    argv = [sys.executable, "-c", _FETCH_IN_A_PROCESS, entry.url]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    digest = hashlib.sha256(server.files[entry.filename]).hexdigest()
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == [digest, digest]
    assert server.requests == {entry.filename: 1} and _cache_files() == [entry.filename]


def test_names_that_do_not_fit_are_one_line_errors(server, monkeypatch) -> None:
    with pytest.raises(ClposeError, match=r"ResNet50_Weights.IMAGENET1K_V1 are weights of resnet50, the model's trunk"):
        weights.resolve_pretrained("ResNet50_Weights.IMAGENET1K_V1", "resnet18")
    with pytest.raises(ClposeError, match=r"no ImageNet weights for the resnet10 trunk"):
        weights.resolve_pretrained("imagenet", "resnet10")
    with pytest.raises(ClposeError, match=r"unknown weights 'ResNet50_Weights.IMAGENET1K_V9' \(did you mean"):
        weights.resolve_pretrained("ResNet50_Weights.IMAGENET1K_V9", "resnet50")
    assert server.requests == {}


# -- training from `imagenet`: the recipe names the weights, the run records them -----------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    run_prepare("synthetic", root, root, synthetic={"train": 8, "val": 4, "size": 64, "workers": 1}, show=False)
    return root


def _mpii_recipe_argv(tiny: Path, out: Path) -> list[str]:
    """The paper's MPII recipe, as shipped, on tiny synthetic data: nothing says where the weights are."""
    sets = [f"data.root={tiny}", "data.dataset=synthetic", "data.input_size=64x64", "data.num_workers=0",
            "train.epochs=1", "train.batch_size=4", "eval.batch_size=4", "train.amp=off"]  # fmt: skip
    return ["train", str(REPO / "recipes" / "mpii_resnet50.yaml"), "--out", str(out)] + [
        a for s in sets for a in ("--set", s)
    ]


def test_the_mpii_recipe_starts_from_imagenet_weights_by_name_and_says_which(server, monkeypatch, tmp_path, tiny):
    entry = _register(monkeypatch, server, _state_dict_bytes("resnet50"), builder="resnet50",
                      name="ResNet50_Weights.IMAGENET1K_V1")  # fmt: skip
    cached = weights.fetch(entry).path  # the file is in the torch hub cache, as torchvision leaves it
    monkeypatch.setenv("CLPOSE_OFFLINE", "1")  # and nothing needs the network
    result = runner.invoke(app, _mpii_recipe_argv(tiny, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    said = "".join(result.output.split())  # the console wraps long paths
    line = f"pretrained: {entry.name} ({cached}, sha256 {digest[:12]}...): 258 trunk tensors; unused 62 (fc, layer4)"
    assert "".join(line.split()) in said
    recipe = (tmp_path / "run" / "recipe.yaml").read_text()
    assert f"loaded ResNet50_Weights.IMAGENET1K_V1: {cached} (sha256 {digest}, from {entry.url})" in recipe
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["pretrained"] == {"name": entry.name, "file": str(cached), "sha256": digest, "source": entry.url}
    # a resumed run takes its weights from the checkpoint: the cached file may be gone
    cached.unlink()
    argv = [*_mpii_recipe_argv(tiny, tmp_path / "run"), "--resume", "auto", "--set", "train.epochs=2"]
    resumed = runner.invoke(app, argv)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["pretrained"]["sha256"] == digest


def test_with_the_network_unreachable_training_ends_in_one_line(server, monkeypatch, tmp_path, tiny) -> None:
    monkeypatch.setenv("CLPOSE_WEIGHTS_MIRROR", "http://127.0.0.1:9/models/")  # the discard port: refused
    path = weights.cache_dir() / "resnet50-0676ba61.pth"
    result = runner.invoke(app, _mpii_recipe_argv(tiny, tmp_path / "run"))
    url = "http://127.0.0.1:9/models/resnet50-0676ba61.pth"
    one_line_error(result, f"cannot download {url} (", f"put the file at {path}", "--set model.pretrained=FILE")
    assert not (tmp_path / "run" / "last.pt").exists() and _cache_files() == []


# -- the command --------------------------------------------------------------------------------------------------


def test_clpose_weights_lists_and_fetches(server, monkeypatch) -> None:
    entry = _register(monkeypatch, server, _state_dict_bytes())
    listed = runner.invoke(app, ["weights", "list", "--kind", "trunk"])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if "ResNet18_Weights.TEST" in x)
    assert "imagenet of the resnet18 trunk" in line and line.rstrip(" │").endswith("no")
    assert "ResNet50_Weights.IMAGENET1K_V1" in listed.output and "fasterrcnn" not in listed.output
    fetched = runner.invoke(app, ["weights", "fetch", "resnet18"])
    assert fetched.exit_code == 0, fetched.output
    assert f"ResNet18_Weights.TEST: {weights.cache_dir() / entry.filename}" in " ".join(fetched.output.split())
    listed = runner.invoke(app, ["weights"])
    line = next(x for x in listed.output.splitlines() if "ResNet18_Weights.TEST" in x)
    assert line.rstrip(" │").endswith("verified")
    one_line_error(runner.invoke(app, ["weights", "fetch", "resnet1"]), "unknown weights 'resnet1'")
    one_line_error(runner.invoke(app, ["weights", "fetch"]), "give weights names to fetch, or --all")


def test_a_detector_by_name_from_the_cache(server, monkeypatch, tmp_path) -> None:
    """`--detector NAME` builds torchvision's detector without any weights and loads its COCO weights by name."""
    from test_inference import make_checkpoint
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict(), buffer)
    entry = _register(monkeypatch, server, buffer.getvalue(), builder="fasterrcnn_mobilenet_v3_large_fpn",
                      name="FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1")  # fmt: skip
    from clpose.data.prepare.synthetic import write_video

    clip = write_video(tmp_path / "clip.mp4", frames=2, seed=4, width=96, height=64)
    js = tmp_path / "a.json"
    argv = ["infer", str(clip), "--checkpoint", str(make_checkpoint(tmp_path / "c.pt")), "--detector",
            "fasterrcnn_mobilenet_v3_large_fpn", "--det-threshold", "0", "--json", str(js)]  # fmt: skip
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert server.requests == {entry.filename: 1} and len(json.loads(js.read_text())["frames"]) == 2
    assert runner.invoke(app, argv).exit_code == 0 and server.requests == {entry.filename: 1}  # from the cache
