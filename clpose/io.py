"""Atomic file writes: a reader never sees a half-written output, an interrupted writer leaves none."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

_UMASK = os.umask(0o022)  # read the process umask once (os.umask can only read it by setting it)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp's temporary files are 0600


def _target(path: str | Path) -> Path:
    """The output path with its folder made; a folder in its place is refused before anything is written (the
    final os.replace would fail only after all the work, naming the temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success it replaces `path` in one `os.replace`.

    On any exception the temporary file is removed and `path` is left as it was.
    """
    path = _target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _FILE_MODE)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write with any library (cv2, torch.save); it replaces `path` on success.

    The temporary name keeps the file's suffix so writers that choose a format by extension still work.
    """
    path = _target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Strict JSON: a NaN or an infinity is written as null (Python would write a NaN token that other readers
    reject; a metric can legitimately be undefined, e.g. a joint never labelled in a split)."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except (ValueError, TypeError):  # a NaN or infinity, or a NumPy scalar: one pass to clean (not on clean data)
        text = json.dumps(finite_json(obj), indent=indent, allow_nan=False)
    write_text(path, text + "\n")


def finite_json(value: Any) -> Any:
    """`value` with non-finite floats as None and NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [finite_json(v) for v in value]
    return value
