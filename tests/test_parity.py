"""The export's parity check (clpose.engine.onnx_graph.check_parity): a graph that does not reproduce PyTorch is
refused whichever way it is off, and a correct graph is not refused because a keypoint sits on one of the decode's
discrete choices (a cell at tau, two equal peaks), where two correct fp32 implementations may decode a cell apart
(issue 31, class 8: a 2048x2048 crop's graph was refused for a 0.1 px jump)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clpose.codecs.composite import CompositeCodec
from clpose.codecs.heatmap import HeatmapCodec
from clpose.engine.onnx_graph import MAP_TOLERANCE, check_parity
from clpose.errors import ClposeError


class Fixed(nn.Module):
    """A 'network' whose output is a given tensor (whatever the input)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.expand(len(x), *self.output.shape[1:]).clone()


def _composite_output(codec: CompositeCodec, values: dict[tuple[int, int], float]) -> torch.Tensor:
    """(1, 3, H', W') for one keypoint: heat `values` at cells, 0 elsewhere, offsets +0.25 (x) and -0.25 (y)."""
    hp, wp = codec.heatmap_hw
    out = torch.zeros(1, 3, hp, wp)
    for (i, j), v in values.items():
        out[0, 0, i, j] = v
    out[0, 1], out[0, 2] = -0.25, 0.25
    return out


def _run_returning(maps: torch.Tensor):
    return lambda x: [maps.expand(len(x), *maps.shape[1:]).numpy()]


def _check(output: torch.Tensor, got: torch.Tensor, codec) -> object:
    x = torch.zeros(2, 3, *codec.input_hw)
    return check_parity(Fixed(output), _run_returning(got), x, "test", codec, False, True)


@pytest.mark.parametrize("shift", [-0.5, 0.5, -2 * MAP_TOLERANCE])
def test_maps_off_either_way_are_refused(shift: float) -> None:
    """A check of signed differences passed every graph whose maps were too low (the max of negative numbers)."""
    codec = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6)
    output = _composite_output(codec, {(1, 1): 0.9, (1, 2): 0.7})
    with pytest.raises(ClposeError, match=r"maps differ by"):
        _check(output, output + shift, codec)


def test_a_cell_on_tau_may_decode_a_cell_apart() -> None:
    """Cell (1, 2) sits 1e-6 above tau in PyTorch and 1e-6 below in the graph: it votes in one and not in the
    other, so the keypoint moves by a third of a cell (5.33 px), while the maps differ by 2e-6. Not a wrong graph."""
    codec = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6)
    output = _composite_output(codec, {(1, 1): 0.9, (1, 2): 0.6 + 1e-6})
    got = output.clone()
    got[0, 0, 1, 2] = 0.6 - 1e-6
    ref_kp = codec.decode_output(output)[0][0, 0]
    got_kp = codec.decode_output(got)[0][0, 0]
    assert float((got_kp - ref_kp).abs().max()) == pytest.approx(16 * 0.6 / 1.5, abs=1e-3)  # it does jump
    parity = _check(output, got, codec)
    assert parity.unstable == 3 and parity.keypoint_diff == 0.0  # the 3 crops of the check, 1 keypoint each


def test_a_keypoint_away_from_tau_must_match() -> None:
    """The same maps with every cell far from tau, and the graph's offsets off by 0.004 (within the map tolerance
    of 1e-3? no: 4x past it) is refused; offsets off by 0.0009 (within) move the keypoint 0.014 px: accepted."""
    codec = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6)
    output = _composite_output(codec, {(1, 1): 0.9, (1, 2): 0.7})
    close = output.clone()
    close[0, 2] += 0.0009
    parity = _check(output, close, codec)
    assert parity.unstable == 0 and parity.keypoint_diff == pytest.approx(16 * 0.0009, abs=1e-5)
    far = output.clone()
    far[0, 2] += 0.004
    with pytest.raises(ClposeError, match=r"maps differ by 0\.004"):
        _check(output, far, codec)


def test_two_equal_peaks_of_a_heatmap_may_decode_a_cell_apart() -> None:
    codec = HeatmapCodec((64, 64), stride=4, sigma=2.0)
    out = torch.zeros(1, 1, 16, 16)
    out[0, 0, 5, 5] = 0.8
    out[0, 0, 5, 9] = 0.8 + 5e-7
    out[0, 0, 5, 10], out[0, 0, 4, 9] = 0.3, 0.2  # the quarter shifts' neighbours: far from a tie
    out[0, 0, 5, 6], out[0, 0, 4, 5] = 0.3, 0.2
    got = out.clone()
    got[0, 0, 5, 9] = 0.8 - 5e-7
    assert float((codec.decode_output(got)[0] - codec.decode_output(out)[0]).abs().max()) == 16.0
    assert _check(out, got, codec).unstable == 3
    margin = codec.decision_margin(out)
    assert margin.shape == (1, 1) and float(margin) == pytest.approx(5e-7, abs=1e-7)


def test_decision_margins_by_hand() -> None:
    codec = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6)
    output = _composite_output(codec, {(1, 1): 0.9, (1, 2): 0.7, (0, 0): 0.55})
    assert float(codec.decision_margin(output)) == pytest.approx(0.05, abs=1e-7)  # 0.55 is 0.05 below tau
    below = _composite_output(codec, {(1, 1): 0.5, (1, 2): 0.45})  # no vote: the arg-max decides, gap 0.05
    assert float(codec.decision_margin(below)) == pytest.approx(0.05, abs=1e-7)
    peak = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6, decode="peak")
    assert float(peak.decision_margin(output)) == pytest.approx(0.2, abs=1e-7)
    assert np.isfinite(codec.decision_margin(torch.zeros(2, 3, 4, 4)).numpy()).all()


def test_large_maps_are_held_to_a_tolerance_of_their_size() -> None:
    """Round 4 re-run: a network trained with a high learning rate has maps reaching |60|; fp32 in another summation
    order differs there by ~1e-3 (0.00122), and its graph was refused although keypoints agreed within 0.008 px. The
    tolerance is 1e-3 x the largest |map| (where above 1); a wrong graph still fails at any size."""
    codec = CompositeCodec((64, 64), stride=16, sigma=16.0, tau=0.6)
    output = _composite_output(codec, {(1, 1): 0.9, (1, 2): 0.7})
    output[0, 0, 3, 3] = -60.0  # a large value far from tau and the peak
    noisy = output.clone()
    noisy[0, 0, 3, 3] += 0.0025  # 4e-5 of 60: float32 noise at that size
    assert _check(output, noisy, codec).map_diff == pytest.approx(0.0025, abs=1e-5)
    wrong = output.clone()
    wrong[0, 0, 3, 3] += 0.5
    with pytest.raises(ClposeError, match=r"maps differ by 0\.5 \(tolerance 0\.06\)"):
        _check(output, wrong, codec)
