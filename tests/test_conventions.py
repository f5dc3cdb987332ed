"""Formulas and conventions pinned with exact values computed by hand or transcribed from the reference code: OKS of
the OKS-NMS, COCO rescoring end to end, the 0/1-based alignment of prediction files, the training crop's padding,
the composite loss's per-keypoint normalisation (Eq. 5), the One-Euro filter step by step, the synthetic skeleton's
torso and the heatmap decode's border rule. Each is a small case where a one-line slip (a factor, a sign, a
comparison, a missing step) changes the number."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from typer.testing import CliRunner

from clpose.cli.app import app
from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.config import AugmentConfig, EvalConfig
from clpose.data.dataset import TopDownDataset
from clpose.data.records import new_records
from clpose.evaluation import coco as coco_metric
from clpose.inference.smoothing import OneEuro
from clpose.losses import CompositeLoss
from clpose.recipes import recipe_from_dict
from clpose.skeletons import LSP, MPII, SYNTHETIC

runner = CliRunner()


# -- OKS of the OKS-NMS: (2 sigma)^2, the mean of the two areas --------------------------------------------------


def test_oks_of_the_nms_is_hrnet_oks_iou_by_hand() -> None:
    """HRNet's lib/nms/nms.py oks_iou (leoxiaobin/deep-high-resolution-net.pytorch): e = d^2 / (2 sigma)^2 /
    ((a_g + a_d) / 2 + eps) / 2, OKS = mean exp(-e). Distances are chosen so that every term is 0.5, where a
    factor of 4 in the variance or another scale moves the value far."""
    sigmas = np.array([0.05, 0.1])
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    other = np.array([[[2.0, 4.0], [14.0, 8.0]]])  # squared distances 20 and 80
    area_a, area_b = 1000.0, 3000.0
    scale = (area_a + area_b) / 2 + np.spacing(1)
    e0 = 20.0 / (2 * 0.05) ** 2 / scale / 2  # 0.5
    e1 = 80.0 / (2 * 0.1) ** 2 / scale / 2  # 0.5
    expected = (math.exp(-e0) + math.exp(-e1)) / 2
    got = coco_metric.oks(a, other, area_a, np.array([area_b]), sigmas)
    assert got.shape == (1,) and expected == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert got[0] == pytest.approx(expected, abs=1e-12)
    # the greedy NMS keeps the higher score and drops what overlaps it above the threshold (OKS 0.61 here)
    keypoints = np.stack([a, other[0], a + 500.0])
    scores, areas = np.array([0.5, 0.9, 0.1]), np.array([area_a, area_b, area_a])
    assert coco_metric.oks_nms(keypoints, scores, areas, sigmas, 0.6) == [1, 2]
    assert coco_metric.oks_nms(keypoints, scores, areas, sigmas, 0.61) == [1, 0, 2]
    # HRNet keeps what overlaps *up to* the threshold (np.where(oks <= thresh)): identical poses have OKS exactly 1
    same = np.stack([a, a])
    assert coco_metric.oks_nms(same, np.array([0.4, 0.6]), np.array([1000.0, 1000.0]), sigmas, 1.0) == [1, 0]
    assert coco_metric.oks_nms(same, np.array([0.4, 0.6]), np.array([1000.0, 1000.0]), sigmas, 0.999) == [1]


# -- COCO rescoring end to end ---------------------------------------------------------------------------------


def _coco_root(tmp_path: Path) -> tuple[Path, list[list[float]]]:
    """Two 100 x 100 images with one labelled person each (17 visible keypoints), prepared as COCO val records."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    people, anns, images = [], [], []
    for i in range(2):
        xy = np.random.default_rng(i).uniform([20, 15], [70, 85], (17, 2))
        kp = np.concatenate([xy, np.full((17, 1), 2.0)], 1).reshape(-1).tolist()
        people.append(kp)
        images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 100, "height": 100})
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 4000.0,
                "bbox": [15, 10, 60, 80],
                "num_keypoints": 17,
                "keypoints": kp,
            }
        )
        cv2.imwrite(str(root / "val2017" / images[-1]["file_name"]), np.full((100, 100, 3), 90, np.uint8))
    cats = [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)]}]
    gt = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    return root, people


