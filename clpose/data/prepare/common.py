"""What every converter shares: image checks, warnings, the summary, and writing all splits at the end."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from clpose.data.records import Records, records_path, save_records
from clpose.errors import ClposeError
from clpose.io import finite_json, write_json


@dataclass
class Report:
    """Counted problems per split: single bad people or images are warnings, never a crash halfway."""

    warnings: dict[str, Counter] = field(default_factory=dict)

    def warn(self, split: str, what: str, count: int = 1) -> None:
        if count:
            self.warnings.setdefault(split, Counter())[what] += count


class ImageTable:
    """Unique images of a split: id, file (relative to the image folder), size; missing files are counted.

    Sizes come from the file header (no decoding; `image_size`); with `known_size` (e.g. COCO's width/height) the
    file is still opened, to find empty, truncated and non-image files, but the annotation's size is kept.
    """

    def __init__(self, image_dir: Path) -> None:
        self.image_dir = image_dir
        self.images: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}
        self.missing: set[int] = set()  # indices into `images`
        self.unreadable: set[int] = set()  # empty, truncated or not an image

    def add(self, file: str, image_id: int | None = None, known_size: tuple[int, int] | None = None) -> int:
        if file in self.index:
            return self.index[file]
        width, height = known_size or (0, 0)
        path = self.image_dir / file
        if not path.is_file():
            self.missing.add(len(self.images))
        else:
            size = image_size(path)
            if size is None:
                self.unreadable.add(len(self.images))
            elif known_size is None:
                width, height = size
        self.index[file] = len(self.images)
        self.images.append(
            {
                "id": len(self.images) if image_id is None else image_id,
                "file": file,
                "width": int(width),
                "height": int(height),
            }
        )
        return self.index[file]


_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header, or None for a file no decoder can read in full: empty, not an image, or
    truncated. A JPEG that does not end with its end-of-image marker (a PNG without IEND) is decoded in full to
    be sure, so only suspicious files pay for a decode (an interrupted download is the usual cause)."""
    try:
        with Image.open(path) as im:
            size = im.size
            fmt = im.format
        end = {"JPEG": _JPEG_END, "PNG": _PNG_END}.get(fmt or "")
        if end is not None:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 64))
                tail = f.read().rstrip(b"\0\r\n ")
            if not tail.endswith(end):
                with Image.open(path) as im:
                    im.load()  # raises on a truncated file
        return size
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...: all mean unreadable
        return None


def drop_unusable(records: Records, split: str, report: Report) -> Records:
    """The one check of converted people before anything is written, whatever the converter and the source:
    people whose box (centre, scale) is not finite or not positive, or whose detection score is not finite, are
    dropped; labelled joints with non-finite coordinates become unlabelled; non-finite numbers in extras become
    null. Each is a counted warning. Records files are strict JSON (no NaN tokens) and train without a crash."""
    ok = (
        np.isfinite(records.centers).all(axis=1)
        & np.isfinite(records.scales).all(axis=1)
        & (records.scales > 0).all(axis=1)
        & np.isfinite(records.box_scores)
    )
    report.warn(split, "people with a non-finite or non-positive box or score (skipped)", int((~ok).sum()))
    if not ok.all():
        records = records.subset(np.flatnonzero(ok))
    kpts = records.keypoints
    bad = ~np.isfinite(kpts).all(axis=2) & (np.nan_to_num(kpts[:, :, 2], nan=1.0) != 0)
    bad |= ~np.isfinite(kpts[:, :, 2])
    report.warn(split, "labelled joints with non-finite coordinates (made unlabelled)", int(bad.sum()))
    kpts[bad] = 0.0
    kpts[~np.isfinite(kpts)] = 0.0  # coordinates of unlabelled joints carry no information
    records.boxes[~np.isfinite(records.boxes).all(axis=1)] = np.nan  # written as "box": null
    fixed = 0
    for i, extra in enumerate(records.extras):
        fixed += _count_nonfinite(extra)
        records.extras[i] = finite_json(extra)
    report.warn(split, "non-finite numbers in extras (written as null)", fixed)
    return records


def _count_nonfinite(value: Any) -> int:
    """How many non-finite floats `value` (numbers, lists, dicts) holds."""
    if isinstance(value, float | np.floating):
        return 0 if math.isfinite(value) else 1
    if isinstance(value, dict):
        return sum(_count_nonfinite(v) for v in value.values())
    if isinstance(value, list | tuple | np.ndarray):
        return sum(_count_nonfinite(v) for v in value)
    return 0


