"""The one output-path guard: no command writes over one of its inputs, over another of its outputs, or over a run's
checkpoints.

Every command that writes files calls `check_outputs` with what it will write and what it reads, before any work, so
that `eval --save-predictions data/valid.json`, `export --out runs/X/best.pt` or `infer photo.jpg --out photo.jpg`
are one-line errors instead of a lost input. Paths are compared as the file system sees them: resolved (symlinks,
`..`) and, where both exist, by inode (hard links, case-insensitive file systems).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from clpose.errors import ClposeError

RUN_CHECKPOINTS = ("best.pt", "last.pt")
_RUN_MARKERS = ("metrics.jsonl", "recipe.yaml")  # what `clpose train` writes beside its checkpoints

PathsLike = Path | str | Iterable[Path | str] | None


def _paths(value: PathsLike) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:  # does not exist (yet): the resolved path decides
        return None
    return st.st_dev, st.st_ino


def run_checkpoint(path: Path) -> bool:
    """Whether `path` is best.pt or last.pt of a run folder (one that holds metrics.jsonl or recipe.yaml)."""
    return path.name in RUN_CHECKPOINTS and any((path.parent / marker).is_file() for marker in _RUN_MARKERS)


def check_outputs(outputs: Mapping[str, PathsLike], inputs: Mapping[str, PathsLike] | None = None) -> None:
    """Refuse, as a ClposeError naming both, an output that is one of the `inputs`, that another output also names,
    or that is a checkpoint of a training run (train writes those; nothing else may).

    Args:
        outputs: label (the option, e.g. "--save-predictions") -> the file(s) the command will write.
        inputs: label (e.g. "the validation records") -> the file(s) it reads.
    """
    written = [(label, p) for label, value in outputs.items() for p in _paths(value)]
    read = [(label, p) for label, value in (inputs or {}).items() for p in _paths(value)]
    seen: dict[Path, tuple[str, Path]] = {}
    for label, path in written:
        if run_checkpoint(path):
            raise ClposeError(
                f"{label} {path} is a checkpoint of the training run in {path.parent}: only `clpose train` writes "
                "it; choose another file name"
            )
        key = _key(path)
        if key in seen:
            raise ClposeError(f"{label} {path} names the same file as {seen[key][0]}: give each output its own file")
        seen[key] = (label, path)
    by_path = {_key(path): (label, path) for label, path in read}
    by_inode = {inode: (label, path) for label, path in read if (inode := _inode(path)) is not None}
    for label, path in written:
        hit = by_path.get(_key(path))
        if hit is None and (inode := _inode(path)) is not None:  # hard links, case-insensitive file systems
            hit = by_inode.get(inode)
        if hit is not None:
            what = hit[0] if str(hit[1]) == str(path) else f"{hit[0]} {hit[1]}"
            raise ClposeError(
                f"{label} {path} names the same file as {what}, an input of this command: writing it would replace "
                "the input; choose another file name"
            )