def test_coco_rescoring_ranks_by_box_score_times_the_mean_keypoint_score_above_0_2(tmp_path: Path) -> None:
    """Image 1's prediction is wrong, image 2's exact. Instance scores (box x mean keypoint score above 0.2):
    wrong 0.9 x 0.5 = 0.45 (eight keypoint scores of 0.1 are left out of the mean), right 0.3 x 0.95 = 0.285, so the
    wrong one ranks first and AP = 0.5 x 51/101 (precision 1/2 up to recall 1/2). Without the box score, or without
    the 0.2 threshold (0.9 x 0.31 = 0.28 < 0.285), the right one ranks first: AP = 51/101."""
    from clpose.data import dataset_from_records, load_split
    from clpose.data.prepare import run_prepare
    from clpose.engine.posemodel import recipe_codec
    from clpose.evaluation.metrics import Predictions
    from clpose.evaluation.scoring import score_oks_records

    root, people = _coco_root(tmp_path)
    run_prepare("coco", root, root, show=False)
    raw = {"model": {"name": "clnet_resnet18"}, "data": {"dataset": "coco", "root": str(root), "input_size": "64x48"}}
    raw["data"]["val_split"] = "val"
    recipe = recipe_from_dict(raw)
    records = load_split(recipe, "val")
    records.box_scores = np.array([0.9, 0.3])
    dataset = dataset_from_records(recipe, records, False, recipe_codec(recipe))
    kpts = np.array([np.array(p).reshape(17, 3)[:, :2] for p in people])
    kpts[0] += 30.0  # wrong
    scores = np.array([[0.5] * 9 + [0.1] * 8, [0.95] * 17])
    preds = Predictions(np.arange(2), kpts[None], scores[None])
    table, results = score_oks_records(dataset, preds, EvalConfig(oks_nms_thr=1.0), None)
    assert [round(r["score"], 12) for r in results] == [0.45, 0.285]
    assert table["AP"] == pytest.approx(0.5 * 51 / 101, abs=1e-12) and table["AR"] == 0.5


def test_oks_nms_areas_are_those_of_the_padded_crop_box(tmp_path: Path) -> None:
    """SimpleBaseline/HRNet run OKS-NMS with the area of the padded crop box (scale x 200 x 1.25, fitted to the
    crop's aspect): two predictions of one person 3 px apart overlap above a threshold set between their OKS with
    the padded and the unpadded area, so the padded area suppresses the lower-scored one."""
    from clpose.data import dataset_from_records, load_split
    from clpose.data.prepare import run_prepare
    from clpose.data.transforms import box_size
    from clpose.engine.posemodel import recipe_codec
    from clpose.evaluation.metrics import Predictions
    from clpose.evaluation.scoring import coco_results
    from clpose.skeletons import COCO

    root, people = _coco_root(tmp_path)
    run_prepare("coco", root, root, show=False)
    raw = {"model": {"name": "clnet_resnet18"}, "data": {"dataset": "coco", "root": str(root), "input_size": "64x48"}}
    raw["data"]["val_split"] = "val"
    recipe = recipe_from_dict(raw)
    records = load_split(recipe, "val").subset([0, 0])  # two detections of the first person
    dataset = dataset_from_records(recipe, records, False, recipe_codec(recipe))
    truth = np.array(people[0]).reshape(17, 3)[:, :2]
    kpts = np.stack([truth, truth + 3.0])
    sigmas = np.array(COCO.sigmas)
    padded, plain = (float(np.prod(box_size(records.scales[0], (64, 48), p))) for p in (1.25, 1.0))
    oks_padded = coco_metric.oks(kpts[0], kpts[1:], padded, np.array([padded]), sigmas)[0]
    oks_plain = coco_metric.oks(kpts[0], kpts[1:], plain, np.array([plain]), sigmas)[0]
    assert oks_plain < oks_padded
    threshold = (oks_plain + oks_padded) / 2
    preds = Predictions(np.arange(2), kpts[None], np.array([[0.9] * 17, [0.8] * 17])[None])
    results = coco_results(dataset, preds, EvalConfig(oks_nms_thr=float(threshold)))
    assert len(results) == 1 and results[0]["score"] == pytest.approx(0.9)


