"""Trunks cut from torchvision classifiers (ResNets, and light ones for CPUs), and loading their torchvision ImageNet
weights: by name (`imagenet`, `ResNet50_Weights.IMAGENET1K_V1`: clpose.weights fetches and verifies them) or from a
local file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import resnet

from clpose.config import Options, option
from clpose.console import console
from clpose.errors import ClposeError
from clpose.safeload import check_finite_weights, load_tensors
from clpose.weights import Resolved, resolve_pretrained


@dataclass
class TrunkOptions(Options):
    """The recipe's `model` section of a network on a torchvision ImageNet trunk."""

    pretrained: str | None = option(
        None,
        "the trunk's torchvision ImageNet weights: imagenet (its reference weights, e.g. "
        "ResNet50_Weights.IMAGENET1K_V1, fetched once and cached), a torchvision weights name "
        "(ResNet50_Weights.IMAGENET1K_V2, torchvision://resnet50) or a local state dict file; null: from scratch",
    )


def resnet10(weights: None = None) -> resnet.ResNet:
    """ResNet-10: torchvision's ResNet with one BasicBlock per stage (ResNet-18 has two). torchvision ships no
    ImageNet weights for it; it is the trunk that trains fastest from scratch on a CPU (clpose demo)."""
    return resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1])


_RESNETS = {
    10: resnet10,
    18: resnet.resnet18,
    34: resnet.resnet34,
    50: resnet.resnet50,
    101: resnet.resnet101,
    152: resnet.resnet152,
}


class ResNetTrunk(nn.Module):
    """The stem and the first `num_layers` stages of a torchvision ResNet (3: stride 16, 4: stride 32).

    Submodule names are torchvision's (conv1, bn1, layer1, ...), so its ImageNet state dicts load directly.
    """

    def __init__(self, depth: int, num_layers: int = 3) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ClposeError(f"ResNet depth {depth} is not available; valid: {', '.join(map(str, _RESNETS))}")
        full = _RESNETS[depth](weights=None)
        self.depth = depth
        self.label, self.builder = f"ResNet-{depth}", f"resnet{depth}"  # builder: torchvision's name of the model
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3
        self.num_layers = num_layers
        if num_layers == 4:
            self.layer4 = full.layer4
        elif num_layers != 3:
            raise ClposeError(f"a ResNet trunk has 3 or 4 stages here, got {num_layers}")
        expansion = 4 if depth >= 50 else 1
        self.out_channels = (256 if num_layers == 3 else 512) * expansion
        self.stride = 16 if num_layers == 3 else 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.num_layers == 4:
            x = self.layer4(x)
        return x


# name -> (torchvision builder, its label, the top-level modules kept in order, how many entries of a
# sequential one are kept, channels at stride 16). Each keeps the classifier up to its last stride-16 stage.
LIGHT_TRUNKS: dict[str, tuple[Callable[..., nn.Module], str, tuple[str, ...], dict[str, int], int]] = {
    "regnet_x_400mf": (tvm.regnet_x_400mf, "RegNetX-400MF", ("stem", "trunk_output"), {"trunk_output": 3}, 160),
    "shufflenet_v2_x1_0": (
        tvm.shufflenet_v2_x1_0,
        "ShuffleNetV2-1.0",
        ("conv1", "maxpool", "stage2", "stage3"),
        {},
        232,
    ),
    "mobilenet_v3_large": (tvm.mobilenet_v3_large, "MobileNetV3-Large", ("features",), {"features": 13}, 112),
}


