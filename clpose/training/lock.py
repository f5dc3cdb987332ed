"""One training per run folder at a time: an OS lock (fcntl.flock; msvcrt on Windows) on the folder's .clpose-run.lock,
held for the whole run. The OS releases it when the process ends, however it ends, so no stale lock ever blocks.
Under torchrun only rank 0 writes, so only rank 0 locks."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from clpose.console import warn
from clpose.errors import ClposeError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:  # every platform but Windows
    msvcrt = None  # type: ignore[assignment]

LOCK = ".clpose-run.lock"  # a name of clpose's own: a user's `.lock` in --out is no business of a training
_WINDOWS_LOCK_BYTE = 4096  # msvcrt locks a byte range: one past the pid text, so the loser can read the pid


class RunLock:
    """An exclusive lock on a run folder while a training writes it. `made`: the caller created the folder for this
    run, so release removes it again if the run wrote nothing (a refused or failed start leaves no empty folder)."""

    def __init__(self, folder: Path, made: bool = False) -> None:
        self.folder, self.path, self.made = folder, folder / LOCK, made
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if not self.folder.exists():
            self.made = True
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise ClposeError(f"{self.path} is not a lock file of clpose's: move it, or train into another --out")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            if not _try_lock(fd, self.folder):
                holder = _read_holder(fd)
                os.close(fd)
                raise ClposeError(
                    f"{self.folder} is in use by another training ({holder}): wait for it to end, or choose another "
                    "--out"
                )
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder before us deleted the file as it finished: lock the one that is there now
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt's lock moved the position past the text
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is not None:  # delete while still locked: a waiter that opened this file sees it gone and retries
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(fd)
        else:  # Windows deletes no open file
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self.made:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only where empty: a start that was refused or failed wrote nothing


def _try_lock(fd: int, folder: Path) -> bool:
    """Take the OS lock on `fd` without waiting; False where another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif msvcrt is not None:
            os.lseek(fd, _WINDOWS_LOCK_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            warn(f"cannot lock {folder}: this platform has neither fcntl nor msvcrt; two trainings in it would mix")
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
            return False
        # a file system without locks (some network mounts): running unprotected beats refusing to train
        warn(f"cannot lock {folder} ({e.strerror}): two trainings in it at once would not be stopped")
        return True


def _read_holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").strip()
    return text or "pid not yet written"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)