def test_pckh_head_columns_and_the_bbox_normaliser() -> None:
    """The papers' Head column is head-top alone; the official toolkit's is the mean of upper neck and head top.
    A skeleton without a torso (COCO) normalises PCK by the larger side of the labelled joints' bounding box."""
    from clpose.evaluation.pck import pck_from_records, pck_table
    from clpose.skeletons import COCO

    correct = np.zeros((1, 16), bool)
    correct[0, 8] = True  # upper neck right, head top wrong
    counted = np.ones((1, 16), bool)
    assert pck_table(correct, counted, MPII)["Head"] == 0.0
    assert pck_table(correct, counted, MPII, head_official=True)["Head"] == 50.0
    gt = np.zeros((1, 17, 3))
    gt[0, :, 0] = np.linspace(100, 130, 17)  # 30 px wide
    gt[0, :, 1] = np.linspace(50, 60, 17)  # 10 px tall
    gt[0, :, 2] = 2
    pred = gt[..., :2] + np.array([4.0, 0.0])  # 4 px off: within 0.2 x 30, not within 0.2 x 10
    correct, counted = pck_from_records(pred, gt, COCO, 0.2)
    assert counted.all() and correct.all()


# -- pixel conventions: predictions aligned onto the ground truth's 0/1-based convention ---------------------------