def load_mat(path: Path, **kwargs: Any) -> dict[str, Any]:
    """scipy.io.loadmat with a ClposeError naming the file."""
    if not path.is_file():
        raise ClposeError(f"{path} does not exist")
    try:
        return scipy.io.loadmat(str(path), **kwargs)
    except (ValueError, OSError, NotImplementedError, TypeError, scipy.io.matlab.MatReadError) as e:
        raise ClposeError(f"{path} could not be read as a MATLAB file ({e})") from None


def mat_array(mat: dict[str, Any], key: str, path: Path, shape: tuple[int | None, ...]) -> np.ndarray:
    """mat[key] as a float array of the given shape (None = any size), or a ClposeError saying what came."""
    if key not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__"))
        raise ClposeError(f"{path} has no array {key!r} (it has: {keys})")
    arr = np.asarray(mat[key])
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape, strict=False))
    if not ok:
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise ClposeError(f"{path}: {key} has shape {'x'.join(map(str, arr.shape))}, expected {want}")
    return arr.astype(np.float64)


def count_outside(keypoints: np.ndarray, width: int, height: int) -> int:
    """How many labelled joints lie outside the image (0 <= x < width, 0 <= y < height). They are kept:
    evaluation counts every labelled joint, and training gives joints outside the crop weight 0 anyway.
    Images of unknown size (0) are not checked."""
    if width <= 0 or height <= 0:
        return 0
    x, y, v = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    return int(((v > 0) & ((x < 0) | (y < 0) | (x >= width) | (y >= height))).sum())


def summarize(splits: dict[str, Records], tables: dict[str, ImageTable], report: Report) -> dict[str, Any]:
    out = {}
    for split, records in splits.items():
        table = tables.get(split)
        used = set(np.unique(records.image_index).tolist())
        out[split] = {
            "people": len(records),
            "images": len(used),
            "labelled_keypoints": int((records.keypoints[:, :, 2] > 0).sum()),
            "images_missing": len(used & table.missing) if table else 0,
            "images_unreadable": len(used & table.unreadable) if table else 0,
            "unreadable_files": sorted(table.images[j]["file"] for j in used & table.unreadable) if table else [],
            "sources": [str(source) for source in records.sources],  # which file each split came from
            "warnings": dict(report.warnings.get(split, {})),
        }
    return out


def write_all(out_dir: Path, dataset: str, splits: dict[str, Records], summary: dict[str, Any]) -> None:
    """Write every split and summary.json; each file is atomic and nothing is written before all splits are
    converted, so an interrupted `prepare` leaves no half-written records."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        save_records(records_path(out_dir, split), records)
    write_json(out_dir / "summary.json", {"dataset": dataset, "splits": summary})


def print_summary(dataset: str, out_dir: Path, summary: dict[str, Any]) -> None:
    from rich.table import Table

    from clpose.console import console, styled

    table = Table(title=f"clpose prepare {dataset} -> {out_dir}")
    for col in ("split", "people", "images", "labelled keypoints", "images missing", "warnings"):
        table.add_column(col, justify="left" if col in ("split", "warnings") else "right")
    for split, s in summary.items():
        missing = s["images_missing"] + s["images_unreadable"]
        warnings = "; ".join(f"{n} {what}" for what, n in s["warnings"].items()) or "-"
        if s["images_unreadable"]:
            warnings = f"{s['images_unreadable']} unreadable images; " + warnings
        table.add_row(
            split,
            str(s["people"]),
            str(s["images"]),
            str(s["labelled_keypoints"]),
            styled((str(missing), "red")) if missing else "0",
            warnings,
        )
    console.print(table)
    for split, s in summary.items():
        if s.get("sources"):
            # a path is not markup (brackets in a folder name print as they are) and is never folded
            console.print(f"{split}: from {', '.join(s['sources'])}", soft_wrap=True)
    for split, s in summary.items():
        files = s.get("unreadable_files", [])
        if files:
            more = f" and {len(files) - 5} more (all in summary.json)" if len(files) > 5 else ""
            what = (f"{split}: unreadable images (empty, truncated or not an image):", "yellow")
            console.print(styled(what, f" {', '.join(files[:5])}{more}"))
