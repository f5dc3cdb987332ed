"""Engine units: the codecs' flip-back against the keypoint it must recover, the learning-rate schedule's values,
every optimizer branch, and a backward pass through every registered model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.config import TrainConfig
from clpose.models import MODELS, build_model, check_input_size, option_names
from clpose.skeletons import get_skeleton
from clpose.training.setup import build_optimizer, lr_factor

SKELETON = get_skeleton("synthetic")  # MPII layout: 6 flip pairs, 4 joints on the axis
pytestmark = pytest.mark.usefixtures("one_torch_thread")
K = SKELETON.num_keypoints


def _flipped_targets(codec, kpts: np.ndarray) -> dict[str, np.ndarray]:
    """The targets of the horizontally mirrored crop: x' = W - 1 - x, left and right joints swapped."""
    w = codec.input_hw[1]
    flipped = kpts.copy()
    flipped[:, 0] = w - 1 - kpts[:, 0]
    flipped = flipped[SKELETON.flip_index]
    return codec.encode(flipped, np.ones(len(flipped)))


def _keypoints(rng: np.random.Generator, lo: tuple[float, float], hi: tuple[float, float], n: int) -> np.ndarray:
    """n people's K keypoints (n, K, 2), uniform in [lo, hi] (x, y)."""
    return rng.uniform(lo, hi, size=(n, K, 2))


def test_composite_flip_back_recovers_the_keypoints_of_the_original_crop() -> None:
    codec = CompositeCodec((64, 48), stride=16)  # (H, W): 4 x 3 cells, so an H/W swap cannot pass
    h, w = codec.input_hw
    people = _keypoints(np.random.default_rng(0), (0, 0), (w - 1, h - 1), 20)
    flipped = [_flipped_targets(codec, kpts) for kpts in people]
    out = torch.from_numpy(np.stack([np.concatenate([t["heatmaps"], t["offsets"]]) for t in flipped]))
    assert tuple(out.shape) == (20, 3 * K, 4, 3)
    decoded, _ = codec.decode_output(codec.flip_back(out, SKELETON.flip_index))
    np.testing.assert_allclose(decoded.numpy(), people, rtol=0, atol=1e-3)
    # without the flip-back the same maps decode to the mirrored, swapped person: the check is not vacuous
    raw, _ = codec.decode_output(out)
    assert np.abs(raw.numpy() - people).max() > 10


def test_heatmap_flip_back_recovers_the_keypoints_within_quantisation_and_its_one_pixel_shift() -> None:
    codec = HeatmapCodec((64, 48), stride=4, sigma=2.0)  # (H, W): 16 x 12 heatmap
    h, w = codec.input_hw
    # Away from the borders: x in [6, W - 7] keeps the mirrored peak off the heatmap's last column (whose value
    # the one-column shift both moves to column 1 and leaves in column 0, a tie the arg-max settles on column 0,
    # so the flip-back alone decodes x = 4.6 to 0; the flip-test average of the next test is right there), and
    # y in [4, H - 5] keeps round(y / 4) on the map.
    people = _keypoints(np.random.default_rng(1), (6, 4), (w - 7, h - 5), 40)
    maps = torch.from_numpy(np.stack([_flipped_targets(codec, kpts)["heatmaps"] for kpts in people]))
    assert tuple(maps.shape) == (40, K, 16, 12)
    decoded, scores = codec.decode(codec.flip_back(maps, SKELETON.flip_index))
    err = decoded.numpy() - people
    assert (scores.numpy() > 0.99).all()
    # y is not flipped: the codec's own rounding to the stride-4 grid, at most half a heatmap pixel (2 px), as
    # in tests/test_codecs.py's round trip.
    assert np.abs(err[..., 1]).max() <= 2.0 + 1e-4
    # x: the same rounding plus the reference implementations' alignment (mirror, then shift one column): with
    # u = x / S, mirroring puts the peak at u - (1 - 1/S) heatmap px, and the integer shift of one column leaves
    # +1/S heatmap px = +1 crop pixel (when S divides W). Exactly: x_back = W - S round((W - 1 - x) / S).
    expected_x = w - codec.stride * np.floor((w - 1 - people[..., 0]) / codec.stride + 0.5)
    np.testing.assert_allclose(decoded.numpy()[..., 0], expected_x, rtol=0, atol=1e-4)
    assert err[..., 0].min() >= -1.0 - 1e-4 and err[..., 0].max() <= 3.0 + 1e-4
    assert abs(err[..., 0].mean() - 1.0) < 0.25 and abs(err[..., 1].mean()) < 0.25


