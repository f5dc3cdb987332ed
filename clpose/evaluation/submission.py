"""Prediction files in the benchmarks' own formats: what `clpose eval --save-predictions` writes.

- `coco`: person_keypoints_test-dev2017_NAME_results.json, the COCO results list (image_id, category_id 1, 51
  keypoint numbers, score) that the evaluation server takes;
- `mpii-submission`: pred_keypoints_mpii.mat holding `pred`, the test part of RELEASE.annolist where each predicted
  single-person rectangle has annopoints.point(1..16) with x, y (1-based MATLAB pixels) and id (0-15);
- `mpii-preds`: `preds` M x 16 x 2, 1-based (the MPII scripts' input for the validation set);
- `lsp-joints`: `joints` 3 x 14 x M, x and y 1-based and the score, the layout of LSP's joints.mat;
- `npy`: M x K x 2, 0-based;  `clpose`: clpose predictions JSON (0-based image pixels and scores per person).

`SAVE_FORMATS` holds one entry per format; `auto` picks from the file name and the dataset (`choose_format`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from clpose.console import warn
from clpose.data.dataset import TopDownDataset
from clpose.errors import ClposeError
from clpose.evaluation.metrics import Predictions
from clpose.evaluation.prediction_files import PREDICTIONS_FORMAT
from clpose.io import atomic_path, write_json

COCO_RESULTS_NAME = re.compile(r"^person_keypoints_(test-dev|val|test-challenge)2017_[A-Za-z0-9-]+_results\.json$")
MPII_SUBMISSION_NAME = "pred_keypoints_mpii.mat"
Results = list[dict] | None


def _npy(path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, preds.keypoints[-1])


def _mpii_preds(
    path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None
) -> None:
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), {"preds": preds.keypoints[-1] + 1.0})


def _lsp_joints(
    path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None
) -> None:
    kpts, scores = preds.keypoints[-1], preds.scores[-1]
    joints = np.concatenate([kpts + 1.0, scores[..., None]], axis=2).transpose(2, 1, 0)  # 3 x K x M
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), {"joints": joints})


def _mpii_submission(
    path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None
) -> None:
    write_mpii_submission(path, mpii_release(dataset, release), dataset, preds)


def _coco(path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None) -> None:
    if results is None:
        raise ClposeError(f"--save-predictions {path}: COCO results need COCO records")
    if not COCO_RESULTS_NAME.match(path.name):
        warn(
            f"{path.name}: the COCO evaluation server expects a name like "
            "person_keypoints_test-dev2017_NAME_results.json (zipped alone)"
        )
    write_json(path, results, indent=None)


def _clpose(path: Path, dataset: TopDownDataset, preds: Predictions, results: Results, release: Path | None) -> None:
    write_json(path, clpose_predictions(dataset, preds), indent=None)


Writer = Callable[[Path, TopDownDataset, Predictions, Results, "Path | None"], None]


@dataclass(frozen=True)
class SaveFormat:
    """A prediction-file format `--save-predictions` writes: its file suffix, its writer (path, dataset,
    predictions, the COCO results list, the MPII RELEASE file), whether it is written from the COCO results list
    (rescored and OKS-NMS'd, made even for a split without labels), and the file name that means it whatever the
    dataset. Which format `auto` picks for a dataset is the dataset's entry (DatasetEntry.save_formats)."""

    suffix: str
    write: Writer
    coco_results: bool = False
    file_name: str | None = None
    reads_release: bool = False  # written into the dataset's RELEASE file: --annotations may name it (MPII's test)


SAVE_FORMATS: dict[str, SaveFormat] = {
    "coco": SaveFormat(".json", _coco, coco_results=True),
    "mpii-submission": SaveFormat(".mat", _mpii_submission, file_name=MPII_SUBMISSION_NAME, reads_release=True),
    "mpii-preds": SaveFormat(".mat", _mpii_preds),
    "lsp-joints": SaveFormat(".mat", _lsp_joints),
    "npy": SaveFormat(".npy", _npy),
    "clpose": SaveFormat(".json", _clpose),
}
DEFAULT_FORMATS = {".json": "clpose", ".mat": "mpii-preds", ".npy": "npy"}  # a dataset's entry may say otherwise


def save_format_names() -> list[str]:
    return ["auto", *SAVE_FORMATS]


def choose_format(path: Path, fmt: str, dataset: str, split: str, labelled: bool) -> str:
    """The format asked for, or with "auto": the format whose file name this is (pred_keypoints_mpii.mat), else the
    dataset's for the suffix (its test_formats for a split without labels, then its save_formats: MPII's test split
    .mat -> mpii-submission, LSP's .mat -> lsp-joints, COCO's .json -> coco), else .json -> clpose, .mat ->
    mpii-preds, .npy -> npy."""
    from clpose.data.prepare import DATASETS

    if fmt != "auto" and fmt not in SAVE_FORMATS:
        raise ClposeError(f"--format {fmt!r}: valid: {', '.join(save_format_names())}")
    suffix = path.suffix.lower()
    if fmt != "auto":
        want = SAVE_FORMATS[fmt].suffix
        if suffix != want:
            raise ClposeError(f"--save-predictions {path}: the {fmt} format is a {want} file")
        return fmt
    named = [name for name, f in SAVE_FORMATS.items() if f.file_name == path.name]
    if named:
        return named[0]
    entry = DATASETS.get(dataset)
    choices = {**DEFAULT_FORMATS}
    if entry is not None:
        choices.update(entry.save_formats)
        if not labelled:
            choices.update(entry.test_formats)
    if suffix not in choices:
        raise ClposeError(f"--save-predictions {path}: unknown extension {path.suffix!r}; use .json, .mat or .npy")
    return choices[suffix]


def write_predictions(
    path: Path,
    fmt: str,
    dataset: TopDownDataset,
    preds: Predictions,
    coco_results: list[dict] | None = None,
    release: Path | None = None,
) -> None:
    """Write the last stage's predictions of `dataset` to `path` in `fmt` (a resolved format), atomically. Nothing is
    written unless every number is finite: a submission file never holds NaN, inf or null."""
    check_finite_predictions(path, preds.keypoints[-1], preds.scores[-1], coco_results)
    SAVE_FORMATS[fmt].write(path, dataset, preds, coco_results, release)


def check_finite_predictions(
    path: Path, keypoints: np.ndarray, scores: np.ndarray, coco_results: list[dict] | None = None
) -> None:
    """A ClposeError (nothing written) where a predicted keypoint, keypoint score or COCO result is not finite."""
    bad = ~(np.isfinite(keypoints).all(axis=(-1, -2)) & np.isfinite(scores).all(axis=-1))
    if coco_results is not None:
        from clpose.evaluation.coco import nonfinite_results

        bad_results = set(nonfinite_results(coco_results))
        bad_results |= {i for i, r in enumerate(coco_results) if not np.isfinite(r["score"])}
        if bad_results and not bad.any():
            raise ClposeError(
                f"{path} was not written: {len(bad_results)} of {len(coco_results)} COCO results are not finite"
            )
    if bad.any():
        raise ClposeError(
            f"{path} was not written: the predictions of {int(bad.sum())} of {len(bad)} people are not finite (NaN or "
            "inf), and a submission must not hold them"
        )


def clpose_predictions(dataset: TopDownDataset, preds: Predictions) -> dict[str, Any]:
    """clpose predictions JSON: each person with its index in the records, its image and image id (what the scorer
    matches it by) and its keypoints at full precision (rounded, a joint on the threshold could score otherwise
    than it did from the checkpoint); the scores rounded to 4 decimals."""
    records = dataset.records
    kpts, scores = preds.keypoints[-1], preds.scores[-1]
    people = [
        {
            "index": int(i),
            "image": records.images[records.image_index[i]]["file"],
            "image_id": records.images[records.image_index[i]]["id"],
            "keypoints": _rows(kpts[j], scores[j]),
        }
        for j, i in enumerate(preds.indices)
    ]
    return {
        "format": PREDICTIONS_FORMAT,
        "version": 1,
        "skeleton": dataset.skeleton.name,
        "coordinates": "0-based",
        "people": people,
    }


def _rows(keypoints: np.ndarray, scores: np.ndarray) -> list[list[float]]:
    """K rows [x, y, score]: x and y exact (Python writes the shortest text that reads back to the same float)."""
    return [[float(x), float(y), round(float(s), 4)] for (x, y), s in zip(keypoints, scores, strict=True)]


def mpii_release(dataset: TopDownDataset, release: Path | None) -> Path:
    """The RELEASE file the records came from (or the one given with --annotations)."""
    if release is not None:
        return Path(release)
    for source in dataset.records.sources:
        if Path(source).suffix.lower() == ".mat" and Path(source).is_file():
            return Path(source)
    raise ClposeError(
        f"{dataset.records.path}: the MPII test submission is written into RELEASE.annolist; the records name no "
        "RELEASE file that exists here: pass it with --annotations mpii_human_pose_v1_u12_1.mat"
    )


def write_mpii_submission(path: Path, release: Path, dataset: TopDownDataset, preds: Predictions) -> None:
    """`pred` = the test part of RELEASE.annolist (img_train == 0, in order), with annopoints.point(1..16) = x, y
    (1-based MATLAB pixels) and id (0-15) on every predicted single-person rectangle; the other rectangles keep
    objpos and scale and get no points (as the MPII site's instructions and anibali/eval-mpii-pose's
    prepareTestResults.m do)."""
    from clpose.data.prepare.mpii import release_test_images

    records = dataset.records
    k = dataset.skeleton.num_keypoints
    if dataset.skeleton.name != "mpii" or k != 16:
        raise ClposeError(f"{path}: the MPII submission needs 16 MPII keypoints, the records are {records.skeleton}")
    predicted = {}
    for j, i in enumerate(preds.indices):
        extras = records.extras[i]
        if "annolist_index" not in extras:
            raise ClposeError(
                f"{records.path}: people[{i}] has no RELEASE rectangle (annolist_index, rect_index): prepare the "
                "test split from the RELEASE file (an HRNet-style test.json does not say which rectangle a person is)"
            )
        predicted[(int(extras["annolist_index"]), int(extras["rect_index"]))] = preds.keypoints[-1][j]
    images = release_test_images(release)
    point = np.dtype([("x", object), ("y", object), ("id", object)])
    rect = np.dtype([("objpos", object), ("scale", object), ("annopoints", object)])
    pred = np.empty((1, len(images)), dtype=[("image", object), ("annorect", object)])
    written = 0
    for n, image in enumerate(images):
        rects = np.empty((1, len(image.rects)), dtype=rect)
        for r, (objpos, scale) in enumerate(image.rects):
            empty = np.zeros((0, 0))
            rects[0, r]["objpos"] = empty if objpos is None else {"x": objpos[0], "y": objpos[1]}
            rects[0, r]["scale"] = empty if scale is None else scale
            kp = predicted.get((image.annolist_index, r))
            if kp is None:
                rects[0, r]["annopoints"] = empty
                continue
            points = np.empty((1, k), dtype=point)
            for joint in range(k):
                points[0, joint] = (float(kp[joint, 0]) + 1.0, float(kp[joint, 1]) + 1.0, joint)
            rects[0, r]["annopoints"] = {"point": points}
            written += 1
        pred[0, n]["image"] = {"name": image.name}
        pred[0, n]["annorect"] = rects
    if written != len(predicted):
        raise ClposeError(
            f"{release}: {len(predicted) - written} predicted people are not test rectangles of this RELEASE file"
        )
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), {"pred": pred}, oned_as="row")
