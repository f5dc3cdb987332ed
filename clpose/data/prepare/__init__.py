"""`clpose prepare`: raw dataset files as downloaded -> one records file per split + summary.json.

`DATASETS` holds one `DatasetEntry` per dataset: its converter (one module per dataset here) and the metric its
validation is scored with. Adding a dataset is its converter module and one entry (plus its keypoint table in
clpose/skeletons.py when its skeleton is new).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clpose.data.prepare.common import ImageTable, Report, drop_unusable, print_summary, summarize, write_all
from clpose.data.records import Records, records_path
from clpose.errors import ClposeError
from clpose.outputs import OwnedFolder, check_outputs


@dataclass(frozen=True)
class PrepareArgs:
    """What `clpose prepare` was given: the download's folder, where the records go, and the SPLIT=FILE options."""

    root: Path
    out: Path
    annotations: dict[str, Path] = field(default_factory=dict)  # "*" for a bare FILE
    images: dict[str, Path] = field(default_factory=dict)
    detections: dict[str, Path] = field(default_factory=dict)
    synthetic: dict[str, Any] = field(default_factory=dict)  # the generator's options


Converted = tuple[dict[str, Records], dict[str, ImageTable]]


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset clpose prepares: `convert` makes its splits' records (and image tables, for the summary); `metric`
    is what its validation is scored with (clpose.evaluation.metrics); `download` whether it reads files as
    downloaded (the synthetic set is generated).

    How `clpose eval` treats its records: `annotation_file` where people are scored against the dataset's own
    annotation file (COCO's OKS), so that detected person boxes can be evaluated and records without keypoints are
    still labelled, except in `unlabelled_splits`; `save_formats` is what `--save-predictions` writes for a file
    suffix (clpose.evaluation.submission.SAVE_FORMATS), `test_formats` the same for a split without labels, and
    `submission_hint` names the file its benchmark's server or authors take."""

    convert: Callable[[PrepareArgs, Report], Converted]
    metric: str
    download: bool = True
    splits: tuple[str, ...] = ()  # the splits it always makes, where known before converting (outputs checked first)
    annotation_file: bool = False
    unlabelled_splits: tuple[str, ...] = ()
    save_formats: dict[str, str] = field(default_factory=dict)
    test_formats: dict[str, str] = field(default_factory=dict)
    submission_hint: str = "e.g. predictions.json"


def _lsp(args: PrepareArgs, report: Report) -> Converted:
    from clpose.data.prepare.lsp import prepare_lsp

    return prepare_lsp(args.root, report)


def _mpii(args: PrepareArgs, report: Report) -> Converted:
    from clpose.data.prepare.mpii import prepare_mpii

    if "*" in args.annotations:
        raise ClposeError("--annotations for mpii needs SPLIT=FILE (train, valid, trainval, test, release, gt_valid)")
    return prepare_mpii(args.root, report, dict(args.annotations), args.images.get("*"))


def _coco(args: PrepareArgs, report: Report) -> Converted:
    from clpose.data.prepare.coco import prepare_coco

    if "*" in args.annotations:
        raise ClposeError("--annotations for coco needs SPLIT=FILE, e.g. val=person_keypoints_val2017.json")
    return prepare_coco(args.root, report, dict(args.annotations), dict(args.images), dict(args.detections))


def _synthetic(args: PrepareArgs, report: Report) -> Converted:
    from clpose.data.prepare.synthetic import prepare_synthetic

    options = dict(args.synthetic)
    counts = {"train": options.pop("train", 4000), "valid": options.pop("val", 500)}
    return prepare_synthetic(args.out, report, counts, **options)


DATASETS: dict[str, DatasetEntry] = {
    "lsp": DatasetEntry(
        _lsp, "pck", save_formats={".mat": "lsp-joints"}, submission_hint="a .mat in the joints.mat layout"
    ),
    "mpii": DatasetEntry(
        _mpii,
        "pckh",
        save_formats={".mat": "mpii-preds"},
        test_formats={".mat": "mpii-submission"},
        submission_hint="pred_keypoints_mpii.mat for the MPII authors",
    ),
    "coco": DatasetEntry(
        _coco,
        "oks",
        annotation_file=True,
        unlabelled_splits=("test-dev",),
        save_formats={".json": "coco"},
        submission_hint="person_keypoints_test-dev2017_NAME_results.json for the evaluation server",
    ),
    "synthetic": DatasetEntry(_synthetic, "pck", download=False, splits=("train", "valid")),
}


def _owned(out: Path, splits: Iterable[str]) -> OwnedFolder:
    """The records and summary.json that prepare writes in `out`: replaced only where prepare wrote them."""
    names = ["summary.json", *(records_path(out, split).name for split in splits)]
    return OwnedFolder(out, "prepare", names, legacy=_prepared_before)


def _prepared_before(out: Path) -> bool:
    """A folder an older clpose prepared (before the manifest): its summary.json is prepare's."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"dataset", "splits"} <= summary.keys()


def _resolve(value: str, root: Path) -> Path:
    """A relative path is looked up in the dataset root first, then taken as given (relative to the cwd)."""
    path = Path(value)
    if not path.is_absolute() and (root / path).exists():
        return root / path
    return path


def parse_assignments(values: list[str], root: Path, option: str) -> dict[str, Path]:
    """["val=file.json", "dir"] -> {"val": root/file.json, "*": root/dir} for --annotations / --images."""
    out = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep:
            key, path = "*", value
        if not key or not path:
            raise ClposeError(f"{option} {value!r}: expected SPLIT=PATH (or PATH)")
        out[key] = _resolve(path, root)
    return out


def parse_detections(values: list[str] | str | Path | None, root: Path) -> dict[str, Path]:
    """--detections FILE (the val split, as before) or SPLIT=FILE, repeatable: {"val": FILE, "test-dev": FILE}."""
    if values is None:
        return {}
    items = [str(values)] if isinstance(values, (str, Path)) else [str(v) for v in values]
    out = parse_assignments(items, root, "--detections")
    if "*" in out:
        out.setdefault("val", out["*"])
        if out["val"] != out.pop("*"):
            raise ClposeError("--detections: a bare FILE means val=FILE, and val is given twice")
    return out


def run_prepare(
    dataset: str,
    root: Path,
    out: Path,
    annotations: list[str] | None = None,
    images: list[str] | None = None,
    detections: list[str] | str | Path | None = None,
    synthetic: dict[str, Any] | None = None,
    show: bool = True,
    also_writes: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Convert (or generate) a dataset; returns the summary that is also written to OUT/summary.json.
    `also_writes` (label -> path): what the command writes next (synthetic's --video and the files named after it),
    checked with the records by the output guard before anything is written."""
    if dataset not in DATASETS:
        raise ClposeError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    entry = DATASETS[dataset]
    if entry.download and not root.is_dir():
        raise ClposeError(f"--root {root} is not a folder (expected the {dataset} files as downloaded)")
    args = PrepareArgs(
        root,
        out,
        parse_assignments(annotations or [], root, "--annotations"),
        parse_assignments(images or [], root, "--images"),
        parse_detections(detections, root),
        dict(synthetic or {}),
    )
    outputs = {"the summary": out / "summary.json", **(also_writes or {})}
    check_outputs({**outputs, **{f"the {s} records": records_path(out, s) for s in entry.splits}})  # before any work
    if entry.splits:
        _owned(out, entry.splits).check()
    report = Report()
    splits, tables = entry.convert(args, report)
    splits = {split: drop_unusable(records, split, report) for split, records in splits.items()}
    summary = summarize(splits, tables, report)
    check_outputs(
        {**outputs, **{f"the {split} records": records_path(out, split) for split in splits}},
        {"a source file": sorted({src for r in splits.values() for src in r.sources if Path(src).is_file()})},
    )
    owned = _owned(out, splits)
    owned.claim()  # records and a summary of the user's (a train.json of another tool) are never replaced
    owned.record(owned.names)
    write_all(out, dataset, splits, summary)
    if show:
        print_summary(dataset, out, summary)
    return summary