def _gt_valid(path: Path, n: int = 3) -> np.ndarray:
    """An MPII gt_valid.mat (1-based) with small head boxes: PCKh@0.05 then needs an error below 0.43 px."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(20, 200, (16, 2, n)).round(1)
    boxes = np.zeros((2, 2, n))
    boxes[0] = 10.0  # x1, y1
    boxes[1] = 20.0  # x2, y2: diagonal 14.1, head size 8.49
    scipy.io.savemat(str(path), {"pos_gt_src": pos, "jnt_missing": np.zeros((16, n)), "headboxes_src": boxes})
    return pos.transpose(2, 0, 1)  # (n, 16, 2), 1-based


def _pckh(tmp_path: Path, predictions: Path, gt: Path) -> float:
    out = tmp_path / "t.json"
    argv = ["eval", "--metric", "pckh", "--predictions", str(predictions), "--annotations", str(gt), "--alpha", "0.05"]
    result = runner.invoke(app, [*argv, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["Mean"]


def test_zero_based_predictions_meet_one_based_ground_truth_exactly(tmp_path: Path) -> None:
    """Synthetic twin of the gt_valid.mat tests: a 1 px shift the wrong way (or none) fails PCKh@0.05 everywhere."""
    pos = _gt_valid(tmp_path / "gt_valid.mat")
    np.save(tmp_path / "p0.npy", pos - 1.0)  # .npy is 0-based
    scipy.io.savemat(str(tmp_path / "p1.mat"), {"preds": pos})  # .mat is 1-based
    for name, coordinates, values in (("j0.json", "0-based", pos - 1.0), ("j1.json", "1-based", pos)):
        data = {"format": "clpose-predictions", "version": 1, "coordinates": coordinates}
        data["people"] = [{"keypoints": v.tolist()} for v in values]
        (tmp_path / name).write_text(json.dumps(data))
    for name in ("p0.npy", "p1.mat", "j0.json", "j1.json"):
        assert _pckh(tmp_path, tmp_path / name, tmp_path / "gt_valid.mat") == 100.0, name
    np.save(tmp_path / "wrong.npy", pos)  # 1-based values claimed as 0-based: 1 px off in x and y
    assert _pckh(tmp_path, tmp_path / "wrong.npy", tmp_path / "gt_valid.mat") == 0.0


def test_mean_at_0_1_uses_alpha_0_1_exactly(tmp_path: Path) -> None:
    """Synthetic twin of the gt_valid.mat perturbation test: every joint 0.12 head sizes off in x (head size 8.49 px)
    is correct at 0.5 and 0.15 but not at 0.1, so Mean = 100 and Mean@0.1 = 0."""
    pos = _gt_valid(tmp_path / "gt_valid.mat")
    size = 0.6 * np.hypot(10.0, 10.0)
    np.save(tmp_path / "p.npy", pos - 1.0 + np.array([0.12 * size, 0.0]))
    out = tmp_path / "t.json"
    argv = ["eval", "--metric", "pckh", "--predictions", str(tmp_path / "p.npy"), "--annotations"]
    assert runner.invoke(app, [*argv, str(tmp_path / "gt_valid.mat"), "--json", str(out)]).exit_code == 0
    table = json.loads(out.read_text())
    assert table["Mean"] == 100.0 and table["Mean@0.1"] == 0.0
    assert _pckh(tmp_path, tmp_path / "p.npy", tmp_path / "gt_valid.mat") == 0.0  # at 0.05 too


def test_lsp_predictions_of_1000_people_are_scored_against_the_last_1000(tmp_path: Path) -> None:
    """Synthetic twin of the real joints.mat test: LSP's test set is the last 1000 of joints.mat's 2000 people (only
    of LSP's own 2000: tests/test_scoring_trust.py refuses 1000 predictions of a joints.mat of another size)."""
    rng = np.random.default_rng(0)
    joints = np.ones((3, 14, 2000))
    joints[:2] = rng.uniform(10, 200, (2, 14, 2000))
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    np.save(tmp_path / "p.npy", joints[:2, :, 1000:].transpose(2, 1, 0) - 1.0)  # 0-based: the last 1000, exact
    out = tmp_path / "t.json"
    argv = ["eval", "--metric", "pck", "--predictions", str(tmp_path / "p.npy"), "--annotations"]
    assert runner.invoke(app, [*argv, str(tmp_path / "joints.mat"), "--json", str(out)]).exit_code == 0
    table = json.loads(out.read_text())
    assert table["Mean"] == 100.0 and table["people"] == 1000
    assert table["people_scored"] == f"the LSP test set, people 1001-2000 of {tmp_path / 'joints.mat'}"


def test_lsp_joints_mat_is_one_based_like_its_ground_truth(tmp_path: Path) -> None:
    """Synthetic twin of the LSP joints.mat test: PCK@0.2 with a torso of 10 px needs an error below 2 px."""
    joints = np.zeros((3, 14, 2))
    joints[0] = np.array([[10.0 + k, 40.0 + 2 * k] for k in range(14)])[:, :1]
    joints[1] = np.array([[30.0 + 3 * k] for k in range(14)])
    joints[0, 9], joints[1, 9] = 50.0, 50.0  # left shoulder
    joints[0, 2], joints[1, 2] = 50.0, 60.0  # right hip: torso 10 px
    joints[2] = 1.0
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": joints})
    pred = joints[:2].transpose(2, 1, 0)
    out = tmp_path / "t.json"

    def pck(values: np.ndarray) -> float:
        np.save(tmp_path / "p.npy", values)
        argv = ["eval", "--metric", "pck", "--predictions", str(tmp_path / "p.npy"), "--annotations"]
        assert runner.invoke(app, [*argv, str(tmp_path / "joints.mat"), "--json", str(out)]).exit_code == 0
        return json.loads(out.read_text())["Mean"]

    assert pck(pred - 1.0) == 100.0  # 0-based .npy of the same points
    assert pck(pred + 1.0) == 0.0  # shifted the wrong way: 2 px in x and y, 2.8 px > 2 px


# -- the training crop: the person box padded by data.box_padding (1.25) ------------------------------------------


def test_the_training_crop_pads_the_box_by_1_25(tmp_path: Path) -> None:
    """Augmentation off: box 100 x 200 px (scale 0.5 x 1.0) around (100, 80) into a 64 x 48 crop (H x W). Padded by
    1.25 it is 125 x 250, widened to the crop's aspect to 187.5 x 250: 0.256 crop px per image px, the centre at
    ((W - 1) / 2, (H - 1) / 2) = (23.5, 31.5). A keypoint 50 px right and 40 px below the centre lands at
    (23.5 + 12.8, 31.5 + 10.24); without the padding it would be at (23.5 + 16, 31.5 + 12.8)."""
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((200, 200, 3), np.uint8))
    kpts = np.zeros((16, 3))
    kpts[:, :2] = [150.0, 120.0]
    kpts[:, 2] = 2
    people = [{"image_index": 0, "center": [100.0, 80.0], "scale": [0.5, 1.0], "keypoints": kpts}]
    images = [{"id": 0, "file": "0.png", "width": 200, "height": 200}]
    records = new_records("synthetic", "synthetic", "train", images, people, tmp_path, ["test"])
    still = AugmentConfig(flip_prob=0, scale_factor=0, rotation_factor=0, rotation_prob=0, color_jitter=0)
    for train in (True, False):
        dataset = TopDownDataset(records, SYNTHETIC, CompositeCodec((64, 48)), (64, 48), train=train, augment=still)
        sample = dataset[0]
        np.testing.assert_allclose(sample["keypoints"][0].numpy(), [23.5 + 12.8, 31.5 + 10.24], atol=1e-5)


