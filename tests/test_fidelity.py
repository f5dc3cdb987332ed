"""Fidelity to the reference code: the half-body crop and the Gaussian heatmap target of HRNet.

The reference is leoxiaobin/deep-high-resolution-net.pytorch, lib/dataset/JointsDataset.py at commit
2ad80f22b5b37fb296152bf5f6341885e8d9087c (the only commit touching that file): `half_body_transform`
(lines 65-108), its call in `__getitem__` (lines 145-157) and `generate_target` (lines 233-289).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

from clpose.codecs import HeatmapCodec
from clpose.config import AugmentConfig
from clpose.data.dataset import TopDownDataset
from clpose.data.records import new_records
from clpose.data.transforms import half_body_box
from clpose.skeletons import COCO, MPII

ASPECT = 192 / 256  # HRNet's aspect_ratio = image_width / image_height (lib/dataset/coco.py, same commit)


class FixedNormal:
    """A stand-in for the numpy Generator: standard_normal() returns a chosen value and counts its calls."""

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, 0

    def standard_normal(self) -> float:
        self.calls += 1
        return self.value


def coco_person(upper: list[tuple[float, float]], lower: list[tuple[float, float]]) -> np.ndarray:
    """(17, 3) COCO keypoints: the given points on the first upper-body (0..10) and lower-body (11..16) ids."""
    kpts = np.zeros((17, 3))
    for k, (x, y) in enumerate(upper):
        kpts[k] = (x, y, 2)
    for k, (x, y) in enumerate(lower):
        kpts[11 + k] = (x, y, 1)
    return kpts


UPPER = [(10.0, 20.0), (30.0, 20.0), (20.0, 60.0)]  # mean (20, 33.33), w 20, h 40
LOWER = [(0.0, 100.0), (40.0, 100.0), (20.0, 110.0)]  # mean (20, 103.33), w 40, h 10


def test_hrnet_upper_body_ids_are_clposes() -> None:
    # lib/dataset/coco.py line 94 and lib/dataset/mpii.py line 33 at commit 2ad80f22
    assert COCO.upper_body == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert MPII.upper_body == (7, 8, 9, 10, 11, 12, 13, 14, 15)


def test_upper_body_box_is_centred_on_the_joint_mean_and_sized_by_hrnets_rule() -> None:
    rng = FixedNormal(0.49)  # randn < 0.5 and 3 > 2 upper joints: the upper body
    center, size = half_body_box(coco_person(UPPER, LOWER), COCO.upper_body, rng, ASPECT)
    assert rng.calls == 1
    np.testing.assert_allclose(center, [20.0, 100.0 / 3], rtol=0, atol=1e-12)  # the mean, not the box middle (40)
    # w = 20 < aspect * h = 30: w = h * aspect = 30; [w, h] * 1.5
    np.testing.assert_allclose(size, [45.0, 60.0], rtol=0, atol=1e-12)


def test_lower_body_box_when_the_normal_draw_is_at_least_one_half() -> None:
    center, size = half_body_box(coco_person(UPPER, LOWER), COCO.upper_body, FixedNormal(0.5), ASPECT)
    np.testing.assert_allclose(center, [20.0, 310.0 / 3], rtol=0, atol=1e-12)
    # w = 40 > aspect * h = 7.5: h = w / aspect = 53.33; [w, h] * 1.5
    np.testing.assert_allclose(size, [60.0, 80.0], rtol=0, atol=1e-12)


def test_box_already_at_the_aspect_ratio_and_a_wide_aspect() -> None:
    kpts = coco_person([(0.0, 0.0), (30.0, 40.0), (15.0, 0.0)], LOWER)  # w 30, h 40 = w / 0.75
    center, size = half_body_box(kpts, COCO.upper_body, FixedNormal(-1.0), ASPECT)
    np.testing.assert_allclose(center, [15.0, 40.0 / 3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(size, [45.0, 60.0], rtol=0, atol=1e-12)
    _, size = half_body_box(kpts, COCO.upper_body, FixedNormal(-1.0), 2.0)  # w 30 < 2 * 40: w = 80
    np.testing.assert_allclose(size, [120.0, 60.0], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("n_upper", "n_lower", "draw", "expected"),
    [
        # `if np.random.randn() < 0.5 and len(upper_joints) > 2: upper` (> 2, i.e. at least 3 joints)
        # `else: lower if len(lower_joints) > 2 else upper`, then None when the selection has < 2 joints
        (3, 3, 0.0, "upper"),
        (3, 3, 1.0, "lower"),
        (2, 3, 0.0, "lower"),  # 2 upper joints are not enough for the upper body
        (3, 2, 1.0, "upper"),  # 2 lower joints are not enough: back to the upper body
        (2, 2, 0.0, "upper"),  # neither half has > 2: the upper body (2 joints: a box)
        (2, 2, 1.0, "upper"),
        (1, 2, 0.0, None),  # the upper body again, with 1 joint: no box
        (0, 2, 1.0, None),
        (0, 4, 0.0, "lower"),
        (2, 0, 1.0, "upper"),
        (1, 1, 0.0, None),
    ],
)
def test_fallback_to_the_other_half(n_upper: int, n_lower: int, draw: float, expected: str | None) -> None:
    up = [(10.0 + 7 * k, 20.0 + 3 * k) for k in range(n_upper)]
    lo = [(5.0 + 11 * k, 100.0 + 5 * k) for k in range(n_lower)]
    out = half_body_box(coco_person(up, lo), COCO.upper_body, FixedNormal(draw), ASPECT)
    if expected is None:
        assert out is None
    else:
        pts = np.array(up if expected == "upper" else lo)
        np.testing.assert_allclose(out[0], pts.mean(axis=0), rtol=0, atol=1e-12)


def test_unlabelled_joints_are_not_selected() -> None:
    kpts = coco_person([*UPPER, (500.0, 500.0)], LOWER)
    kpts[3, 2] = 0  # the far joint is unlabelled
    center, size = half_body_box(kpts, COCO.upper_body, FixedNormal(0.0), ASPECT)
    np.testing.assert_allclose(center, [20.0, 100.0 / 3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(size, [45.0, 60.0], rtol=0, atol=1e-12)


def test_upper_body_frequency_is_that_of_randn_below_one_half() -> None:
    kpts = coco_person(UPPER, LOWER)
    rng = np.random.default_rng(2024)
    n = 20000
    upper = sum(half_body_box(kpts, COCO.upper_body, rng, ASPECT)[0][1] < 50 for _ in range(n))
    p = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))  # P(N(0, 1) < 0.5) = 0.6915
    assert abs(upper / n - p) < 0.01
    # deterministic from the generator: the same seed, the same choices
    again = np.random.default_rng(2024)
    first = [half_body_box(kpts, COCO.upper_body, again, ASPECT)[0][1] < 50 for _ in range(50)]
    rng = np.random.default_rng(2024)
    assert first == [half_body_box(kpts, COCO.upper_body, rng, ASPECT)[0][1] < 50 for _ in range(50)]


def _coco_dataset(tmp_path: Path, kpts: np.ndarray, augment: AugmentConfig) -> TopDownDataset:
    images = [{"id": 1, "file": "0.png", "width": 200, "height": 200}]
    people = [{"image_index": 0, "center": [100.0, 90.0], "scale": [0.5, 0.6], "keypoints": kpts}]
    records = new_records("coco", "coco", "train", images, people, tmp_path, ["test"])
    return TopDownDataset(records, COCO, HeatmapCodec((64, 48)), (64, 48), train=True, augment=augment, seed=5)


@pytest.mark.parametrize("labelled", [8, 9])
def test_half_body_gate_needs_more_labelled_joints_than_the_minimum(tmp_path: Path, labelled: int) -> None:
    # `if np.sum(joints_vis[:, 0]) > self.num_joints_half_body and np.random.rand() < self.prob_half_body`
    kpts = coco_person([(50.0 + 4 * k, 40.0 + k * k) for k in range(5)], [(60.0 + 9 * k, 120.0) for k in range(6)])
    kpts[np.flatnonzero(kpts[:, 2] > 0)[labelled:], 2] = 0
    aug = AugmentConfig(half_body_prob=1.0, half_body_min_keypoints=8, scale_factor=0.0)
    ds = _coco_dataset(tmp_path, kpts, aug)
    center, size, *_ = ds._augment(0, kpts)
    if labelled <= 8:
        np.testing.assert_allclose(center, [100.0, 90.0])
        return
    # the half-body box replaces the record's box as it is (no 1.25 padding; the scale draw is 1 here): the
    # same generator state as in _augment (4 normal, 6 uniform draws first)
    rng = np.random.default_rng([5, 0, 0])
    rng.standard_normal(4)
    rng.random(6)
    want_center, want_size = half_body_box(kpts, COCO.upper_body, rng, 48 / 64)
    np.testing.assert_allclose(center, want_center, rtol=0, atol=1e-12)
    np.testing.assert_allclose(size, want_size, rtol=0, atol=1e-12)


def test_half_body_prob_zero_never_crops(tmp_path: Path) -> None:
    kpts = coco_person(UPPER, [*LOWER, (1.0, 1.0), (2.0, 3.0), (4.0, 9.0)])
    ds = _coco_dataset(tmp_path, kpts, AugmentConfig(half_body_prob=0.0, half_body_min_keypoints=0))
    for epoch in range(20):
        ds.set_epoch(epoch)
        np.testing.assert_allclose(ds._augment(0, kpts)[0], [100.0, 90.0])


# ---- Gaussian heatmap target -------------------------------------------------------------------------------


def hrnet_generate_target(joint: tuple[float, float], vis: float, image_wh, heatmap_wh, sigma: int):
    """`JointsDataset.generate_target` (lib/dataset/JointsDataset.py at commit 2ad80f22, lines 233-289) for
    one joint, transcribed: (target (H', W'), target_weight)."""
    image_size, heatmap_size = np.array(image_wh), np.array(heatmap_wh)
    target_weight = float(vis)
    target = np.zeros((heatmap_size[1], heatmap_size[0]), dtype=np.float32)
    tmp_size = sigma * 3
    feat_stride = image_size / heatmap_size
    mu_x = int(joint[0] / feat_stride[0] + 0.5)
    mu_y = int(joint[1] / feat_stride[1] + 0.5)
    ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
    br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
    if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] or br[0] < 0 or br[1] < 0:
        return target, 0.0
    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
    img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
    img_y = max(0, ul[1]), min(br[1], heatmap_size[1])
    if target_weight > 0.5:
        target[img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return target, target_weight


H, W, STRIDE, SIGMA = 64, 48, 4, 2  # crop 64 x 48 (H x W): heatmap 16 x 12
# just inside and outside each border; mu = int(u + 0.5) truncates towards zero, so u in (-1.5, -0.5) gives 0;
# weight 0 from the left at mu <= -8 (x <= -34), from the right at mu >= 18 (x >= 70), bottom mu >= 22 (y >= 86)
XS = [-40.0, -34.0, -33.99, -30.0, -29.0, -26.0, -25.0, -24.0, -20.0, -8.0, -6.0, -5.0, -2.1, -2.0, -1.9, 0.0,
      3.0, 21.7, 47.0, 48.0, 53.0, 60.0, 69.9, 70.0, 74.0]  # fmt: skip
YS = [-40.0, -34.0, -33.99, -30.0, -20.0, -5.0, -2.1, 0.0, 31.0, 63.0, 64.0, 69.0, 85.9, 86.0, 90.0]


def test_heatmap_weights_and_maps_match_hrnet_outside_every_border() -> None:
    codec = HeatmapCodec((H, W), stride=STRIDE, sigma=float(SIGMA))
    points = list(itertools.product(XS, YS))
    t = codec.encode(np.array(points), np.ones(len(points)))
    kept_outside = 0
    for k, (x, y) in enumerate(points):
        target, weight = hrnet_generate_target((x, y), 1.0, (W, H), (W // STRIDE, H // STRIDE), SIGMA)
        assert t["keypoint_weights"][k] == weight, (x, y)
        np.testing.assert_allclose(t["heatmaps"][k], target, rtol=0, atol=1e-6, err_msg=str((x, y)))
        kept_outside += weight == 1 and not (0 <= x < W and 0 <= y < H)
    assert kept_outside > 50  # the old rule dropped all of these


@pytest.mark.parametrize(
    ("x", "weight", "peak_col"),
    [(-5.0, 1.0, 0), (-8.0, 1.0, None), (-20.0, 1.0, None), (-30.0, 1.0, None), (-34.0, 0.0, None), (W + 5, 1.0, None)],
)
def test_heatmap_left_and_right_border_cases(x: float, weight: float, peak_col: int | None) -> None:
    codec = HeatmapCodec((H, W), stride=STRIDE, sigma=float(SIGMA))
    t = codec.encode(np.array([[x, 30.0]]), np.array([1]))
    assert t["keypoint_weights"][0] == weight
    hm = t["heatmaps"][0]
    if peak_col is not None:  # x = -5: u = -1.25, int(-0.75) = 0, so the peak (1.0) sits in column 0
        assert hm[8, peak_col] == pytest.approx(1.0)
    if x == -8.0:  # mu = int(-1.5) = -1: column 0 is one cell from the centre
        assert hm[8, 0] == pytest.approx(math.exp(-1 / 8))
    if x == -30.0:  # mu = -7, br = 0: weight 1 but no cell of the window on the map (as in HRNet)
        assert not hm.any()
    if x == W + 5:  # u = 13.25, mu = 13: column 11 is two cells from the centre
        assert hm[8, 11] == pytest.approx(math.exp(-4 / 8))


def test_heatmap_unlabelled_and_non_finite_keypoints_keep_weight_zero() -> None:
    codec = HeatmapCodec((H, W), stride=STRIDE, sigma=float(SIGMA))
    kpts = np.array([[20.0, 30.0], [-5.0, 30.0], [np.nan, 30.0], [np.inf, 30.0], [20.0, -np.inf], [20.0, 30.0]])
    t = codec.encode(kpts, np.array([0, 0, 1, 1, 1, 2]))
    assert t["keypoint_weights"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert not t["heatmaps"][:5].any() and np.isfinite(t["heatmaps"]).all()


def test_dark_encoding_applies_the_window_rule_to_the_unrounded_centre() -> None:
    codec = HeatmapCodec((H, W), stride=STRIDE, sigma=float(SIGMA), dark=True)
    plain = HeatmapCodec((H, W), stride=STRIDE, sigma=float(SIGMA))
    # u = -8.2: br = int(-8.2 + 7) = -1 < 0 (weight 0); rounded, mu = int(-7.7) = -7 keeps weight 1
    # u = 17.75: ul = int(11.75) = 11 < 12 (weight 1); rounded, mu = int(18.25) = 18, ul = 12 (weight 0)
    kpts = np.array([[-32.8, 30.0], [71.0, 30.0], [-2.0, 30.0]])
    assert codec.encode(kpts, np.ones(3))["keypoint_weights"].tolist() == [0.0, 1.0, 1.0]
    assert plain.encode(kpts, np.ones(3))["keypoint_weights"].tolist() == [1.0, 0.0, 1.0]
    hm = codec.encode(kpts, np.ones(3))["heatmaps"]
    assert not hm[1].any()  # the nearest column (11) is 6.75 > 3 sigma from u
    u, v = -0.5, 7.5  # the Gaussian at (x, y) / stride exactly, cut at 3 sigma
    cols, rows = np.arange(W // STRIDE), np.arange(H // STRIDE)
    want = np.exp(-((cols[None] - u) ** 2 + (rows[:, None] - v) ** 2) / 8)
    want *= (np.abs(cols[None] - u) <= 6) & (np.abs(rows[:, None] - v) <= 6)
    np.testing.assert_allclose(hm[2], want, rtol=0, atol=1e-6)


RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
PAPER_RECIPES = sorted(p for p in RECIPES_DIR.rglob("*.yaml") if "synthetic" not in p.name)


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=[p.name for p in PAPER_RECIPES])
def test_every_paper_recipe_names_its_reference_at_a_commit_and_states_its_departures(path: Path) -> None:
    """Issue 15: a recipe that says "as in X" follows X; its header names X's file at a commit and says what
    departs (the paper lists no colour jitter; precision)."""
    from clpose.recipes import load_recipe

    text = path.read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    assert re.search(r"@[0-9a-f]{7}", header), "the header names the reference file at a commit"
    assert "Precision" in header and "train.amp=off" in header
    recipe = load_recipe(path)
    assert recipe.data.augment.color_jitter == 0.0  # neither the paper nor SimpleBaseline/Newell use it
    if path.name.startswith("lsp_stride") or path.name == "lsp_resnet50.yaml":
        assert recipe.codec.sigma_rule == "fixed" and "codec.sigma_rule" in header  # Table 5 says which sigma
    if path.name == "lsp_loss_peak_mse.yaml":
        assert recipe.codec.decode == "peak"
