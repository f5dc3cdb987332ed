"""Losses on hand-computed cases, empty regions, non-finite predictions and multi-stage outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.losses import (
    CompositeLoss,
    CompositeLossOptions,
    GRMILoss,
    HeatmapMSELoss,
    HeatmapMSEOptions,
    PeakMSELoss,
    build_loss,
)


def _case() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """N = 1, K = 1, 2x2 maps."""
    gt_h = torch.tensor([[[[1.0, 0.65], [0.2, 0.0]]]])
    gt_oy = torch.tensor([[[[0.25, 0.25], [-0.75, -0.75]]]])
    gt_ox = torch.tensor([[[[0.75, -0.25], [0.75, -0.25]]]])
    pred_h = torch.tensor([[[[0.7, 0.1], [0.0, 0.9]]]])
    pred_oy = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]])
    pred_ox = torch.tensor([[[[-1.0, 0.0], [0.0, 0.0]]]])
    output = torch.cat([pred_h, pred_oy, pred_ox], dim=1)
    targets = {"heatmaps": gt_h, "offsets": torch.cat([gt_oy, gt_ox], dim=1), "keypoint_weights": torch.ones(1, 1)}
    return output, targets


def test_composite_loss_by_hand_for_each_region() -> None:
    output, targets = _case()
    mse = (0.3**2 + 0.55**2 + 0.2**2 + 0.9**2) / 4
    # smooth-L1 (beta 1) per cell: y errors 0.25, 0.25, 0.75, 0.75 -> 0.03125, 0.03125, 0.28125, 0.28125
    #                              x errors 1.75, 0.25, 0.75, 0.25 -> 1.25,    0.03125, 0.28125, 0.03125
    sl1_y = {(0, 0): 0.03125, (0, 1): 0.03125, (1, 0): 0.28125, (1, 1): 0.28125}
    sl1_x = {(0, 0): 1.25, (0, 1): 0.03125, (1, 0): 0.28125, (1, 1): 0.03125}
    regions = {"pred": [(0, 0), (1, 1)], "gt": [(0, 0), (0, 1)], "union": [(0, 0), (0, 1), (1, 1)]}
    for region, cells in regions.items():
        parts = CompositeLoss(w_h=0.5, w_o=2.0, tau=0.6, region=region)(output, targets)
        oy = sum(sl1_y[c] for c in cells) / len(cells)
        ox = sum(sl1_x[c] for c in cells) / len(cells)
        assert parts["heatmap"].item() == pytest.approx(mse, abs=1e-6)
        assert parts["offset_y"].item() == pytest.approx(oy, abs=1e-6), region
        assert parts["offset_x"].item() == pytest.approx(ox, abs=1e-6), region
        assert parts["loss"].item() == pytest.approx(0.5 * mse + 2.0 * (oy + ox), abs=1e-6)


def test_pred_region_with_an_all_zero_prediction_gives_zero_offset_loss() -> None:
    codec = CompositeCodec((64, 64), stride=16)
    t = codec.encode(np.array([[20.0, 30.0], [50.0, 10.0]]), np.ones(2))
    targets = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    output = torch.zeros(1, 6, 4, 4, requires_grad=True)
    parts = CompositeLoss(region="pred")(output, targets)
    assert parts["offset_y"].item() == 0 and parts["offset_x"].item() == 0
    assert torch.isfinite(parts["loss"])
    parts["loss"].backward()
    assert torch.isfinite(output.grad).all() and output.grad[:, 2:].abs().sum() == 0


def test_non_finite_predictions_outside_the_region_do_not_poison_the_loss() -> None:
    output, targets = _case()
    output[0, 1, 1, 0] = float("nan")  # y-offset at cell (1,0), outside every region but union's
    parts = CompositeLoss(region="gt")(output, targets)
    assert torch.isfinite(parts["loss"])


def test_invisible_keypoints_do_not_contribute() -> None:
    output, targets = _case()
    targets["keypoint_weights"] = torch.zeros(1, 1)
    for loss in (CompositeLoss(region="union"), PeakMSELoss(), HeatmapMSELoss()):
        out = output if not isinstance(loss, HeatmapMSELoss) else output[:, :1]
        assert loss(out, targets)["loss"].item() == 0


def test_multi_stage_outputs_sum_the_stages() -> None:
    output, targets = _case()
    loss = CompositeLoss(region="gt")
    single = loss(output, targets)["loss"]
    assert loss([output, output, output], targets)["loss"].item() == pytest.approx(3 * single.item())


def test_peak_mse_trains_offsets_only_at_the_target_peak() -> None:
    output, targets = _case()
    parts = PeakMSELoss(w_h=0.5, w_o=2.0)(output, targets)
    # target peak is cell (0,0): y error 0.25, x error 1.75
    assert parts["offset_y"].item() == pytest.approx(0.0625)
    assert parts["offset_x"].item() == pytest.approx(3.0625)


def test_grmi_uses_bce_and_offsets_at_positive_cells() -> None:
    output, targets = _case()
    disk = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    targets["heatmaps"] = disk
    parts = GRMILoss()(output, targets)
    logits = output[:, :1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, disk)
    assert parts["heatmap"].item() == pytest.approx(bce.item(), abs=1e-6)
    assert parts["offset_y"].item() == pytest.approx((0.03125 + 0.03125) / 2)
    assert parts["offset_x"].item() == pytest.approx((1.25 + 0.03125) / 2)


def test_heatmap_mse_matches_hrnet_joints_mse() -> None:
    codec = HeatmapCodec((32, 32), stride=4)
    t = codec.encode(np.array([[10.0, 12.0], [3.0, 20.0]]), np.array([1, 0]))
    gt = torch.from_numpy(t["heatmaps"])[None]
    weights = torch.from_numpy(t["keypoint_weights"])[None]
    pred = torch.rand_like(gt)
    parts = HeatmapMSELoss(w_h=0.5)(pred, {"heatmaps": gt, "keypoint_weights": weights})
    # HRNet JointsMSELoss: sum over joints of 0.5 * MSE(pred * w, gt * w), divided by the joint count
    expected = sum(0.5 * ((pred[0, j] - gt[0, j]) ** 2 * weights[0, j]).mean() for j in range(2)) / 2
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_build_loss_shares_tau_with_the_codec() -> None:
    loss = build_loss(CompositeLossOptions(region="gt"), CompositeCodec((64, 64), 16, tau=0.7))
    assert isinstance(loss, CompositeLoss) and loss.tau == 0.7 and loss.region == "gt"
    assert isinstance(build_loss(HeatmapMSEOptions(), HeatmapCodec((64, 64), 4)), HeatmapMSELoss)
