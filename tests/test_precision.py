"""Precision chosen from the machine (`amp: auto`): CPUs with and without native bf16, a capped oneDNN, CUDA
capability 7.0 and 8.0, explicit choices and their warning, recipes and old checkpoints, the fp16 GradScaler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import clpose.precision as precision
from clpose.config import Recipe, recipe_to_dict
from clpose.console import err_console
from clpose.errors import ClposeError
from clpose.precision import FP32, Precision, resolve_precision
from clpose.recipes import load_recipe

native_bf16 = precision.cpu_native_bf16.__wrapped__  # uncached: every test decides afresh


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Set what the machine says: cpu(flags, onednn, cap, aten) mocks the signals clpose.precision reads. The timing
    probe raises: `auto` must never time (a timing under load is noise)."""

    def set_cpu(flags: list[str], onednn: bool = True, cap: str | None = None, aten: str = "AVX512") -> None:
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
        monkeypatch.setattr(precision, "onednn_bf16", lambda: onednn)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
        for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            monkeypatch.delenv(name, raising=False)
        if cap is not None:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        monkeypatch.setattr(precision, "cpu_native_bf16", native_bf16)
        precision._warned.clear()

    return set_cpu


def test_auto_on_a_cpu_without_native_bf16_is_fp32(cpu) -> None:
    cpu([])
    p = resolve_precision("auto", "cpu")
    assert (p.name, p.requested, p.dtype, p.grad_scaler) == ("fp32", "auto", None, False)
    assert p.reason == "CPU without native bf16 (no AMX or AVX512-BF16 in its flags)"
    assert p.describe() == f"fp32 (auto: {p.reason})"


@pytest.mark.parametrize("flags", [["AMX"], ["AVX512-BF16"], ["AMX", "AVX512-BF16"]])
def test_auto_on_a_cpu_with_native_bf16_is_bf16(cpu, flags: list[str]) -> None:
    cpu(flags)
    p = resolve_precision("auto", torch.device("cpu"))
    assert (p.name, p.dtype, p.native) == ("bf16", torch.bfloat16, True)
    assert p.reason == f"CPU with native bf16 ({' and '.join(flags)}; oneDNN bf16 kernels, torch kernels at AVX512)"


@pytest.mark.parametrize(
    ("cap", "onednn", "aten", "native", "fragment"),
    [
        ("AVX2", False, "AVX2", False, "ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN from its bf16 kernels"),
        # oneDNN still says yes at AVX512_CORE (it emulates bf16 there): the cap itself decides
        ("AVX512_CORE", True, "AVX512", False, "ONEDNN_MAX_CPU_ISA=AVX512_CORE keeps oneDNN"),
        ("avx512_core_vnni", True, "AVX512", False, "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI keeps oneDNN"),
        ("AVX2_VNNI_2", True, "AVX512", False, "ONEDNN_MAX_CPU_ISA=AVX2_VNNI_2 keeps oneDNN"),
        ("SOMETHING", True, "AVX512", False, "(a value clpose does not know)"),
        (None, False, "AVX512", False, "oneDNN reports no bf16 kernels"),
        (None, True, "AVX2", False, "torch's kernels run at AVX2 (ATEN_CPU_CAPABILITY), which emulates bf16"),
        ("AVX512_CORE_BF16", True, "AVX512", True, "CPU with native bf16"),
        ("AVX512_CORE_AMX", True, "AVX512", True, "CPU with native bf16"),
        ("ALL", True, "AVX512", True, "CPU with native bf16"),
        ("DEFAULT", True, "AVX512", True, "CPU with native bf16"),
    ],
)
def test_caps_on_onednn_or_torch_make_bf16_emulated(cpu, cap, onednn, aten, native, fragment) -> None:
    """What a cap looks like: the flags still list AMX; the cap (or oneDNN's or torch's answer) decides."""
    cpu(["AMX"], onednn=onednn, cap=cap, aten=aten)
    p = resolve_precision("auto", "cpu")
    assert p.name == ("bf16" if native else "fp32") and fragment in p.reason, p.reason


def test_the_decision_is_a_pure_function_of_what_the_machine_reports(cpu) -> None:
    """The same machine gives the same answer every time: no timing enters (the probe raises if called)."""
    cpu(["AMX", "AVX512-BF16"])
    answers = {native_bf16() for _ in range(10)}
    assert len(answers) == 1 and next(iter(answers))[0] is True
    assert precision.decide_bf16(["AMX"], True, None, "AVX512") == precision.decide_bf16(["AMX"], True, None, "AVX512")


