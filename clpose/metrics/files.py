"""Reading ground truth and prediction files for PCK / PCKh scoring, in the layouts the literature publishes.

Coordinate conventions: MATLAB files (.mat) and HDF5 prediction files (.h5, `preds`) hold 1-based pixels, as the
datasets' own files and the published prediction files do; numpy files (.npy) and clpose records hold 0-based
pixels; clpose's predictions JSON says which it uses ("coordinates": "0-based" or "1-based"). Predictions are
shifted onto the ground truth's convention before scoring (PCK is unaffected by a common shift, but mixing
conventions moves every joint by one pixel).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from clpose.data.records import load_records
from clpose.errors import ClposeError, first_line

PREDICTIONS_FORMAT = "clpose-predictions"
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class GroundTruth:
    """N people: keypoints (N, K, 2), labelled (N, K), head boxes (N, 4) or None, one_based convention."""

    keypoints: np.ndarray
    labelled: np.ndarray
    head_boxes: np.ndarray | None
    one_based: bool
    source: str


def _mat(path: Path) -> dict:
    if not path.is_file():
        raise ClposeError(f"{path} does not exist")
    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except (ValueError, OSError, NotImplementedError, TypeError, scipy.io.matlab.MatReadError) as e:
        raise ClposeError(f"{path} could not be read as a MATLAB file ({first_line(e)})") from None


def _from_records(path: Path, k: int) -> GroundTruth:
    records = load_records(path)
    if records.keypoints.shape[1] != k:
        raise ClposeError(f"{path} holds {records.keypoints.shape[1]} keypoints per person, expected {k}")
    boxes = [e.get("head_box") for e in records.extras]
    head = np.array(boxes, dtype=np.float64) if all(b is not None for b in boxes) else None
    return GroundTruth(records.keypoints[..., :2], records.keypoints[..., 2] > 0, head, False, str(path))


def read_lsp_ground_truth(path: str | Path) -> GroundTruth:
    """LSP joints.mat (3 x 14 x N, every joint labelled, 1-based) or clpose test records."""
    path = Path(path)
    if path.suffix == ".json":
        return _from_records(path, 14)
    arr = _mat(path).get("joints")
    if arr is None or arr.ndim != 3 or arr.shape[:2] != (3, 14):
        got = "no 'joints' array" if arr is None else f"joints {'x'.join(map(str, arr.shape))}"
        raise ClposeError(f"{path}: expected LSP joints.mat with joints 3x14xN, got {got}")
    kpts = arr[:2].transpose(2, 1, 0).astype(np.float64)
    return GroundTruth(kpts, np.ones(kpts.shape[:2], dtype=bool), None, True, str(path))


def read_mpii_ground_truth(path: str | Path) -> GroundTruth:
    """gt_valid.mat (pos_gt_src 16x2xN, jnt_missing 16xN, headboxes_src 2x2xN; 1-based) or valid records."""
    path = Path(path)
    if path.suffix == ".json":
        gt = _from_records(path, 16)
        if gt.head_boxes is None:
            raise ClposeError(f"{path}: PCKh needs extras.head_box for every person (prepare MPII with gt_valid.mat)")
        return gt
    mat = _mat(path)
    for key, shape in (("pos_gt_src", (16, 2)), ("jnt_missing", (16,)), ("headboxes_src", (2, 2))):
        if key not in mat:
            raise ClposeError(f"{path} has no {key} (expected gt_valid.mat: pos_gt_src, jnt_missing, headboxes_src)")
        if mat[key].shape[: len(shape)] != shape:
            raise ClposeError(
                f"{path}: {key} has shape {'x'.join(map(str, mat[key].shape))}, expected {'x'.join(map(str, shape))}xN"
            )
    pos = mat["pos_gt_src"].transpose(2, 0, 1).astype(np.float64)
    missing = mat["jnt_missing"].T > 0
    boxes = mat["headboxes_src"].transpose(2, 0, 1).reshape(-1, 4).astype(np.float64)
    if not (len(pos) == len(missing) == len(boxes)):
        raise ClposeError(f"{path}: pos_gt_src, jnt_missing and headboxes_src disagree on the number of people")
    return GroundTruth(pos, ~missing, boxes, True, str(path))


def read_predictions(path: str | Path, k: int) -> tuple[np.ndarray, bool]:
    """Predicted keypoints (M, K, 2) and whether they are 1-based.

    Accepted: .mat with `preds` (M x K x 2), `pos_pred_src` (K x 2 x M), or one array in the layout of LSP's
    joints.mat (2 or 3 x K x M), 1-based; .h5 / .hdf5 with a dataset `preds` of M x K x 2 or 2 x K x M (M x K x 3
    or 3 x K x M: the score is dropped), 1-based like .mat (needs h5py: `pip install 'clpose[h5]'`); .npy of
    shape (M, K, 2) or (M, K, 3), 0-based; clpose predictions JSON, which states its convention.
    """
    path = Path(path)
    if not path.is_file():
        raise ClposeError(f"predictions {path} do not exist")
    if path.suffix.lower() in H5_SUFFIXES:
        return _h5_predictions(path, k)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)  # never unpickle a file given on the command line
        except (ValueError, OSError, EOFError) as e:
            raise ClposeError(f"{path} could not be read as a numeric .npy array ({first_line(e)})") from None
        if arr.ndim != 3 or arr.shape[1:2] != (k,) or arr.shape[2] not in (2, 3):
            raise ClposeError(f"{path}: expected an array (M, {k}, 2), got {arr.shape}")
        return arr[..., :2].astype(np.float64), False
    if path.suffix == ".json":
        return _json_predictions(path, k)
    mat = _mat(path)
    if "preds" in mat:
        arr = mat["preds"]
        if arr.ndim != 3 or arr.shape[1:] not in ((k, 2), (k, 3)):
            raise ClposeError(f"{path}: preds has shape {'x'.join(map(str, arr.shape))}, expected Mx{k}x2")
        return arr[..., :2].astype(np.float64), True
    if "pos_pred_src" in mat:
        arr = mat["pos_pred_src"]
        if arr.ndim != 3 or arr.shape[:2] != (k, 2):
            raise ClposeError(f"{path}: pos_pred_src has shape {'x'.join(map(str, arr.shape))}, expected {k}x2xM")
        return arr.transpose(2, 0, 1).astype(np.float64), True
    arrays = [v for v in mat.values() if isinstance(v, np.ndarray) and v.ndim == 3]
    if len(arrays) == 1 and arrays[0].shape[:2] in ((2, k), (3, k)):
        return arrays[0][:2].transpose(2, 1, 0).astype(np.float64), True
    found = ", ".join(f"{n} {'x'.join(map(str, v.shape))}" for n, v in mat.items() if hasattr(v, "shape"))
    raise ClposeError(
        f"{path}: expected preds (Mx{k}x2), pos_pred_src ({k}x2xM) or one 2x{k}xM / 3x{k}xM array; "
        f"found {found or 'nothing'}"
    )


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
    shape = "x".join(map(str, arr.shape))
    expected = f"expected Nx{k}x2 or 2x{k}xN (Nx{k}x3 / 3x{k}xN with scores)"
    if arr.ndim != 3 or arr.shape[1] != k or not ({arr.shape[0], arr.shape[2]} & {2, 3}):
        raise ClposeError(f"{path}: preds has shape {shape}, {expected}")
    if arr.shape[0] in (2, 3) and arr.shape[2] in (2, 3):
        raise ClposeError(f"{path}: preds has shape {shape}, ambiguous with 2 or 3 people: {expected}")
    if arr.shape[0] in (2, 3):
        arr = arr.transpose(2, 1, 0)
    try:
        return arr[..., :2].astype(np.float64), True
    except (TypeError, ValueError):
        raise ClposeError(f"{path}: preds holds {arr.dtype}, expected numbers") from None


def _json_predictions(path: Path, k: int) -> tuple[np.ndarray, bool]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ClposeError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != PREDICTIONS_FORMAT:
        raise ClposeError(
            f'{path} is not a clpose predictions file ("format": "{PREDICTIONS_FORMAT}"); '
            "for COCO results use --metric oks"
        )
    if data.get("coordinates") not in ("0-based", "1-based"):
        raise ClposeError(f'{path}: "coordinates" must be "0-based" or "1-based"')
    kpts = np.array([p["keypoints"] for p in data.get("people", [])], dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[1] != k or kpts.shape[2] not in (2, 3):
        raise ClposeError(f"{path}: every person needs {k} keypoints [x, y(, score)], got shape {kpts.shape}")
    return kpts[..., :2], data["coordinates"] == "1-based"


def align(pred: np.ndarray, pred_one_based: bool, gt: GroundTruth) -> np.ndarray:
    """Predictions moved onto the ground truth's pixel convention."""
    return pred + (float(gt.one_based) - float(pred_one_based))
