"""Models: output shapes of every registered model, the paper's sizes, pretrained loading, speed modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from clpose.errors import ClposeError
from clpose.models import MODELS, build_model, check_input_size, final_output, output_stride
from clpose.models.backbones import LIGHT_TRUNKS

SMALL = {"stacks": 2}  # hourglasses: two stacks keep the tests fast


def _options(name: str) -> dict:
    return SMALL if "hourglass" in name else {}


def _count(name: str, num_keypoints: int, hw: tuple[int, int], **options) -> tuple[float, float]:
    """(params M, GMACs) counted on the meta device: no weights are initialised, nothing is computed."""
    with torch.device("meta"):
        model = build_model(name, num_keypoints, **options).eval()
        x = torch.zeros(1, 3, *hw)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return sum(p.numel() for p in model.parameters()) / 1e6, counter.get_total_flops() / 2e9


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("hw", [(64, 64), (128, 64)])
def test_forward_shapes_of_every_model(name: str, hw: tuple[int, int]) -> None:
    k = 5
    model = build_model(name, k, **_options(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    stride = output_stride(name)
    channels = 3 * k if MODELS[name].codec == "composite" else k
    expected = (2, channels, hw[0] // stride, hw[1] // stride)
    if model.num_stages > 1:
        assert isinstance(out, list) and len(out) == model.num_stages == 2
        assert all(tuple(o.shape) == expected for o in out)
    else:
        assert tuple(out.shape) == expected
    assert torch.isfinite(final_output(out)).all()  # the maps' size is the entry's stride's (`expected`)


def test_clnet_resnet50_matches_the_paper_sizes() -> None:
    params, macs = _count("clnet_resnet50", 17, (256, 192))
    assert 13.1 <= params <= 13.7 and 4.1 <= macs <= 4.3
    params, macs = _count("clnet_resnet50", 16, (256, 256))
    assert 13.1 <= params <= 13.7 and 5.4 <= macs <= 5.7
    _, macs = _count("clnet_resnet50", 17, (384, 288))
    assert 9.2 <= macs <= 9.7


@pytest.mark.parametrize(
    ("stride", "paper_params", "side"), [(4, 16.8, 64), (8, 15.7, 32), (16, 13.4, 16), (32, 28.9, 8)]
)
def test_stride_ablation_within_ten_percent_of_table_5(stride: int, paper_params: float, side: int) -> None:
    with torch.device("meta"):
        model = build_model("clnet_resnet50", 14, stride=stride)
        out = model(torch.zeros(1, 3, 256, 256))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - paper_params) / paper_params <= 0.10
    assert tuple(out.shape) == (1, 42, side, side)


def test_hourglasses_return_every_stage() -> None:
    for name, channels, side in (("hourglass", 16, 16), ("clnet_hourglass", 48, 4)):
        model = build_model(name, 16, stacks=3).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 64))
        assert len(out) == 3 and all(o.shape == (1, channels, side, side) for o in out)


def test_unknown_model_and_option_and_size_errors() -> None:
    with pytest.raises(ClposeError, match=r"did you mean clnet_resnet50\?.*valid: clnet_resnet10, clnet_resnet18"):
        build_model("clnet_resnet5O", 17)
    with pytest.raises(ClposeError, match="has no option 'stride'; its options: stacks"):
        build_model("hourglass", 16, stride=8)
    with pytest.raises(ClposeError, match="must be 4, 8, 16 or 32"):
        build_model("clnet_resnet18", 16, stride=2)
    with pytest.raises(
        ClposeError, match=r"250x192 does not fit clnet_resnet50: .* multiples of 16 \(nearest: 240x192 or 256x192\)"
    ):
        check_input_size("clnet_resnet50", (250, 192))
    check_input_size("clnet_resnet50", (256, 192))
    with pytest.raises(ClposeError, match="multiples of 64"):
        check_input_size("hourglass", (256, 160))


def test_pretrained_torchvision_state_dict_loads_into_the_trunk(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("clnet_resnet18", 16, pretrained=str(path))
    assert torch.equal(model.trunk.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(model.trunk.bn1.running_mean, reference.bn1.running_mean)
    baseline = build_model("simplebaseline_resnet18", 16, pretrained=str(path))
    assert torch.equal(baseline.trunk.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)


@pytest.mark.parametrize("arch", list(LIGHT_TRUNKS))
def test_light_trunks_load_their_torchvision_state_dict(arch: str, tmp_path: Path) -> None:
    reference = getattr(torchvision.models, arch)(weights=None)
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)  # the whole classifier: later stages and fc are unused keys
    model = build_model(f"clnet_{arch}", 16, pretrained=str(path))
    ours, theirs = model.trunk.state_dict(), reference.state_dict()
    assert ours.keys() < theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in ours.items())
    assert model.trunk.out_channels == LIGHT_TRUNKS[arch][4] == model.head[0].shortcut[0].in_channels
    other = tmp_path / "other.pth"  # another classifier's file: named as such
    torch.save(torchvision.models.regnet_y_400mf(weights=None).state_dict(), other)
    with pytest.raises(ClposeError, match=rf"other\.pth (do not fit|share no key with) {LIGHT_TRUNKS[arch][1]}"):
        build_model(f"clnet_{arch}", 16, pretrained=str(other))


def test_resnet10_has_one_basic_block_per_stage() -> None:
    model = build_model("clnet_resnet10", 16)
    assert [len(getattr(model.trunk, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    params, macs = _count("clnet_resnet10", 16, (128, 128))
    _, macs18 = _count("clnet_resnet18", 16, (128, 128))
    assert 1.5 < params < 1.7 and macs < 0.55 * macs18


def test_pretrained_errors_name_the_file(tmp_path: Path) -> None:
    wrong = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(ClposeError, match=r"resnet50\.pth do not fit ResNet-18: .* other shapes"):
        build_model("clnet_resnet18", 16, pretrained=str(wrong))
    with pytest.raises(ClposeError, match=r"pretrained weights .*nope\.pth do not exist"):
        build_model("clnet_resnet18", 16, pretrained=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ClposeError, match=r"garbage\.pth cannot be read: it is corrupt or not a PyTorch file"):
        build_model("clnet_resnet18", 16, pretrained=str(garbage))
    other = tmp_path / "other.pth"
    torch.save({"head.weight": torch.zeros(3)}, other)
    with pytest.raises(ClposeError, match=r"other\.pth share no key with ResNet-18"):
        build_model("clnet_resnet18", 16, pretrained=str(other))


CHANNELS_LAST_MODELS = ["clnet_resnet18", "clnet_hourglass", "simplebaseline_resnet18", "hourglass"]


@pytest.mark.parametrize("name", [*CHANNELS_LAST_MODELS, "clnet_regnet_x_400mf", "clnet_mobilenet_v3_large"])
def test_channels_last_and_bf16_autocast_agree_with_fp32(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 4, **_options(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = final_output(model(x))
        cl = model.to(memory_format=torch.channels_last)
        fast = final_output(cl(x.to(memory_format=torch.channels_last)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = final_output(cl(x.to(memory_format=torch.channels_last)))
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    scale = ref.abs().max().item()
    assert (half.float() - ref).abs().max().item() <= 0.05 * scale + 1e-4


@pytest.mark.parametrize(("name", "options"), [("clnet_resnet18", {"stride": 8}), ("hourglass", {"stacks": 1})])
def test_torch_compile_matches_eager(name: str, options: dict) -> None:
    # stride 8 adds the transposed-conv up-sampling block, so these two cover every layer type of the registry
    model = build_model(name, 4, **options).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        compiled = final_output(torch.compile(model)(x))
        eager = final_output(model(x))
    if not torch.isfinite(compiled).all() and str(torch._inductor.cpu_vec_isa.pick_vec_isa()) == "avx2":
        # seen with torch 2.14.1 where inductor generates AVX2 code (ATEN_CPU_CAPABILITY=avx2): NaN out of the whole
        # CLNet-ResNet-18 stride-8 graph, while each of its parts compiles correctly; eager is unaffected
        pytest.xfail("torch inductor's AVX2 code returns non-finite maps for this graph (an upstream bug)")
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [*CHANNELS_LAST_MODELS, "clnet_mobilenet_v3_large"])
def test_onnx_export_reproduces_pytorch(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the export extra (pip install 'clpose[export]') is not installed")
    pytest.importorskip("onnxscript", reason="the export extra (pip install 'clpose[export]') is not installed")
    model = build_model(name, 4, **_options(name)).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    expected = expected if isinstance(expected, list) else [expected]
    assert len(outputs) == len(expected)
    for got, ref in zip(outputs, expected, strict=True):
        assert abs(got - ref.numpy()).max() < 1e-4