def test_heatmap_flip_test_average_is_within_quantisation_up_to_the_left_border() -> None:
    """What PoseModel.maps computes, (plain + flip_back(flipped)) / 2, decodes within half a heatmap pixel for
    keypoints from the left border on (the right border is excluded: round(x / 4) = W / 4 is off the map for
    x >= W - 2, for the plain target too)."""
    codec = HeatmapCodec((64, 48), stride=4, sigma=2.0)
    h, w = codec.input_hw
    people = _keypoints(np.random.default_rng(3), (0, 4), (w - 4, h - 5), 60)
    plain = torch.from_numpy(np.stack([codec.encode(k, np.ones(K))["heatmaps"] for k in people]))
    flipped = torch.from_numpy(np.stack([_flipped_targets(codec, k)["heatmaps"] for k in people]))
    decoded, _ = codec.decode((plain + codec.flip_back(flipped, SKELETON.flip_index)) / 2)
    assert np.abs(decoded.numpy() - people).max() <= 2.0 + 1e-4


def test_heatmap_flip_back_with_dark_is_the_keypoint_shifted_by_one_pixel_in_x() -> None:
    # DARK encodes at u exactly and decodes nearly exactly (tests/test_codecs.py: < 0.05 px), which isolates the
    # flip-back's own shift. A larger crop: DARK needs >= 7 heatmap px between the keypoint and the border.
    codec = HeatmapCodec((256, 192), stride=4, sigma=2.0, dark=True)
    people = _keypoints(np.random.default_rng(2), (28, 28), (164, 228), 10)
    maps = torch.from_numpy(np.stack([_flipped_targets(codec, kpts)["heatmaps"] for kpts in people]))
    decoded, _ = codec.decode(codec.flip_back(maps, SKELETON.flip_index))
    err = decoded.numpy() - people
    np.testing.assert_allclose(err[..., 0], 1.0, rtol=0, atol=0.05)  # the +1 px of the one-column alignment
    np.testing.assert_allclose(err[..., 1], 0.0, rtol=0, atol=0.05)


# -- learning-rate schedule -----------------------------------------------------------------------------------


def test_lr_warmup_is_linear_per_step_and_then_flat() -> None:
    cfg = TrainConfig(epochs=10, schedule="multistep", milestones=[100], warmup_epochs=2)
    f = lr_factor(cfg, steps_per_epoch=5)  # warm-up: 10 steps, factor (step + 1) / 10
    assert [f(s) for s in range(12)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1], abs=1e-12)
    half = lr_factor(TrainConfig(epochs=10, milestones=[100], warmup_epochs=0.5), steps_per_epoch=4)  # 2 steps
    assert [half(s) for s in range(4)] == pytest.approx([0.5, 1.0, 1.0, 1.0], abs=1e-12)
    none = lr_factor(TrainConfig(epochs=10, milestones=[100], warmup_epochs=0), steps_per_epoch=4)
    assert none(0) == 1.0 and none(39) == 1.0


def test_lr_multistep_multiplies_by_gamma_at_each_milestone() -> None:
    cfg = TrainConfig(epochs=10, schedule="multistep", milestones=[3, 6], gamma=0.1, warmup_epochs=0)
    f = lr_factor(cfg, steps_per_epoch=4)
    expected = {0: 1.0, 11: 1.0, 12: 0.1, 23: 0.1, 24: 0.01, 39: 0.01}  # epoch = step / 4
    assert {s: f(s) for s in expected} == pytest.approx(expected, abs=1e-12)
    # with warm-up, both factors multiply
    g = lr_factor(TrainConfig(epochs=10, milestones=[1], gamma=0.5, warmup_epochs=2), steps_per_epoch=4)
    assert g(3) == pytest.approx(0.5, abs=1e-12) and g(4) == pytest.approx(0.5 * 5 / 8, abs=1e-12)


