"""Atomic file writes: a reader never sees a half-written output, an interrupted writer leaves none.

Every output is first written to a temporary file beside its target, named `.STEM.PID-HOST.RANDOM.tmpSUFFIX`
(the writer's process id and a tag of its host), and moved into place with os.replace once complete. `Staged`
does this for several outputs that belong together (an annotated video and its JSON): all of them are moved into
place, or none. A run killed by SIGKILL cannot clean up, so each writer first removes the temporary files of the same
target whose writing process is gone; SIGTERM is turned into KeyboardInterrupt (clpose.signals) so that the
normal cleanup runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from clpose.errors import ClposeError

_UMASK = os.umask(0o022)  # read the process umask once (os.umask can only read it by setting it)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp's temporary files are 0600

# A process id means nothing on another machine sharing the folder (NFS) or in another container: a temporary file
# is only judged stale by a writer on the host that made it.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_OWNER = re.compile(r"(\d+)-([0-9a-f]{6})\.[a-z0-9_]+")  # PID-HOST.RANDOM (mkstemp's random part has no dot)


def prepare_target(path: str | Path) -> Path:
    """The output path with its folder made; a folder in its place is refused before anything is written (the
    final os.replace would fail only after all the work, naming the temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def free_space(folder: str | Path) -> str:
    """E.g. "812 MiB free on that disk", for messages about a write that failed."""
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free on that disk"
    except OSError:
        return "free space unknown"


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows: never judge a file stale there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    return True


def _temporaries(folder: Path) -> list[str]:
    """The names in `folder` that may be temporary files."""
    try:
        return [n for n in os.listdir(folder) if n.startswith(".") and ".tmp" in n]
    except OSError:
        return []


def _remove_stale(target: Path, listed: dict[str, list[str]]) -> None:
    """Remove the temporary files of `target` left by a writer of this host that is no longer running (SIGKILL,
    a power cut of a container); a live writer's, another target's and another host's are never touched. `listed`
    holds the folders already listed by this writer (folder -> names), so that one that stages thousands of images
    into a folder lists it once, not once per image."""
    folder = os.path.abspath(target.parent)
    if folder not in listed:
        listed[folder] = _temporaries(target.parent)
    names = listed[folder]
    prefix, suffix = f".{_temp_stem(target)}.", f".tmp{target.suffix}"
    for name in [n for n in names if n.startswith(prefix) and n.endswith(suffix)]:
        owner = _OWNER.fullmatch(name[len(prefix) : len(name) - len(suffix)])
        if owner is None or owner[2] != _HOST or _pid_alive(int(owner[1])):
            continue
        with contextlib.suppress(OSError):  # already gone, or not ours to remove: it stays, nothing fails
            os.unlink(target.parent / name)
        names.remove(name)


_NAME_MAX = 255  # bytes in one file name on every file system clpose meets (ext4, XFS, APFS, NTFS in UTF-16 units)
_TEMP_EXTRA = len(".") * 3 + 7 + len("-") + 6 + 8 + len(".tmp")  # dots, a pid, -HOST, mkstemp's 8, ".tmp"


def _temp_stem(target: Path) -> str:
    """The target's stem as its temporary file's name carries it: whole where the temporary name fits in a file name
    (255 bytes), else cut and followed by a hash of the whole stem, so that a valid 250-byte output name can still be
    written (its temporary name would be 280 bytes) and a stale temporary is still found by its target."""
    # names as the file system stores them: bytes that are not UTF-8 (`o\xfe.png`) come back as surrogates, which
    # OpenCV cannot take (cv2.imwrite crashed the process): such a stem is carried by its hash alone
    stem, room = os.fsencode(target.stem), _NAME_MAX - _TEMP_EXTRA - len(os.fsencode(target.suffix))
    try:
        target.stem.encode("utf-8")
    except UnicodeEncodeError:
        return f"~{hashlib.sha1(stem).hexdigest()[:8]}"
    if len(stem) <= room:
        return target.stem
    cut = stem[: max(0, room - 9)].decode("utf-8", errors="ignore")  # whole UTF-8 characters only
    return f"{cut}~{hashlib.sha1(stem).hexdigest()[:8]}"


def _naming_the_target(error: OSError, temporaries: dict[Path, Path]) -> OSError:
    """`error` naming the user's output path instead of a random temporary file (the CLI prints e.filename)."""
    by_temp = {str(tmp): target for target, tmp in temporaries.items()}
    named = error.filename is not None and str(error.filename) in by_temp
    if named or (error.filename is None and len(temporaries) == 1):
        target = by_temp[str(error.filename)] if named else next(iter(temporaries))
        error.filename, error.filename2 = str(target), None
    return error


class Staged:
    """Outputs written to temporary files beside their targets and moved into place together by `commit`.

    `path(target)` reserves a temporary file (keeping the target's suffix, for writers that choose a format by
    extension); `commit` moves every one into place, `discard` removes them all. When a move fails midway, the
    targets already moved are put back as they were (all or nothing).
    """

    def __init__(self) -> None:
        self.temporaries: dict[Path, Path] = {}  # target -> its temporary file
        self._listed: dict[str, list[str]] = {}  # folders listed for stale temporaries (see _remove_stale)

    def path(self, target: str | Path) -> Path:
        target = prepare_target(target)
        if target in self.temporaries:  # written again (a retry): the same temporary file
            return self.temporaries[target]
        _remove_stale(target, self._listed)
        tmp = None
        try:
            prefix = f".{_temp_stem(target)}.{os.getpid()}-{_HOST}."
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{target.suffix}", dir=target.parent)
            os.close(fd)
            os.chmod(tmp, _FILE_MODE)
        except OSError as e:  # a read-only folder or a full disk: the message names the target, not a random name
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            e.filename, e.filename2 = str(target), None
            raise
        self.temporaries[target] = Path(tmp)
        return Path(tmp)

    def write_text(self, target: str | Path, text: str) -> None:
        """Write `text` (UTF-8) to the temporary file of `target`, synced to disk."""
        tmp = self.path(target)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a full disk says so at the write or the sync, naming nothing or the temporary file
            _naming_the_target(e, {Path(target): tmp})
            raise

    def commit(self) -> None:
        """Move every temporary file into place; on any failure (or Ctrl-C) the targets are left as they were."""
        temporaries = dict(self.temporaries)
        done: list[tuple[Path, Path | None, bool]] = []  # target, a link to its previous file, whether it existed
        try:
            for target, tmp in temporaries.items():
                existed = target.exists()
                backup = _link_backup(target) if existed and len(temporaries) > 1 else None
                try:
                    os.replace(tmp, target)
                except BaseException:
                    if backup is not None:
                        with contextlib.suppress(OSError):
                            os.unlink(backup)
                    raise
                done.append((target, backup, existed))
        except BaseException as e:
            for target, backup, existed in reversed(done):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, target)
                    elif not existed:
                        os.unlink(target)
            self.discard()
            if isinstance(e, OSError):
                _naming_the_target(e, temporaries)
            raise
        for _, backup, _ in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)
        self.temporaries = {}

    def discard(self) -> None:
        """Remove every temporary file; the targets are untouched."""
        for tmp in self.temporaries.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.temporaries = {}


