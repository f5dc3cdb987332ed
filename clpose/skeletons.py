"""Keypoint metadata per dataset: names, flip pairs, drawing edges, OKS sigmas and how PCK is normalised.

Every other module takes these facts from here (docs/datasets.md lists them); nothing else holds a keypoint table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from clpose.errors import ClposeError

PckNorm = Literal["torso", "head_box", "bbox"]


@dataclass(frozen=True)
class Skeleton:
    """Keypoint layout of one dataset.

    Attributes:
        name: registry name ("lsp", "mpii", "coco", "synthetic").
        keypoints: K names, in the dataset's order (0-based index = channel).
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        edges: index pairs drawn as limbs.
        sigmas: per-keypoint OKS sigmas (COCO), or None where OKS is not defined.
        pck_norm: what normalises PCK: "torso" (distance between `torso_joints`), "head_box"
            (0.6 x head box diagonal, MPII) or "bbox" (the larger side of the person box).
        torso_joints: the two joints whose distance is the torso size (for pck_norm="torso").
        pck_columns: table column -> joints averaged (mean of the per-joint rates) in that column.
        mean_joints: joints pooled into the "Mean" column (weighted by how often each is labelled).
        official_head: the joints of the "Head" column as the official MPII toolkit averages them (upper neck and
            head top; `clpose eval --head official`), where it differs from pck_columns' (the papers' head top).
        upper_body: joints of the upper body (the half-body augmentation crops them or the rest).
    """

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int], ...]
    pck_norm: PckNorm
    sigmas: tuple[float, ...] | None = None
    torso_joints: tuple[int, int] | None = None
    pck_columns: dict[str, tuple[int, ...]] = field(default_factory=dict)
    mean_joints: tuple[int, ...] = ()
    official_head: tuple[int, ...] | None = None
    upper_body: tuple[int, ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_index(self) -> list[int]:
        """Permutation p with p[i] = the keypoint that i becomes after a horizontal flip."""
        index = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    def side(self, k: int) -> Literal["left", "right", "centre"]:
        """Body side of keypoint k, read from its name ("l-..." / "r-..."), for colouring."""
        name = self.keypoints[k]
        if name.startswith("l-"):
            return "left"
        if name.startswith("r-"):
            return "right"
        return "centre"


# fmt: off
_MPII_NAMES = (
    "r-ankle", "r-knee", "r-hip", "l-hip", "l-knee", "l-ankle", "pelvis", "thorax",
    "upper-neck", "head-top", "r-wrist", "r-elbow", "r-shoulder", "l-shoulder", "l-elbow", "l-wrist",
)
_MPII_FLIP = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
_MPII_EDGES = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15),
)
_MPII_LIMBS = {
    "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
    "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5),
}
# PCKh Mean: the 14 joints other than pelvis (6) and thorax (7), as in the validation tables.
_MPII_MEAN = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)
_MPII_UPPER = (7, 8, 9, 10, 11, 12, 13, 14, 15)

LSP = Skeleton(
    name="lsp",
    keypoints=(
        "r-ankle", "r-knee", "r-hip", "l-hip", "l-knee", "l-ankle", "r-wrist", "r-elbow",
        "r-shoulder", "l-shoulder", "l-elbow", "l-wrist", "neck", "head-top",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    edges=(
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 12), (12, 9), (9, 10),
        (10, 11), (12, 13), (8, 2), (9, 3),
    ),
    pck_norm="torso",
    torso_joints=(9, 2),  # left shoulder to right hip
    pck_columns={
        "Head": (12, 13), "Shoulder": (8, 9), "Elbow": (7, 10), "Wrist": (6, 11),
        "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5),
    },
    mean_joints=tuple(range(14)),
    upper_body=tuple(range(6, 14)),
)

MPII = Skeleton(
    name="mpii",
    keypoints=_MPII_NAMES,
    flip_pairs=_MPII_FLIP,
    edges=_MPII_EDGES,
    pck_norm="head_box",
    pck_columns={"Head": (9,), **_MPII_LIMBS},
    mean_joints=_MPII_MEAN,
    official_head=(8, 9),  # upper-neck, head-top
    upper_body=_MPII_UPPER,
)

COCO_PERSON = 1  # COCO's category id of a person (keypoint results are of people; torchvision's detection label too)
COCO = Skeleton(
    name="coco",
    keypoints=(
        "nose", "l-eye", "r-eye", "l-ear", "r-ear", "l-shoulder", "r-shoulder", "l-elbow", "r-elbow",
        "l-wrist", "r-wrist", "l-hip", "r-hip", "l-knee", "r-knee", "l-ankle", "r-ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    edges=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=tuple(s / 10.0 for s in (
        0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
    )),
    pck_norm="bbox",
    pck_columns={
        "Head": (0, 1, 2, 3, 4), "Shoulder": (5, 6), "Elbow": (7, 8), "Wrist": (9, 10),
        "Hip": (11, 12), "Knee": (13, 14), "Ankle": (15, 16),
    },
    mean_joints=tuple(range(17)),
    upper_body=tuple(range(11)),
)

# The built-in procedural figures use the MPII layout; with no head box drawn by a human, PCK@0.2 is
# normalised by the torso (left shoulder to right hip) as on LSP.
SYNTHETIC = dataclasses.replace(
    MPII,
    name="synthetic",
    pck_norm="torso",
    torso_joints=(13, 2),
    pck_columns={"Head": (8, 9), **_MPII_LIMBS},
    official_head=None,
)

# fmt: on

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (LSP, MPII, COCO, SYNTHETIC)}


def get_skeleton(name: str) -> Skeleton:
    """Look up a skeleton by name; an unknown name is a ClposeError listing the valid ones."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise ClposeError(f"unknown skeleton {name!r}; valid: {', '.join(SKELETONS)}") from None