class LightTrunk(nn.Module):
    """The stride-16 part of a light torchvision classifier (LIGHT_TRUNKS), under torchvision's module names,
    so that its ImageNet state dict loads directly (the later stages' and the classifier's keys are unused)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        if arch not in LIGHT_TRUNKS:
            raise ClposeError(f"unknown light trunk {arch!r}; valid: {', '.join(LIGHT_TRUNKS)}")
        build, self.label, self.order, keep, self.out_channels = LIGHT_TRUNKS[arch]
        self.builder = arch
        device = torch.get_default_device()
        with torch.device("cpu"):  # torchvision sizes RegNet's stages with tensor arithmetic, which meta cannot run
            full = build(weights=None).to(device)
        for name in self.order:
            module = getattr(full, name)
            self.add_module(name, module[: keep[name]] if name in keep else module)
        self.stride = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        return x


def load_pretrained(trunk: ResNetTrunk | LightTrunk, spec: str | Path) -> Resolved:
    """Load torchvision ImageNet weights into `trunk`: `imagenet`, a weights name (ResNet50_Weights.IMAGENET1K_V2,
    torchvision://resnet50) fetched and verified by clpose.weights, or a local state dict file. Returns what was
    loaded (name, file, SHA-256, source), which training records in the run folder and the checkpoint.

    The file must be a state dict of the trunk's torchvision classifier, tensor for tensor: every tensor of the
    trunk there (BN step counters aside, absent from older files) and every tensor of the file a tensor of that
    classifier of the same shape, its head (fc.*, classifier.*) excepted. The later stages a trunk leaves out
    (layer4.* of a stride-16 trunk) are checked but not loaded. Anything else is a ClposeError naming the file, the
    first tensor that does not fit and the counts: a ResNet-34 file shares all of ResNet-18's names and shapes and
    has more, and is refused.
    """
    resolved = resolve_pretrained(str(spec), trunk.builder)
    path = resolved.path
    state = load_tensors(path, "pretrained weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ClposeError(f"pretrained weights {path} are not a state dict of tensors by name")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    check_finite_weights(state, f"pretrained weights {path}")  # a NaN trunk would train to NaN, blamed on the lr
    own = trunk.state_dict()
    if not any(k in own for k in state):
        raise ClposeError(
            f"pretrained weights {path} share no key with {trunk.label} (first key: {next(iter(state), 'none')})"
        )
    _check_fit(trunk, state, path)
    trunk.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    unused = sorted({k.split(".")[0] for k in state if k not in own})
    loaded = sum(k in own for k in state)
    console.print(
        f"pretrained: {resolved.describe()}: {loaded} trunk tensors; "
        f"unused {len(state) - loaded}{' (' + ', '.join(unused) + ')' if unused else ''}"
    )
    return resolved


def _classifier_shapes(trunk: ResNetTrunk | LightTrunk) -> dict[str, torch.Size]:
    """Names and shapes of the whole torchvision classifier the trunk was cut from (no weights are made)."""
    build = _RESNETS[trunk.depth] if isinstance(trunk, ResNetTrunk) else LIGHT_TRUNKS[trunk.builder][0]
    try:
        with torch.device("meta"):
            full = build(weights=None)
    except NotImplementedError:  # RegNet sizes its stages with tensor arithmetic, which meta cannot run
        with torch.device("cpu"):
            full = build(weights=None)
    return {k: v.shape for k, v in full.state_dict().items()}


def _check_fit(trunk: ResNetTrunk | LightTrunk, state: dict[str, torch.Tensor], path: Path) -> None:
    """The one check that a pretrained state dict is the trunk's classifier (load_pretrained's rule)."""
    reference, own = _classifier_shapes(trunk), trunk.state_dict()
    head = next(reversed(reference)).split(".")[0] + "."  # the classifier's last module: fc, classifier
    other_shape, not_there, problems = 0, 0, []
    for k, v in state.items():
        if k.startswith(head):
            continue
        if k not in reference:
            not_there += 1
            problems.append(f"{k} {tuple(v.shape)} is in the file, not in {trunk.builder}")
        elif v.shape != reference[k]:
            other_shape += 1
            problems.append(f"{k} is {tuple(v.shape)} in the file, {tuple(reference[k])} in the model")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    problems += [f"{k} {tuple(own[k].shape)} of the trunk is not in the file" for k in missing]
    if problems:
        raise ClposeError(
            f"pretrained weights {path} do not fit {trunk.label}: first {problems[0]}; {other_shape} tensors have "
            f"other shapes, {not_there} are not in {trunk.builder}, {len(missing)} of the trunk's {len(own)} are "
            f"missing; is it a {trunk.label} state dict?"
        )
