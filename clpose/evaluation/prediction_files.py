"""Reading prediction files, in the layouts the literature publishes: for PCK / PCKh (.mat, .h5, .npy, clpose JSON)
and COCO results (JSON).

Coordinate conventions: MATLAB files (.mat) and HDF5 prediction files (.h5, `preds`) hold 1-based pixels, as the
datasets' own files and the published prediction files do; numpy files (.npy) and clpose records hold 0-based
pixels; clpose's predictions JSON says which it uses ("coordinates": "0-based" or "1-based"). Predictions are
shifted onto the ground truth's convention before scoring (PCK is unaffected by a common shift, but mixing
conventions moves every joint by one pixel).

Every file is checked before a number reaches a scorer: an array must hold numbers of the expected shape (text,
cells, structs and booleans are refused, not cast), a JSON entry must have its keys with values of the right
type, and an error names the file, the entry and the key. Suffixes are matched whatever their case (.MAT, .NPY).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clpose.errors import ClposeError, first_line
from clpose.evaluation.arrays import is_number, load_mat, numeric_array, one_person, read_json, shape_text, short
from clpose.skeletons import COCO_PERSON

PREDICTIONS_FORMAT = "clpose-predictions"
H5_SUFFIXES = (".h5", ".hdf5")
COCO_RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")


@dataclass
class PredictionFile:
    """What a predictions file holds: keypoints (M, K, 2), their pixel convention, and where the file says so
    (clpose predictions JSON), which person of the ground truth each one is (`indices`, (M,)) and each person's
    image file and image id (None where not said). Without indices the people are in the ground truth's order (the
    array formats, and a JSON without `index`, whose images must then be those of the people at their places)."""

    path: Path
    keypoints: np.ndarray
    one_based: bool
    indices: np.ndarray | None = None
    images: list[str | None] | None = None
    image_ids: list[Any] | None = None


def read_predictions(path: str | Path, k: int) -> tuple[np.ndarray, bool]:
    """Predicted keypoints (M, K, 2) and whether they are 1-based (`read_prediction_file` without the matching)."""
    found = read_prediction_file(path, k)
    return found.keypoints, found.one_based


def read_prediction_file(path: str | Path, k: int, skeleton: str | None = None, against: str = "") -> PredictionFile:
    """A predictions file of K keypoints per person; a clpose predictions JSON naming another skeleton than
    `skeleton` (the ground truth's, read from `against`) is refused.

    Accepted: .mat with `preds` (M x K x 2), `pos_pred_src` (K x 2 x M), or one array in the layout of LSP's
    joints.mat (2 or 3 x K x M), 1-based; .h5 / .hdf5 with a dataset `preds` of M x K x 2 or 2 x K x M (M x K x 3
    or 3 x K x M: the score is dropped), 1-based like .mat (needs h5py: `pip install 'clpose[h5]'`; so does a .mat
    of MATLAB's -v7.3 format, which is HDF5 and read the same way, `preds` only); .npy of
    shape (M, K, 2) or (M, K, 3), 0-based; clpose predictions JSON, which states its convention. Any other
    suffix is read as MATLAB. The arrays must hold numbers (integers or floats of any width).
    """
    path = Path(path)
    if not path.is_file():
        raise ClposeError(f"predictions {path} do not exist")
    suffix = path.suffix.lower()
    if suffix in H5_SUFFIXES:
        return PredictionFile(path, *_h5_predictions(path, k))
    if suffix == ".npy":
        return PredictionFile(path, _npy_predictions(path, k), False)
    if suffix == ".json":
        return _json_predictions(path, k, skeleton, against)
    return PredictionFile(path, _mat_predictions(path, k), True)


def _npy_predictions(path: Path, k: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle a file given on the command line
    except (ValueError, OSError, EOFError) as e:
        raise ClposeError(f"{path} could not be read as a numeric .npy array ({first_line(e)})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens a zip (.npz) archive whatever the suffix says
        arr.close()
        raise ClposeError(f"{path} is an .npz archive of several arrays; expected one array (M, {k}, 2) (np.save)")
    arr = numeric_array(arr, path, "the array")
    if arr.ndim != 3 or arr.shape[1:2] != (k,) or arr.shape[2] not in (2, 3):
        raise ClposeError(f"{path}: expected an array (M, {k}, 2), got {arr.shape}")
    return arr[..., :2]


def _mat_predictions(path: Path, k: int) -> np.ndarray:
    if _matlab_v73(path):  # MATLAB's `save -v7.3` writes HDF5, which scipy cannot read: `preds` as in an .h5 file
        return _h5_predictions(path, k)[0]
    mat = load_mat(path)
    if "preds" in mat:
        arr = numeric_array(mat["preds"], path, "preds")
        if arr.ndim != 3 or arr.shape[1:] not in ((k, 2), (k, 3)):
            raise ClposeError(f"{path}: preds has shape {shape_text(arr)}, expected Mx{k}x2")
        return arr[..., :2]
    if "pos_pred_src" in mat:
        arr = one_person(numeric_array(mat["pos_pred_src"], path, "pos_pred_src"), 3)
        if arr.ndim != 3 or arr.shape[:2] != (k, 2):
            raise ClposeError(f"{path}: pos_pred_src has shape {shape_text(arr)}, expected {k}x2xM")
        return arr.transpose(2, 0, 1)
    arrays = [(n, v) for n, v in mat.items() if isinstance(v, np.ndarray) and v.ndim == 3]
    if len(arrays) == 1 and arrays[0][1].shape[:2] in ((2, k), (3, k)):
        name, arr = arrays[0]
        return numeric_array(arr, path, name)[:2].transpose(2, 1, 0)
    found = ", ".join(f"{n} {shape_text(v)}" for n, v in mat.items() if hasattr(v, "shape"))
    raise ClposeError(
        f"{path}: expected preds (Mx{k}x2), pos_pred_src ({k}x2xM) or one 2x{k}xM / 3x{k}xM array; "
        f"found {found or 'nothing'}"
    )


def _matlab_v73(path: Path) -> bool:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte header that starts with this text."""
    try:
        with path.open("rb") as f:
            return f.read(128).startswith(b"MATLAB 7.3 MAT-file")
    except OSError:  # unreadable: scipy's reader says so in one line
        return False


def _h5_predictions(path: Path, k: int) -> tuple[np.ndarray, bool]:
    """`preds` from an HDF5 file, as the MPII evaluation scripts read it: (M, K, 2), 1-based.

    Convention, checked against the scripts that read and write these files:
    - anibali/eval-mpii-pose, README.md and evalMPII.m: `preds` in a .mat or .h5, "[2 x 16 x n] or [n x 16 x 2]",
      permuted when its first (Octave) dimension is 2, then compared with the x, y of the MPII annotations
      (mpii_human_pose_v1_u12_1.mat, 1-based) without any shift: 1-based pixels. Its reference predictions are
      scored that way: .h5 from Lua Torch (preds/reference/anewell-valid-ours.h5, tompson.h5) and .mat from
      bearpaw/pytorch-pose.
    - bearpaw/pytorch-pose, pose/utils/evaluation.py (get_preds adds 1: 1-based, ported from the Lua code) and
      evaluation/eval_PCKh.py (compares `preds` with gt_valid.mat's pos_gt_src unshifted).
    - microsoft/human-pose-estimation.pytorch and leoxiaobin/deep-high-resolution-net.pytorch, lib/dataset/mpii.py:
      evaluate() adds 1.0 ("convert 0-based index to 1-based index") before saving pred.mat `preds` and scoring
      against gt_valid.mat.
    All agree: 1-based, as the .mat readers here. h5py sees a file written row-major (Torch, numpy) as N x K x 2
    and one written by MATLAB / Octave (column-major) as 2 x K x N: the K axis is the middle one either way, and
    2 x K x N is the full transpose of N x K x 2.
    """
    try:
        import h5py
    except ImportError:
        raise ClposeError(f"{path}: reading HDF5 predictions needs h5py: pip install 'clpose[h5]'") from None
    try:
        with h5py.File(path, "r") as f:
            node = f.get("preds")
            if not isinstance(node, h5py.Dataset):
                found: list[str] = []

                def note(name: str, obj: object) -> None:
                    if isinstance(obj, h5py.Dataset):
                        found.append(f"{name} {'x'.join(map(str, obj.shape)) or 'scalar'}")

                f.visititems(note)
                raise ClposeError(
                    f"{path}: expected a dataset preds (Nx{k}x2 or 2x{k}xN); found {', '.join(found) or 'no datasets'}"
                )
            arr = np.asarray(node[()])
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
        # truncated or not HDF5: OSError; damaged inside: KeyError or RuntimeError from h5py's object lookups
        raise ClposeError(f"{path} could not be read as an HDF5 file ({e.args[0] if e.args else e})") from None
    shape = shape_text(arr)
    expected = f"expected Nx{k}x2 or 2x{k}xN (Nx{k}x3 / 3x{k}xN with scores)"
    if arr.ndim != 3 or arr.shape[1] != k or not ({arr.shape[0], arr.shape[2]} & {2, 3}):
        raise ClposeError(f"{path}: preds has shape {shape}, {expected}")
    if arr.shape[0] in (2, 3) and arr.shape[2] in (2, 3):
        raise ClposeError(f"{path}: preds has shape {shape}, ambiguous with 2 or 3 people: {expected}")
    if arr.shape[0] in (2, 3):
        arr = arr.transpose(2, 1, 0)
    return numeric_array(arr, path, "preds")[..., :2], True


def _json_predictions(path: Path, k: int, skeleton: str | None, against: str) -> PredictionFile:
    """clpose predictions JSON: people[i].keypoints is K rows [x, y] or [x, y, score]; people[i].index the person
    of the ground truth it predicts (every person has one, or none has: then they are in order), with its `image`
    and `image_id` (checked against that person, or without indices against the person at its place). A null number
    is NaN (a miss): clpose writes strict JSON, where a non-finite number becomes null."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ClposeError(
            f'{path} is not a clpose predictions file ("format": "{PREDICTIONS_FORMAT}"); '
            "for COCO results use --metric oks"
        )
    if data.get("coordinates") not in ("0-based", "1-based"):
        raise ClposeError(f'{path}: "coordinates" must be "0-based" or "1-based"')
    said = data.get("skeleton")
    if skeleton is not None and said is not None and said != skeleton:
        truth = against or "the ground truth"
        raise ClposeError(f"{path}: skeleton is {short(said)}, but {truth} holds {skeleton} people")
    people = data.get("people")
    if not isinstance(people, list):
        got = "missing" if "people" not in data else f"a {type(people).__name__}"
        raise ClposeError(f'{path}: "people" must be a list of {{"keypoints": [[x, y, score], ...]}}, it is {got}')
    kpts = np.empty((len(people), k, 2))
    for i, person in enumerate(people):
        kpts[i] = _json_person(path, i, person, k)
    found = PredictionFile(path, kpts, data["coordinates"] == "1-based")
    _json_identities(found, people)
    return found


def _json_person(path: Path, i: int, person: Any, k: int) -> list[list[float]]:
    rows = person.get("keypoints") if isinstance(person, dict) else None
    where = f"{path}: people[{i}] keypoints"
    if not isinstance(rows, list):
        got = "missing" if not isinstance(person, dict) or "keypoints" not in person else short(rows)
        raise ClposeError(f"{where} is {got}, expected {k} rows [x, y] or [x, y, score]")
    if len(rows) != k:
        raise ClposeError(f"{where} has {len(rows)} rows, expected {k} rows [x, y] or [x, y, score]")
    for j, row in enumerate(rows):
        if not isinstance(row, list) or len(row) not in (2, 3) or not all(v is None or is_number(v) for v in row):
            raise ClposeError(f"{where}[{j}] is {short(row)}, expected [x, y] or [x, y, score] numbers")
    return [[math.nan if v is None else v for v in row[:2]] for row in rows]


def _json_identities(found: PredictionFile, people: list[dict[str, Any]]) -> None:
    """`index` (all or none), `image` and `image_id` of each person, checked: they decide which person is scored,
    or, without indices, must agree with the person at that place (clpose.evaluation.ground_truth.match_people)."""
    has = [("index" in p) for p in people]
    if any(has) and not all(has):
        j = has.index(False)
        raise ClposeError(
            f"{found.path}: people[{j}] has no index but people[{has.index(True)}] has one: give every person its "
            "index (the person of the ground truth it predicts) or none (then the people are in its order)"
        )
    for j, p in enumerate(people):
        index = p.get("index")
        if has[j] and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**62):
            raise ClposeError(f"{found.path}: people[{j}] index is {short(index)}, expected a person's index 0, 1, ...")
        if p.get("image") is not None and not isinstance(p["image"], str):
            raise ClposeError(f"{found.path}: people[{j}] image is {short(p['image'])}, expected a file name")
        image_id = p.get("image_id")
        if image_id is not None and (isinstance(image_id, bool) or not isinstance(image_id, int | str)):
            raise ClposeError(f"{found.path}: people[{j}] image_id is {short(image_id)}, expected an integer or text")
    if people and has[0]:
        found.indices = np.array([p["index"] for p in people], dtype=np.int64)
    found.images = [p.get("image") for p in people]
    found.image_ids = [p.get("image_id") for p in people]


def read_coco_results(path: str | Path, num_keypoints: int) -> list[dict[str, Any]]:
    """A COCO keypoint results file (cocodataset.org/#format-results): a non-empty list of
    {image_id: int, category_id: 1, keypoints: [x1, y1, v1, ..., xK, yK, vK], score: float}, checked entry by
    entry so that pycocotools never meets a value it would crash on or mis-score.

    Numbers stay numbers: NaN and infinities (as Python's json reads them) are kept for the scorer's finite
    check, and a null inside keypoints becomes NaN (clpose writes strict JSON, where a non-finite number is null).
    Extra keys are kept; an integral float image_id (397133.0) becomes an int.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise ClposeError(
            f"{path}: expected COCO results: a list of {{image_id, category_id, keypoints, score}}, "
            f"got a {type(data).__name__}"
        )
    if not data:
        raise ClposeError(f"{path}: the results list is empty: there are no predictions to score")
    results = [_coco_result(entry, i, path, num_keypoints) for i, entry in enumerate(data)]
    _check_result_kind(results, path)
    return results


def _coco_result(entry: Any, i: int, path: Path, k: int) -> dict[str, Any]:
    where = f"{path}: entry {i}"
    if not isinstance(entry, dict):
        raise ClposeError(f"{where} is {short(entry)}, expected an object {{image_id, category_id, keypoints, score}}")
    for key in COCO_RESULT_KEYS:
        if key not in entry:
            raise ClposeError(
                f"{where} has no {key} (a keypoint result is {{image_id, category_id, keypoints, score}})"
            )
    image_id = entry["image_id"]
    if isinstance(image_id, float) and image_id.is_integer():
        image_id = int(image_id)
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise ClposeError(f"{where} image_id is {short(image_id)}, expected an integer (the COCO image id)")
    category = entry["category_id"]
    if not is_number(category) or category != COCO_PERSON:
        raise ClposeError(
            f"{where} category_id is {short(category)}, expected {COCO_PERSON} (person): keypoint results are of people"
        )
    if not is_number(entry["score"]):
        raise ClposeError(f"{where} score is {short(entry['score'])}, expected a number")
    values = entry["keypoints"]
    if not isinstance(values, list):
        raise ClposeError(f"{where} keypoints is {short(values)}, expected a list of {3 * k} numbers [x1, y1, v1, ...]")
    if len(values) != 3 * k:
        raise ClposeError(f"{where} keypoints: {len(values)} keypoint values, expected {k} x 3 = {3 * k}")
    kinds = set(map(type, values))  # one pass over the types: results files hold millions of numbers
    if not kinds <= {int, float, type(None)}:
        j = next(j for j, v in enumerate(values) if v is not None and not is_number(v))
        raise ClposeError(f"{where} keypoints[{j}] is {short(values[j])}, expected a number")
    if type(None) in kinds:
        values = [math.nan if v is None else v for v in values]
    return {**entry, "image_id": image_id, "category_id": COCO_PERSON, "keypoints": values}


def _check_result_kind(results: list[dict[str, Any]], path: Path) -> None:
    """pycocotools' loadRes picks the kind of results from the first entry's keys: a non-empty bbox makes it
    take every result's area from its bbox (so each needs one), a caption or a segmentation makes it read
    something else than keypoints."""
    first = results[0]
    if "bbox" in first and first["bbox"] != []:
        for i, r in enumerate(results):
            box = r.get("bbox")
            if not isinstance(box, list) or len(box) != 4 or not all(is_number(v) for v in box):
                raise ClposeError(
                    f"{path}: entry {i} bbox is {short(box)}, expected [x, y, w, h] numbers (entry 0 has a bbox, "
                    "so pycocotools takes every result's area from its bbox)"
                )
        return
    for key in ("caption", "segmentation"):
        if key in first:
            raise ClposeError(f"{path}: entry 0 has a {key}: pycocotools would read the file as {key} results")
