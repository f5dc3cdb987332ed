"""`clpose prepare`: raw dataset files as downloaded -> one records file per split + summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clpose.data.prepare.common import Report, drop_unusable, print_summary, summarize, write_all
from clpose.data.records import records_path
from clpose.errors import ClposeError
from clpose.outputs import check_outputs

DATASETS = ("lsp", "mpii", "coco", "synthetic")


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
) -> dict[str, Any]:
    """Convert (or generate) a dataset; returns the summary that is also written to OUT/summary.json."""
    report = Report()
    ann = parse_assignments(annotations or [], root, "--annotations")
    imgs = parse_assignments(images or [], root, "--images")
    if dataset != "synthetic" and not root.is_dir():
        raise ClposeError(f"--root {root} is not a folder (expected the {dataset} files as downloaded)")
    if dataset == "lsp":
        from clpose.data.prepare.lsp import prepare_lsp

        splits, tables = prepare_lsp(root, report)
    elif dataset == "mpii":
        from clpose.data.prepare.mpii import prepare_mpii

        if "*" in ann:
            raise ClposeError(
                "--annotations for mpii needs SPLIT=FILE (train, valid, trainval, test, release, gt_valid)"
            )
        splits, tables = prepare_mpii(root, report, ann, imgs.get("*"))
    elif dataset == "coco":
        from clpose.data.prepare.coco import prepare_coco

        if "*" in ann:
            raise ClposeError("--annotations for coco needs SPLIT=FILE, e.g. val=person_keypoints_val2017.json")
        splits, tables = prepare_coco(root, report, ann, imgs, parse_detections(detections, root))
    elif dataset == "synthetic":
        from clpose.data.prepare.synthetic import prepare_synthetic

        options = dict(synthetic or {})
        counts = {"train": options.pop("train", 4000), "valid": options.pop("val", 500)}
        splits, tables = prepare_synthetic(out, report, counts, **options)
    else:
        raise ClposeError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    splits = {split: drop_unusable(records, split, report) for split, records in splits.items()}
    summary = summarize(splits, tables, report)
    outputs: dict[str, Path] = {f"the {split} records": records_path(out, split) for split in splits}
    check_outputs(
        {**outputs, "the summary": out / "summary.json"},
        {"a source file": sorted({src for r in splits.values() for src in r.sources if Path(src).is_file()})},
    )
    write_all(out, dataset, splits, summary)
    if show:
        print_summary(dataset, out, summary)
    return summary
