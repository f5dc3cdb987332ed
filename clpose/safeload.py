"""The one way clpose reads a PyTorch file (checkpoints, pretrained and detector weights): weights only."""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from clpose.errors import ClposeError, first_line


def load_tensors(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True): tensors, numbers, strings and containers, never code.

    Every failure is a ClposeError naming `what` and the file: missing, empty (an interrupted copy), a pickle
    with other objects (refused unread: unpickling it could run code), or not a PyTorch file at all.
    """
    return _load(Path(path), what, map_location)[0]


def read_tensors(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> tuple[Any, str]:
    """`load_tensors`, and the SHA-256 of the very bytes that were loaded: the file is read once, so a file replaced
    meanwhile (a training writing a new best.pt) cannot give weights of one version and the hash of another."""
    value, data = _load(Path(path), what, map_location)
    return value, hashlib.sha256(data).hexdigest()


def _load(path: Path, what: str, map_location: str | torch.device) -> tuple[Any, bytes]:
    if not path.is_file():
        raise ClposeError(f"{what} {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise ClposeError(f"{what} {path} is empty (0 bytes): an interrupted copy or download?")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of files it then refuses
            value = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or hostile files
        head = data[:2]
        if isinstance(e, pickle.UnpicklingError) and (head == b"PK" or head[:1] == b"\x80"):  # zip or pickle
            raise ClposeError(
                f"{what} {path} holds objects the weights-only loader refuses (code, custom classes or an unusual "
                "pickle): not loaded, since unpickling it could run code"
            ) from None
        raise ClposeError(
            f"{what} {path} cannot be read: it is corrupt or not a PyTorch file ({type(e).__name__}: {first_line(e)})"
        ) from None
    return value, data


def check_finite_weights(weights: dict[str, Any], source: str) -> None:
    """A ClposeError naming the first floating-point tensor of a state dict that holds NaN or inf (a diverged or
    damaged model would otherwise be scored, exported or run as if it were fine)."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise ClposeError(
                f"{source}: its weights are not finite ({name} holds {count} NaN or inf values of {tensor.numel()}): "
                "a diverged run? use an earlier checkpoint"
            )
