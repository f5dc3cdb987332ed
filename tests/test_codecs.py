"""Codecs: Eq. 1-3 by hand, the exact round trip, batched decode, flip alignment and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.errors import ClposeError
from clpose.skeletons import COCO, MPII


def _decode_np(codec: CompositeCodec, targets: dict) -> tuple[np.ndarray, np.ndarray]:
    kpts, scores = codec.decode(torch.from_numpy(targets["heatmaps"])[None], torch.from_numpy(targets["offsets"])[None])
    return kpts[0].numpy(), scores[0].numpy()


def test_encode_matches_equations_on_a_2x2_grid() -> None:
    # 8x8 crop, S = 4: cells centred at x, y in {2, 6}. Keypoint g = (5, 3), sigma = 4.
    codec = CompositeCodec((8, 8), stride=4, sigma=4.0, tau=0.6)
    t = codec.encode(np.array([[5.0, 3.0]]), np.array([1]))
    # Eq. 1: exp(-d^2 / 32) with d^2 = 10, 2, 18, 10 for cells (0,0), (0,1), (1,0), (1,1)
    expected_h = np.array([[0.7316156, 0.9394131], [0.5697828, 0.7316156]])
    np.testing.assert_allclose(t["heatmaps"][0], expected_h, atol=1e-6)
    # Eq. 3: y-offsets (3 - 2) / 4 and (3 - 6) / 4 by row; x-offsets (5 - 2) / 4 and (5 - 6) / 4 by column
    np.testing.assert_allclose(t["offsets"][0], [[0.25, 0.25], [-0.75, -0.75]], atol=1e-7)
    np.testing.assert_allclose(t["offsets"][1], [[0.75, -0.25], [0.75, -0.25]], atol=1e-7)
    assert t["keypoint_weights"].tolist() == [1.0]
    assert t["heatmaps"].dtype == np.float32 and t["offsets"].dtype == np.float32
    kpts, scores = _decode_np(codec, t)
    np.testing.assert_allclose(kpts[0], [5.0, 3.0], atol=1e-5)
    assert scores[0] == pytest.approx(0.9394131, abs=1e-6)


def test_decode_is_the_activation_weighted_average_over_cells_above_tau() -> None:
    codec = CompositeCodec((8, 8), stride=4, tau=0.6)
    heat = torch.tensor([[[[0.8, 0.6], [0.59, 0.2]]]])  # cells (0,0) and (0,1) vote; 0.59 is below tau
    off = torch.zeros(1, 2, 2, 2)
    off[0, 0, 0, 0], off[0, 1, 0, 0] = 0.5, -0.25  # cell (0,0): (2 - 1, 2 + 2) = (1, 4)
    off[0, 0, 0, 1], off[0, 1, 0, 1] = -0.25, 0.5  # cell (0,1): (6 + 2, 2 - 1) = (8, 1)
    kpts, scores = codec.decode(heat, off)
    x = (0.8 * 1 + 0.6 * 8) / 1.4
    y = (0.8 * 4 + 0.6 * 1) / 1.4
    np.testing.assert_allclose(kpts[0, 0].numpy(), [x, y], atol=1e-5)
    assert scores[0, 0].item() == pytest.approx(0.8)


def test_decode_falls_back_to_the_argmax_cell_below_tau() -> None:
    codec = CompositeCodec((8, 8), stride=4, tau=0.6)
    heat = torch.tensor([[[[0.1, 0.2], [0.5, 0.3]]]])
    off = torch.zeros(1, 2, 2, 2)
    off[0, 0, 1, 0], off[0, 1, 1, 0] = 0.25, 0.5  # arg-max cell (1,0): centre (2, 6) -> (4, 7)
    off[0, 1, 1, 1] = 5.0  # a non-voting cell must not move the result
    kpts, scores = codec.decode(heat, off)
    np.testing.assert_allclose(kpts[0, 0].numpy(), [4.0, 7.0], atol=1e-6)
    assert scores[0, 0].item() == pytest.approx(0.5)


@settings(max_examples=150, deadline=None)
@given(
    stride=st.sampled_from([4, 8, 16, 32]),
    width=st.integers(32, 300),
    height=st.integers(32, 300),
    num=st.integers(1, 20),
    sigma=st.floats(2.0, 32.0),
    data=st.data(),
)
def test_round_trip_is_exact_inside_the_crop(
    stride: int, width: int, height: int, num: int, sigma: float, data: st.DataObject
) -> None:
    codec = CompositeCodec((height, width), stride=stride, sigma=sigma)
    xs = data.draw(
        st.lists(
            st.one_of(st.floats(0, width, exclude_max=True), st.sampled_from([0.0, width - 1e-3])),
            min_size=num,
            max_size=num,
        )
    )
    ys = data.draw(
        st.lists(
            st.one_of(st.floats(0, height, exclude_max=True), st.sampled_from([0.0, height - 1e-3])),
            min_size=num,
            max_size=num,
        )
    )
    kpts = np.stack([xs, ys], axis=1)
    t = codec.encode(kpts, np.ones(num))
    wp, hp = width // stride, height // stride
    assert t["heatmaps"].shape == (num, hp, wp) and t["offsets"].shape == (2 * num, hp, wp)
    assert t["keypoint_weights"].tolist() == [1.0] * num
    decoded, _ = _decode_np(codec, t)
    assert np.abs(decoded - kpts).max() < 1e-3


@settings(max_examples=60, deadline=None)
@given(
    stride=st.sampled_from([4, 8, 16, 32]),
    size=st.tuples(st.integers(32, 200), st.integers(32, 200)),
    x=st.one_of(st.floats(-1e4, -1e-6), st.floats(0, 1e4), st.just(float("nan")), st.just(float("inf"))),
    y=st.floats(-50, 250),
    visible=st.integers(0, 2),
)
def test_weights_are_zero_exactly_for_unusable_keypoints(
    stride: int, size: tuple[int, int], x: float, y: float, visible: int
) -> None:
    codec = CompositeCodec((size[1], size[0]), stride=stride)  # size is (w, h)
    t = codec.encode(np.array([[x, y]]), np.array([visible]))
    w, h = size
    usable = visible > 0 and math.isfinite(x) and 0 <= x < w and 0 <= y < h
    assert t["keypoint_weights"][0] == float(usable)
    assert np.isfinite(t["heatmaps"]).all() and np.isfinite(t["offsets"]).all()
    if not usable:
        assert not t["heatmaps"].any() and not t["offsets"].any()


def test_batched_decode_equals_decoding_each_item() -> None:
    gen = torch.Generator().manual_seed(0)
    codec = CompositeCodec((256, 192), stride=16)
    heat = torch.rand(5, 17, 16, 12, generator=gen)
    off = torch.randn(5, 34, 16, 12, generator=gen)
    kpts, scores = codec.decode(heat, off)
    for i in range(5):
        k_i, s_i = codec.decode(heat[i : i + 1], off[i : i + 1])
        # equal up to float32 summation order (a few ulp at 200 px)
        torch.testing.assert_close(kpts[i : i + 1], k_i, rtol=0, atol=1e-4)
        torch.testing.assert_close(scores[i : i + 1], s_i)


def test_decode_accepts_half_precision_and_an_all_invisible_person() -> None:
    codec = CompositeCodec((64, 64), stride=16)
    t = codec.encode(np.full((4, 2), 10.0), np.zeros(4))
    assert t["keypoint_weights"].sum() == 0
    kpts, scores = codec.decode(
        torch.from_numpy(t["heatmaps"])[None].half(), torch.from_numpy(t["offsets"])[None].half()
    )
    assert kpts.dtype == torch.float32 and torch.isfinite(kpts).all() and (scores == 0).all()


@pytest.mark.parametrize("size", [(192, 256), (200, 250), (64, 48)])
def test_composite_flip_back_points_every_cell_at_the_same_keypoint(size: tuple[int, int]) -> None:
    codec = CompositeCodec((size[1], size[0]), stride=16)  # size is (w, h)
    rng = np.random.default_rng(1)
    w, h = size
    kpts = rng.uniform([0, 0], [w - 1, h - 1], size=(17, 2))
    original = codec.encode(kpts, np.ones(17))
    flipped_kpts = kpts.copy()
    flipped_kpts[:, 0] = w - 1 - kpts[:, 0]
    flipped_kpts = flipped_kpts[COCO.flip_index]
    flipped = codec.encode(flipped_kpts, np.ones(17))
    out = torch.from_numpy(np.concatenate([flipped["heatmaps"], flipped["offsets"]]))[None]
    back = codec.flip_back(out, COCO.flip_index)
    # offsets agree with the original crop's offsets at every cell, so the decode is exact
    k = 17
    np.testing.assert_allclose(back[0, k:].numpy(), original["offsets"], atol=1e-5)
    decoded, _ = codec.decode_output(back)
    np.testing.assert_allclose(decoded[0].numpy(), kpts, atol=1e-3)


def test_flip_back_twice_is_the_identity() -> None:
    gen = torch.Generator().manual_seed(2)
    for codec, channels in ((CompositeCodec((250, 200), 16), 48), (HeatmapCodec((256, 192), 4), 16)):
        out = torch.randn(3, channels, *codec.heatmap_hw, generator=gen)
        twice = codec.flip_back(codec.flip_back(out, MPII.flip_index), MPII.flip_index)
        if isinstance(codec, CompositeCodec):
            torch.testing.assert_close(twice, out, rtol=0, atol=1e-6)
        else:  # the heatmap shift loses the first column by construction
            torch.testing.assert_close(twice[..., 2:], out[..., 2:])


def test_bad_shapes_and_sizes_are_named() -> None:
    codec = CompositeCodec((256, 192), stride=16)
    with pytest.raises(ClposeError, match=r"\(K, 2\)"):
        codec.encode(np.zeros((17, 3)), np.ones(17))
    with pytest.raises(ClposeError, match=r"\(17,\)"):
        codec.encode(np.zeros((17, 2)), np.ones(16))
    with pytest.raises(ClposeError, match=r"\(2, 34, 16, 12\)"):
        codec.decode(torch.zeros(2, 17, 16, 12), torch.zeros(2, 17, 16, 12))
    with pytest.raises(ClposeError, match="16x12"):
        codec.decode(torch.zeros(2, 17, 8, 6), torch.zeros(2, 34, 8, 6))
    with pytest.raises(ClposeError, match="empty"):
        CompositeCodec((64, 8), stride=16)
    with pytest.raises(ClposeError, match="positive"):
        CompositeCodec((0, 64), stride=16)
    with pytest.raises(ClposeError, match="tau"):
        CompositeCodec((64, 64), tau=1.5)
    empty = codec.encode(np.zeros((0, 2)), np.zeros(0))
    assert empty["heatmaps"].shape == (0, 16, 12) and empty["offsets"].shape == (0, 16, 12)


def test_disk_target_and_sigmoid_split() -> None:
    codec = CompositeCodec((64, 64), stride=16, sigma=16, tau=0.6, target="disk")
    assert codec.disk_radius == pytest.approx(16 * math.sqrt(-2 * math.log(0.6)))
    t = codec.encode(np.array([[24.0, 24.0]]), np.array([1]))  # centres at 8, 24, 40, 56
    assert set(np.unique(t["heatmaps"])) <= {0.0, 1.0}
    assert t["heatmaps"][0, 1, 1] == 1 and t["heatmaps"][0, 1, 2] == 1 and t["heatmaps"][0, 2, 2] == 0
    logits = torch.zeros(1, 3, 4, 4)
    heat, _ = codec.split(logits)
    assert torch.allclose(heat, torch.full_like(heat, 0.5))


@pytest.mark.parametrize("dark", [False, True])
def test_heatmap_codec_round_trip_error_is_bounded_quantisation(dark: bool) -> None:
    codec = HeatmapCodec((256, 192), stride=4, sigma=2.0, dark=dark)
    rng = np.random.default_rng(3)
    # >= 7 heatmap px from the border: nearer, DARK's zero-padded blur biases the peak (as in the reference code)
    kpts = rng.uniform([28, 28], [164, 228], size=(200, 2))
    t = codec.encode(kpts, np.ones(200))
    decoded, scores = codec.decode(torch.from_numpy(t["heatmaps"])[None])
    err = np.abs(decoded[0].numpy() - kpts)
    if dark:
        assert err.max() < 0.05  # unbiased encoding + Newton step: nearly exact on clean targets
    else:
        # Gaussian at round(x / 4): arg-max is that cell and both neighbours are equal, so no quarter shift:
        # the error is the rounding, at most half a heatmap pixel (2 px) per axis.
        assert err.max() <= 2.0 + 1e-4 and err.mean() > 0.5
    assert (scores > 0.9).all()


def test_heatmap_quarter_offset_moves_towards_the_higher_neighbour() -> None:
    codec = HeatmapCodec((64, 64), stride=4)
    hm = torch.zeros(1, 1, 16, 16)
    hm[0, 0, 5, 7] = 1.0
    hm[0, 0, 5, 8] = 0.6  # right neighbour higher than left
    hm[0, 0, 4, 7] = 0.3  # upper neighbour higher than lower
    kpts, _ = codec.decode(hm)
    np.testing.assert_allclose(kpts[0, 0].numpy(), [(7 + 0.25) * 4, (5 - 0.25) * 4])


def test_a_cell_exactly_at_tau_votes_and_one_just_below_does_not() -> None:
    codec = CompositeCodec((64, 64), stride=16, tau=0.6)
    heat = torch.zeros(1, 1, 4, 4)
    heat[0, 0, 0, 0] = 0.6  # float32(0.6): votes, centre (8, 8)
    heat[0, 0, 3, 3] = float(np.nextafter(np.float32(0.6), np.float32(0)))  # below tau: would pull towards (56, 56)
    kpts, _ = codec.decode(heat, torch.zeros(1, 2, 4, 4))
    np.testing.assert_allclose(kpts[0, 0].numpy(), [8.0, 8.0])


@pytest.mark.parametrize(
    "codec",
    [
        CompositeCodec((256, 192), 16, 16.0, 0.6),
        CompositeCodec((128, 128), 8, 8.0, 0.5, target="disk"),
        CompositeCodec((96, 64), 32, 24.0, 0.7),
        HeatmapCodec((256, 192), 4, 2.0),
        HeatmapCodec((384, 288), 4, 3.0, dark=True),
        HeatmapCodec((64, 64), 4, 1.5),
    ],
    ids=repr,
)
def test_encode_batch_is_bit_identical_to_encode(codec) -> None:
    """The GPU pipeline's batch encode and the CPU workers' per-sample encode: the same targets, bit for bit, for
    keypoints inside, on the border of and outside the crop, NaN and unlabelled."""
    rng = np.random.default_rng(7)
    h, w = codec.input_hw
    batch = rng.uniform(-0.3, 1.3, (12, 17, 2)) * [w, h]
    batch[0, :4] = [[0, 0], [w - 1e-9, h - 1e-9], [w, h], [-0.5, -0.5]]
    batch[1, 5] = np.nan
    batch[2, 6] = [np.inf, 3.0]
    visible = rng.integers(0, 3, (12, 17))
    got = codec.encode_batch(torch.from_numpy(batch), torch.from_numpy(visible))
    for i in range(len(batch)):
        want = codec.encode(batch[i], visible[i])
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name].dtype == torch.float32
            np.testing.assert_array_equal(got[name][i].numpy(), value, err_msg=f"{name} of person {i}")