# -- the composite loss: per-keypoint averages (Eq. 5), not one pool of every cell ---------------------------------


def test_composite_loss_averages_each_keypoint_over_its_own_region() -> None:
    """Two keypoints whose regions differ in size: keypoint 0 has one cell (offset error 0.4 in y and x, smooth L1
    0.5 x 0.4^2 = 0.08), keypoint 1 three cells (error 0.2, 0.02 each). Eq. 5: L_oy = (0.08 / 1 + 0.06 / 3) / 2 =
    0.05 (pooling every cell would give 0.14 / 4 = 0.035); the same for x; heatmaps exact, so L = w_o x 0.1."""
    gt_h = torch.zeros(1, 2, 2, 2)
    gt_h[0, 0, 0, 0] = 1.0
    gt_h[0, 1, 0, 1] = gt_h[0, 1, 1, 0] = gt_h[0, 1, 1, 1] = 0.9
    gt_o = torch.zeros(1, 4, 2, 2)
    gt_o[0, 0, 0, 0] = gt_o[0, 2, 0, 0] = 0.4  # keypoint 0: y (channel 0) and x (channel 2)
    for i, j in ((0, 1), (1, 0), (1, 1)):
        gt_o[0, 1, i, j] = gt_o[0, 3, i, j] = 0.2  # keypoint 1
    output = torch.cat([gt_h, torch.zeros(1, 4, 2, 2)], dim=1)
    targets = {"heatmaps": gt_h, "offsets": gt_o, "keypoint_weights": torch.ones(1, 2)}
    for region in ("gt", "pred", "union"):
        parts = CompositeLoss(w_h=0.5, w_o=2.0, tau=0.6, region=region)(output, targets)
        assert float(parts["offset_y"]) == pytest.approx(0.05, abs=1e-7), region
        assert float(parts["offset_x"]) == pytest.approx(0.05, abs=1e-7), region
        assert float(parts["heatmap"]) == 0.0 and float(parts["loss"]) == pytest.approx(0.2, abs=1e-7)


# -- One-Euro: Casiez, Roussel and Vogel (CHI 2012), step by step -------------------------------------------------


