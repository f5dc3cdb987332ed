"""The names of the prediction-file formats `clpose eval --save-predictions` writes (clpose.evaluation.submission
writes them); a module of its own so that the command line can name them without importing the writers."""

from __future__ import annotations

import typing
from typing import Literal

SaveFormat = Literal["auto", "coco", "mpii-submission", "mpii-preds", "lsp-joints", "npy", "clpose"]
FORMATS: tuple[str, ...] = typing.get_args(SaveFormat)
