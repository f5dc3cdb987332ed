"""Reading the arrays and JSON of evaluation files, checked before a number reaches a scorer: an array must hold
numbers (text, cells, structs and booleans are refused, not cast), a value must be a number, and an error names the
file and what it holds instead. Shared by the ground-truth and the prediction-file readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clpose.errors import ClposeError, first_line

# what a non-numeric array holds, by numpy dtype kind, for the error message
_KINDS = {
    "O": "cells or objects (a MATLAB cell array?)",
    "V": "records (a structured dtype or a MATLAB struct)",
    "U": "text",
    "S": "text",
    "b": "true/false values",
    "c": "complex numbers",
    "M": "dates",
    "m": "time spans",
}


def load_mat(path: Path) -> dict:
    import scipy.io  # here, not at import: the COCO scorer (and the Predictor's rescoring) shares this module

    if not path.is_file():
        raise ClposeError(f"{path} does not exist")
    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except (ValueError, OSError, NotImplementedError, TypeError, scipy.io.matlab.MatReadError) as e:
        hint = "" if path.suffix.lower() == ".mat" else "; prediction files are .mat, .h5/.hdf5, .npy or .json"
        raise ClposeError(f"{path} could not be read as a MATLAB file ({first_line(e)}){hint}") from None


def shape_text(arr: np.ndarray) -> str:
    return "x".join(map(str, arr.shape)) or "scalar"


def numeric_array(arr: Any, path: Path, what: str) -> np.ndarray:
    """`arr` as float64, or one line saying what it holds instead of numbers.

    The cast alone would be wrong both ways: text such as "1.5" and a one-field structured array cast silently
    (into numbers nobody predicted), while a cell array or a multi-field struct raises a traceback.
    """
    if not isinstance(arr, np.ndarray):  # e.g. a MATLAB sparse matrix
        raise ClposeError(f"{path}: {what} is a {type(arr).__name__}, expected a numeric array")
    if arr.dtype.kind not in "iuf":
        held = _KINDS.get(arr.dtype.kind, "values that are not numbers")
        raise ClposeError(f"{path}: {what} holds {held} ({arr.dtype}), expected numbers")
    return arr.astype(np.float64)


def one_person(arr: np.ndarray, ndim: int) -> np.ndarray:
    """`arr` with its last (people) axis restored where it is missing: MATLAB drops trailing singleton
    dimensions, so one person's 3 x 14 x 1 joints are saved as 3 x 14."""
    return arr[..., None] if arr.ndim == ndim - 1 else arr


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, and UnicodeDecodeError for a binary file
        raise ClposeError(f"predictions {path} are not a readable JSON file ({first_line(e)})") from None


def is_number(value: Any) -> bool:
    """A JSON number: int or float (NaN and infinities included, as Python's json reads them), never a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