def _link_backup(target: Path) -> Path | None:
    """A hard link to `target`'s current file, to put it back if a later move of the same commit fails (None where
    the file system has no hard links: that target cannot be restored)."""
    name = f".{target.stem}.{os.getpid()}-{_HOST}.{os.urandom(4).hex()}.tmp{target.suffix}"
    try:
        os.link(target, target.parent / name)
    except OSError:
        return None
    return target.parent / name


@contextlib.contextmanager
def staged() -> Iterator[Staged]:
    """A `Staged` committed when the block succeeds and discarded when it raises (also on Ctrl-C); an OSError of
    the block that names a temporary file (or nothing, with one output) names the output path instead."""
    stage = Staged()
    try:
        yield stage
    except BaseException as e:
        if isinstance(e, OSError):
            _naming_the_target(e, stage.temporaries)
        stage.discard()
        raise
    stage.commit()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success it replaces `path` in one `os.replace`.

    On any exception the temporary file is removed and `path` is left as it was.
    """
    with staged() as stage, open(stage.path(path), mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write with any library (cv2, torch.save); it replaces `path` on success.

    The temporary name keeps the file's suffix so writers that choose a format by extension still work.
    """
    with staged() as stage:
        yield stage.path(path)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON: a NaN or an infinity is written as null (Python would write a NaN token that other readers
    reject; a metric can legitimately be undefined, e.g. a joint never labelled in a split)."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except (ValueError, TypeError):  # a NaN or infinity, or a NumPy scalar: one pass to clean (not on clean data)
        text = json.dumps(finite_json(obj), indent=indent, allow_nan=False)
    return text + "\n"


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """`json_text(obj)` written atomically to `path`."""
    write_text(path, json_text(obj, indent))


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


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """One process at a time makes `path` (a download, an exported graph): the others wait, then find it there. The
    lock file lives in a `.clpose-locks` folder beside it, not among the files it guards; neither is followed
    through a symbolic link (a link planted there would make the lock write wherever it points)."""
    locks = path.parent / ".clpose-locks"
    if locks.is_symlink():
        raise ClposeError(f"{locks} is a symbolic link: clpose writes its lock files only in a folder of its own")
    locks.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename still keeps the file whole; two may make it at once
        yield
        return
    lock = locks / f"{path.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError:
        if lock.is_symlink():
            raise ClposeError(
                f"{lock} is a symbolic link: clpose writes its lock files only in a folder of its own"
            ) from None
        raise
    with os.fdopen(fd, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def opencv_path(path: str | Path) -> str:
    """`path` as OpenCV takes it. A name that is not UTF-8 (bytes the file system keeps as they are, Python shows as
    surrogates) crashes OpenCV's video reader and writer (a segmentation fault, the run's outputs lost): one line
    instead. Images never need this: they are read and written through Python (`write_image`, decode_image)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ClposeError(f"{text}: a path that is not UTF-8, which OpenCV cannot open; rename it") from None
    return text


def write_image(path: str | Path, image: np.ndarray, params: tuple[int, ...] = ()) -> bool:
    """Encode `image` by `path`'s extension (OpenCV) and write the bytes through Python (any name the file system
    takes); False where OpenCV cannot encode to that extension."""
    import cv2

    try:
        ok, data = cv2.imencode(Path(path).suffix or ".png", image, list(params))
    except cv2.error:  # an extension OpenCV has no encoder for
        return False
    if not ok:
        return False
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return True