def test_lr_cosine_is_one_at_the_start_half_in_the_middle_and_zero_at_the_end() -> None:
    f = lr_factor(TrainConfig(epochs=10, schedule="cosine", warmup_epochs=0), steps_per_epoch=4)
    assert f(0) == pytest.approx(1.0, abs=1e-12)
    assert f(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)  # a quarter of the way
    assert f(20) == pytest.approx(0.5, abs=1e-12)
    assert f(40) == pytest.approx(0.0, abs=1e-12) and f(39) < 0.002
    assert f(60) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0, does not rise again
    # with warm-up the cosine still counts from step 0 (it is not delayed by the warm-up): at the end of a
    # one-epoch warm-up the factor is the cosine at epoch 0.75, and the middle is still 0.5
    w = lr_factor(TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1), steps_per_epoch=4)
    assert w(0) == pytest.approx(0.25, abs=1e-12)  # warm-up 1/4 x cosine at epoch 0 (1)
    assert w(3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.075)), abs=1e-12)
    assert w(20) == pytest.approx(0.5, abs=1e-12) and w(40) == pytest.approx(0.0, abs=1e-12)


def test_lr_factor_drives_lambda_lr_per_step() -> None:
    """As train.py uses it: a LambdaLR stepped once per optimizer step gives lr x factor(step)."""
    cfg = TrainConfig(epochs=2, lr=0.01, schedule="cosine", warmup_epochs=0.5)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    f = lr_factor(cfg, steps_per_epoch=4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    for step in range(8):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * f(step), abs=1e-15)
        opt.step()
        sched.step()


# -- optimizers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "has_momentum"),
    [
        ("adam", torch.optim.Adam, False),
        ("adamw", torch.optim.AdamW, False),
        ("sgd", torch.optim.SGD, True),
        ("rmsprop", torch.optim.RMSprop, True),
    ],
)
def test_every_optimizer_builds_with_the_recipes_settings_and_steps(name: str, cls: type, has_momentum: bool) -> None:
    cfg = TrainConfig(optimizer=name, lr=0.05, momentum=0.7, weight_decay=1e-3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)  # frozen parameters are not handed to the optimizer
    opt = build_optimizer(cfg, model)
    assert type(opt) is cls
    (group,) = opt.param_groups
    assert group["lr"] == 0.05 and group["weight_decay"] == 1e-3
    if has_momentum:
        assert group["momentum"] == 0.7
    if name == "sgd":
        assert group["nesterov"] is True
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(group["params"]) == len(trainable) == 3
    assert all(a is b for a, b in zip(group["params"], trainable, strict=True))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(torch.randn(8, 4, generator=torch.Generator().manual_seed(1))).pow(2).mean()
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), f"{name} did not change {n}"
        else:
            assert torch.equal(p, before[n])


# -- backward through every model -------------------------------------------------------------------------------


def _small(name: str) -> dict:
    """Hourglasses with two stacks: the smallest that also runs the modules between stacks."""
    return {"stacks": 2} if "stacks" in option_names(MODELS[name]) else {}


@pytest.mark.parametrize("name", list(MODELS))
def test_backward_gives_every_parameter_a_finite_gradient(name: str) -> None:
    options = _small(name)
    hw = (64, 64)
    check_input_size(name, hw, **options)  # the smallest input every model accepts (hourglass: 64)
    torch.manual_seed(0)
    model = build_model(name, 4, **options).train()
    # batch 2: at 64x64 the hourglass's lowest level is 1x1, where training-mode BatchNorm needs > 1 value
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0))
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    assert len(outs) == model.num_stages
    sum(o.float().mean() for o in outs).backward()
    params = dict(model.named_parameters())
    assert params
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]} ({len(missing)} in all)"
    bad = [n for n, p in params.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad[:5]}"
    # and the gradient reaches every parameter (a detached branch would leave one at exactly zero)
    zero = [n for n, p in params.items() if not p.grad.any()]
    assert not zero, f"all-zero gradient for {zero[:5]}"
