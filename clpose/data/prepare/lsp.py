"""LSP and LSP-extended -> records (splits: train = LSPET 10000 + LSP 1-1000, test = LSP 1001-2000).

- LSP `lsp_dataset/joints.mat`: 3 x 14 x 2000 (x, y, flag), flag = 1 where the joint is OCCLUDED; images
  `images/im0001.jpg` ... Every joint is labelled: v = 2, or 1 where occluded.
- LSP-extended `lspet_dataset/joints.mat`: 14 x 3 x 10000, flag = 1 where the joint is VISIBLE; the other
  joints carry no usable position (v = 0). Images `images/im00001.jpg` ...

Coordinates are MATLAB's 1-based pixels; records are 0-based (subtract 1). No box is given: the box is the
bounding box of the labelled joints (the recipe's box_padding enlarges it). The folders may also be called
`lsp/` and `lspet/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clpose.data.prepare.common import ImageTable, Report, count_outside, load_mat, mat_array
from clpose.data.records import Records, new_records
from clpose.data.transforms import PIXEL_STD
from clpose.errors import ClposeError


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name / "joints.mat").is_file():
            return root / name
    return None


def joints_box(keypoints: np.ndarray) -> tuple[list[float], list[float], list[float]] | None:
    """(centre, scale, box xywh) of the labelled joints' bounding box, or None with fewer than two."""
    pts = keypoints[keypoints[:, 2] > 0, :2]
    if len(pts) < 2:
        return None
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(hi - lo, 1.0)
    return list((lo + hi) / 2), list(size / PIXEL_STD), [*lo, *size]


def read_lsp_joints(path: Path) -> np.ndarray:
    """LSP joints.mat -> (N, 14, 3) with v in {1, 2}, 0-based coordinates."""
    arr = mat_array(load_mat(path), "joints", path, (3, 14, None))
    kpts = arr.transpose(2, 1, 0).copy()
    kpts[:, :, :2] -= 1.0
    kpts[:, :, 2] = np.where(arr[2].T > 0.5, 1.0, 2.0)  # occluded -> 1, visible -> 2
    return kpts


def read_lspet_joints(path: Path) -> np.ndarray:
    """LSP-extended joints.mat -> (N, 14, 3) with v in {0, 2}, 0-based coordinates."""
    arr = mat_array(load_mat(path), "joints", path, (14, 3, None))
    kpts = arr.transpose(2, 0, 1).copy()
    kpts[:, :, :2] -= 1.0
    visible = kpts[:, :, 2] > 0.5
    kpts[:, :, 2] = np.where(visible, 2.0, 0.0)
    kpts[~visible] = 0.0
    return kpts


def _people(kpts: np.ndarray, files: list[str], table: ImageTable, report: Report, split: str) -> list[dict]:
    people = []
    for person, file in zip(kpts, files, strict=True):
        index = table.add(file)
        image = table.images[index]
        report.warn(
            split, "labelled joints outside the image (kept)", count_outside(person, image["width"], image["height"])
        )
        box = joints_box(person)
        if box is None:
            report.warn(split, "people with fewer than two labelled joints (skipped)")
            continue
        center, scale, xywh = box
        people.append({"image_index": index, "center": center, "scale": scale, "keypoints": person, "box": xywh})
    return people


def prepare_lsp(root: Path, report: Report) -> tuple[dict[str, Records], dict[str, ImageTable]]:
    lsp_dir = _find(root, ("lsp_dataset", "lsp"))
    lspet_dir = _find(root, ("lspet_dataset", "lspet"))
    if lsp_dir is None and lspet_dir is None:
        raise ClposeError(f"{root} holds neither lsp_dataset/joints.mat nor lspet_dataset/joints.mat")
    train_people: list[dict] = []
    splits: dict[str, Records] = {}
    tables: dict[str, ImageTable] = {}
    sources: list[str] = []
    image_root = root
    train_table = ImageTable(image_root)
    if lspet_dir is not None:
        kpts = read_lspet_joints(lspet_dir / "joints.mat")
        files = [f"{lspet_dir.name}/images/im{i + 1:05d}.jpg" for i in range(len(kpts))]
        train_people += _people(kpts, files, train_table, report, "train")
        sources.append(str(lspet_dir / "joints.mat"))
    if lsp_dir is not None:
        kpts = read_lsp_joints(lsp_dir / "joints.mat")
        files = [f"{lsp_dir.name}/images/im{i + 1:04d}.jpg" for i in range(len(kpts))]
        half = len(kpts) // 2  # the standard split: 1..1000 train, 1001..2000 test
        train_people += _people(kpts[:half], files[:half], train_table, report, "train")
        test_table = ImageTable(image_root)
        test_people = _people(kpts[half:], files[half:], test_table, report, "test")
        splits["test"] = new_records(
            "lsp", "lsp", "test", test_table.images, test_people, image_root, [str(lsp_dir / "joints.mat")]
        )
        tables["test"] = test_table
        sources.append(str(lsp_dir / "joints.mat"))
    splits["train"] = new_records("lsp", "lsp", "train", train_table.images, train_people, image_root, sources)
    tables["train"] = train_table
    return dict(sorted(splits.items(), key=lambda kv: kv[0] != "train")), tables