class ReferenceOneEuro:
    """The 1-euro filter of one scalar signal as the paper's pseudocode writes it: alpha = 1 / (1 + tau / T_e) with
    tau = 1 / (2 pi f_c); the derivative of the *filtered* signal, low-passed at d_cutoff; the cutoff from that
    filtered speed, f_c = min_cutoff + beta |dx_hat|. An invalid measurement is not fed to the filter at all."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = self.t = None

    @staticmethod
    def alpha(cutoff: float, te: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def __call__(self, x: float, t: float) -> float:
        if self.x is None:
            self.x, self.dx, self.t = x, 0.0, t
            return x
        te = t - self.t
        dx = (x - self.x) / te
        self.dx = self.dx + self.alpha(self.d_cutoff, te) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * abs(self.dx)
        self.x = self.x + self.alpha(cutoff, te) * (x - self.x)
        self.t = t
        return self.x


def test_one_euro_follows_the_paper_step_by_step() -> None:
    rng = np.random.default_rng(0)
    n, dt = 40, 1 / 25
    signal = np.cumsum(rng.normal(0, 3, (n, 2, 2)), axis=0) + rng.normal(0, 1, (n, 2, 2))
    valid = rng.random((n, 2, 1)) > 0.3
    valid[0] = True
    ours = OneEuro(min_cutoff=0.7, beta=0.08, d_cutoff=1.3)
    reference = [[ReferenceOneEuro(0.7, 0.08, 1.3) for _ in range(2)] for _ in range(2)]
    last = signal[0].copy()
    for step in range(n):
        t = step * dt
        got = ours(signal[step], t, valid[step])
        for k in range(2):
            for c in range(2):
                if valid[step, k, 0]:
                    last[k, c] = reference[k][c](float(signal[step, k, c]), t)
        np.testing.assert_allclose(got, last, rtol=0, atol=1e-12, err_msg=f"step {step}")


# -- skeletons and the heatmap decode ------------------------------------------------------------------------------


def test_torso_joints_are_the_left_shoulder_and_the_right_hip() -> None:
    """LSP's PCK (and the synthetic skeleton's, in MPII's joint order) normalise by left shoulder to right hip."""
    for skeleton in (LSP, SYNTHETIC):
        a, b = skeleton.torso_joints
        assert (skeleton.keypoints[a], skeleton.keypoints[b]) == ("l-shoulder", "r-hip"), skeleton.name
    assert SYNTHETIC.keypoints == MPII.keypoints and SYNTHETIC.torso_joints == (13, 2)


def _hrnet_final_coords(heatmap: np.ndarray) -> tuple[float, float]:
    """HRNet lib/core/inference.py get_final_preds (2ad80f2) for one map: the arg-max, then a quarter cell towards
    the higher neighbour where 1 < px < W' - 1 and 1 < py < H' - 1 (strict: no shift at column or row 1)."""
    hp, wp = heatmap.shape
    idx = int(np.argmax(heatmap))
    x, y = float(idx % wp), float(idx // wp)
    px, py = math.floor(x + 0.5), math.floor(y + 0.5)
    if 1 < px < wp - 1 and 1 < py < hp - 1:
        x += 0.25 * np.sign(heatmap[py][px + 1] - heatmap[py][px - 1])
        y += 0.25 * np.sign(heatmap[py + 1][px] - heatmap[py - 1][px])
    return x, y


@pytest.mark.parametrize(("row", "col"), [(1, 1), (1, 3), (3, 1), (2, 2), (3, 4), (4, 3), (0, 2), (2, 0), (4, 5)])
def test_heatmap_decode_border_rule_is_hrnets(row: int, col: int) -> None:
    codec = HeatmapCodec((20, 24), stride=4)  # maps 5 x 6
    heatmap = np.zeros((5, 6), np.float32)
    heatmap[row, col] = 1.0
    if col + 1 < 6:
        heatmap[row, col + 1] = 0.5  # the higher neighbour is right
    if row - 1 >= 0:
        heatmap[row - 1, col] = 0.4  # and up
    keypoints, _ = codec.decode(torch.from_numpy(heatmap)[None, None])
    x, y = _hrnet_final_coords(heatmap)
    np.testing.assert_allclose(keypoints[0, 0].numpy(), [x * 4, y * 4], atol=1e-6)
