"""Skeleton tables against PROTOCOLS.md."""

from __future__ import annotations

import pytest

from clpose.errors import ClposeError
from clpose.skeletons import COCO, LSP, MPII, SKELETONS, SYNTHETIC, get_skeleton


def test_counts_and_names() -> None:
    assert (LSP.num_keypoints, MPII.num_keypoints, COCO.num_keypoints, SYNTHETIC.num_keypoints) == (14, 16, 17, 16)
    assert LSP.keypoints[9] == "l-shoulder" and LSP.keypoints[2] == "r-hip" and LSP.keypoints[13] == "head-top"
    assert MPII.keypoints[6:10] == ("pelvis", "thorax", "upper-neck", "head-top")
    assert COCO.keypoints[0] == "nose" and COCO.keypoints[16] == "r-ankle"
    assert SYNTHETIC.keypoints == MPII.keypoints and SYNTHETIC.flip_pairs == MPII.flip_pairs


def test_flip_pairs_from_protocols() -> None:
    assert MPII.flip_pairs == ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
    assert LSP.flip_pairs == ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))
    assert COCO.flip_pairs == tuple((i, i + 1) for i in range(1, 17, 2))


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_flip_index_is_an_involution_that_swaps_sides(skeleton) -> None:
    index = skeleton.flip_index
    assert sorted(index) == list(range(skeleton.num_keypoints))
    assert [index[i] for i in index] == list(range(skeleton.num_keypoints))
    for k in range(skeleton.num_keypoints):
        other = {"left": "right", "right": "left", "centre": "centre"}[skeleton.side(k)]
        assert skeleton.side(index[k]) == other
    for a, b in skeleton.edges:
        assert 0 <= a < skeleton.num_keypoints and 0 <= b < skeleton.num_keypoints


def test_coco_sigmas() -> None:
    expected = [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    assert COCO.sigmas == pytest.approx([s / 10 for s in expected])
    assert LSP.sigmas is None and MPII.sigmas is None


def test_pck_normalisation_and_columns() -> None:
    assert LSP.pck_norm == "torso" and LSP.torso_joints == (9, 2)
    assert MPII.pck_norm == "head_box" and MPII.pck_columns["Head"] == (9,)
    assert 6 not in MPII.mean_joints and 7 not in MPII.mean_joints and len(MPII.mean_joints) == 14
    assert LSP.pck_columns["Head"] == (12, 13) and len(LSP.mean_joints) == 14
    assert list(MPII.pck_columns) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"]


def test_unknown_skeleton_lists_valid_names() -> None:
    with pytest.raises(ClposeError, match="lsp, mpii, coco, synthetic"):
        get_skeleton("coco_wholebody")