def test_explicit_choices_are_honoured(cpu) -> None:
    cpu(["AMX"])
    assert resolve_precision("off", "cpu") is FP32
    assert resolve_precision("bf16", "cpu") == Precision("bf16", "bf16", resolve_precision("auto", "cpu").reason)
    with pytest.raises(ClposeError, match="fp16 is for CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ClposeError, match="expected one of auto, off, bf16, fp16"):
        resolve_precision("fp8", "cpu")


def test_explicit_bf16_without_native_bf16_runs_and_warns_once(cpu) -> None:
    cpu([])
    with err_console.capture() as captured:
        first = resolve_precision("bf16", "cpu")
        second = resolve_precision("bf16", "cpu")
    assert first == second and (first.name, first.native) == ("bf16", False)
    text = captured.get()
    assert text.count("warning:") == 1 and "emulated" in text and "10x slower than fp32" in text


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch):
    def set_gpu(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
        precision._warned.clear()

    return set_gpu


def test_cuda_8_0_resolves_to_bf16_and_7_0_to_fp16_with_a_grad_scaler(gpu) -> None:
    gpu((8, 0))
    p = resolve_precision("auto", "cuda")
    assert (p.name, p.grad_scaler) == ("bf16", False) and "compute capability 8.0" in p.reason
    gpu((7, 0))
    p = resolve_precision("auto", "cuda:0")
    assert (p.name, p.grad_scaler) == ("fp16", True) and "GradScaler" in p.reason
    with err_console.capture() as captured:
        p = resolve_precision("bf16", "cuda")
    assert (p.name, p.native) == ("bf16", False) and "emulated" in captured.get()
    assert resolve_precision("fp16", "cuda").name == "fp16"
    assert resolve_precision("off", "cuda") is FP32


def test_a_cpu_capped_to_avx2_resolves_to_fp32() -> None:
    """The cap that makes any CPU one without native bf16 (docs/benchmarks.md measures its effect)."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    code = "from clpose.precision import resolve_precision as r; p = r('auto', 'cpu'); print(p.name, '|', p.reason)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("fp32 |"), out


def test_recipes_default_to_auto_and_old_ones_saying_bf16_still_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: clnet_resnet18}\ndata: {dataset: synthetic, root: x}\n")
    assert load_recipe(path).train.amp == "auto"
    assert load_recipe(path, ["train.amp=bf16"]).train.amp == "bf16"
    path.write_text(path.read_text() + "train: {amp: off}\n")  # YAML 1.1 reads off as false
    assert load_recipe(path).train.amp == "off"


def test_no_shipped_recipe_hard_codes_a_precision() -> None:
    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
    assert recipes and all(load_recipe(p).train.amp == "auto" for p in recipes)
    assert Recipe.__dataclass_fields__["train"].default_factory().amp == "auto"


def _old_bf16_checkpoint(path: Path) -> Path:
    """A checkpoint as the versions before `auto` wrote them: its recipe says train.amp bf16."""
    from clpose.models import build_model
    from clpose.recipes import recipe_from_dict

    raw = {
        "model": {"name": "clnet_resnet18"},
        "data": {"dataset": "synthetic", "root": "unused", "input_size": "64x64"},
        "train": {"amp": "bf16", "channels_last": True},
    }
    recipe = recipe_from_dict(raw, "old")
    model = build_model("clnet_resnet18", 16)
    state = {"model": model.state_dict(), "recipe": recipe_to_dict(recipe), "num_keypoints": 16, "epoch": 3}
    state.update({"skeleton": "synthetic", "model_name": "clnet_resnet18", "best_metric": 0.0, "metric": "pck"})
    state["version"] = "0.1.0"
    torch.save(state, path)
    return path


def test_an_old_bf16_checkpoint_infers_in_fp32_on_a_cpu_without_native_bf16(cpu, tmp_path: Path) -> None:
    from clpose.engine.posemodel import PoseModel
    from clpose.inference.predictor import Predictor

    cpu([])
    checkpoint = _old_bf16_checkpoint(tmp_path / "old.pt")
    with err_console.capture() as captured:
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert predictor.precision.name == "fp32" and "warning" not in captured.get()
    image = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    (pose,) = predictor.predict(image)
    assert pose.keypoints.shape == (16, 2) and np.isfinite(pose.keypoints).all()
    # the same weights in fp32 directly: auto did not autocast
    pm = predictor.pose
    reference = Predictor(PoseModel(pm.model, pm.codec, pm.skeleton, (64, 64), channels_last=True))
    np.testing.assert_array_equal(reference.predict(image)[0].keypoints, pose.keypoints)
    assert Predictor.from_checkpoint(checkpoint, device="cpu", amp="bf16").precision.name == "bf16"


def test_fp16_training_goes_through_the_grad_scaler() -> None:
    """The fp16 path of train_step (autocast + GradScaler), on CUDA where there is one, else on the CPU's fp16
    autocast with a CPU GradScaler: the scaler scales the loss and the weights still move."""
    from clpose.codecs import CompositeCodec
    from clpose.losses import build_loss
    from clpose.models import build_model
    from clpose.recipes import recipe_from_dict
    from clpose.training.loop import train_step
    from clpose.training.setup import Step

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        scaler = torch.amp.GradScaler(device.type, init_scale=1024.0)
        with torch.autocast(device.type, dtype=torch.float16):
            torch.nn.Linear(2, 2).to(device)(torch.ones(1, 2, device=device))
    except (RuntimeError, AssertionError) as e:  # an old torch without CPU fp16 autocast or a CPU GradScaler
        pytest.skip(f"fp16 autocast with a GradScaler is not available on {device} here: {e}")
    data = {"dataset": "synthetic", "root": "x"}
    recipe = recipe_from_dict({"model": {"name": "clnet_resnet18"}, "data": data, "loss": {"region": "union"}})
    torch.manual_seed(0)
    model = build_model("clnet_resnet18", 2).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    batch = {
        "image": torch.randn(2, 3, 32, 32),
        "targets": {
            "heatmaps": torch.rand(2, 2, 2, 2),
            "offsets": torch.rand(2, 4, 2, 2) - 0.5,
            "keypoint_weights": torch.ones(2, 2),
        },
    }
    before = model.predict.weight.detach().clone()
    fp16 = Precision("fp16", "fp16", "test")
    keys = ("heatmaps", "offsets", "keypoint_weights")
    step = Step(model, build_loss(recipe.loss, CompositeCodec((32, 32), 16)), optimizer, scaler, device, fp16, keys)
    parts = train_step(step, batch, recipe.train)
    assert torch.isfinite(parts["loss"]) and scaler.is_enabled()
    assert scaler.get_scale() in (1024.0, 512.0)  # kept, or halved once after an overflow
    assert scaler.state_dict()["scale"] == scaler.get_scale()
    assert scaler.get_scale() == 512.0 or not torch.equal(before, model.predict.weight.detach())
