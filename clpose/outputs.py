"""The one output-path guard: no command writes over one of its inputs, over another of its outputs, or over a run's
checkpoints.

Every command that writes files calls `check_outputs` with what it will write and what it reads, before any work, so
that `eval --save-predictions data/valid.json`, `export --out runs/X/best.pt` or `infer photo.jpg --out photo.jpg`
are one-line errors instead of a lost input. Paths are compared as the file system sees them: resolved (symlinks,
`..`) and, where both exist, by inode (hard links, case-insensitive file systems).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from clpose.errors import ClposeError
from clpose.io import write_json

RUN_CHECKPOINTS = ("best.pt", "last.pt")
_RUN_MARKERS = ("metrics.jsonl", "run.json")  # what `clpose train` writes beside its checkpoints

PathsLike = Path | str | Iterable[Path | str] | None


def _paths(value: PathsLike) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def _key(path: Path) -> Path:
    try:
        return Path(os.path.abspath(path)).resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop of symbolic links
        raise ClposeError(f"{path} is a loop of symbolic links (it names no file)") from None


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:  # does not exist (yet): the resolved path decides
        return None
    return st.st_dev, st.st_ino


def run_checkpoint(path: Path) -> bool:
    """Whether `path` is best.pt or last.pt of a run folder (one that holds metrics.jsonl or run.json)."""
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
    _check_writable(written)
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


def _check_writable(written: list[tuple[str, Path]]) -> None:
    """Each output's folder (or the nearest one that exists, where the rest will be made) can be written: tried with
    a temporary file, before any work (os.access says yes to root on a read-only file system). A bench or an eval
    that ran for an hour must not end in "cannot write --json"."""
    tried: set[Path] = set()
    for label, path in written:
        folder = Path(os.path.abspath(path)).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder in tried or not folder.is_dir():  # a file in the way is said by the command, naming it
            continue
        tried.add(folder)
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise ClposeError(f"{label} {path}: {folder} cannot be written ({e.strerror or e})") from None


# -- folders a command fills: it deletes only what it wrote --------------------------------------------------------


class OwnedFolder:
    """A folder that a command fills with outputs of known names (the demo's data/, train/, eval.json, ...), with a
    manifest of its own (`.clpose-COMMAND.json`) listing what it wrote there.

    The command may reuse or replace only the entries its manifest lists: a folder that holds one of its names
    without a manifest (the user's own files, another command's) is refused before anything is written, and
    `clear` removes the listed entries and nothing else. So `clpose demo --out runs --fresh` cannot delete the
    other runs in runs/, and `--out` onto a folder of the user's is a one-line error, not a loss.
    """

    def __init__(
        self,
        folder: Path,
        command: str,
        names: Iterable[str],
        legacy: Callable[[Path], bool] | None = None,
        option: str = "--out",
    ):
        """`names`: the entries the command writes directly in `folder`; `legacy`: recognises a folder written by an
        older clpose, before manifests (it is then adopted); `option`: what the user named the folder with."""
        self.folder, self.command, self.names, self.option = Path(folder), command, tuple(names), option
        self.manifest = self.folder / f".clpose-{re.sub(r'[^a-z0-9]+', '-', command.lower()).strip('-')}.json"
        self._legacy = legacy

    def written(self) -> list[str]:
        """The entries the manifest says the command wrote (empty without a manifest)."""
        try:
            listed = json.loads(self.manifest.read_text(encoding="utf-8")).get("wrote", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [name for name in listed if name in self.names]

    def claim(self) -> None:
        """Make the folder the command's to fill: refuse (ClposeError) when it holds an entry of the command's names
        that the command did not write; otherwise create it and its manifest."""
        ours = self.check()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record(sorted(ours))

    def check(self) -> set[str]:
        """`claim`'s refusal alone, writing nothing; returns the entries that are the command's."""
        if self.folder.exists() and not self.folder.is_dir():
            raise ClposeError(f"{self.option} {self.folder} is a file, not a folder")
        ours = set(self.written())
        if not ours and not self.manifest.is_file() and self._legacy is not None and self._legacy(self.folder):
            ours = set(self.names)  # written by an older clpose: adopt it
        foreign = [n for n in self.names if n not in ours and (self.folder / n).exists()]
        if foreign:
            shown = ", ".join(foreign[:4]) + (" ..." if len(foreign) > 4 else "")
            raise ClposeError(
                f"{self.option} {self.folder} holds {shown}, which clpose {self.command} did not write there (no "
                f"{self.manifest.name} lists it): it would be reused or replaced; choose a new or empty folder"
            )
        return ours

    def record(self, names: Iterable[str]) -> None:
        """Add `names` to the manifest (call it before writing them, so a kill mid-write leaves them listed)."""
        wrote = sorted(set(self.written()) | set(names))
        write_json(self.manifest, {"command": f"clpose {self.command}", "wrote": wrote})

    def clear(self) -> list[str]:
        """Remove every entry the manifest lists (and only those); returns their names."""
        removed = []
        for name in self.written():
            path = self.folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        write_json(self.manifest, {"command": f"clpose {self.command}", "wrote": []})
        return removed
