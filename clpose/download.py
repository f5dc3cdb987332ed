"""Downloading one file over HTTP(S): into a temporary file beside its target, renamed into place only once complete
and its hash fits; within a deadline and at no less than a minimum rate, so a stalled or trickling server is one
line instead of a hang; and the environment values that steer it, each read in one function.

- CLPOSE_DOWNLOAD_TIMEOUT: seconds a download may take in all (default 3600: the largest torchvision file, ResNet-152
  at 230 MB, at 0.6 Mbit/s);
- CLPOSE_DOWNLOAD_MIN_RATE: kB/s over any 60 s below which it stops (default 10; 0: no minimum).
"""

from __future__ import annotations

import collections
import hashlib
import math
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from clpose.errors import ClposeError, first_line

TIMEOUT_ENV = "CLPOSE_DOWNLOAD_TIMEOUT"
MIN_RATE_ENV = "CLPOSE_DOWNLOAD_MIN_RATE"
# A download's limits. One hour fits the largest file (ResNet-152, 230 MB) at 0.6 Mbit/s; 10 kB/s over a minute is
# far below any working connection, so only a stalled or trickling server meets it. Both are environment values.
DEADLINE_S = 3600.0
MIN_RATE_KBS = 10.0
RATE_WINDOW_S = 60.0
_RECEIVE_TIMEOUT_S = 30.0  # one receive: a silent server fails here before the rate window ends
_POLL_S = 0.1  # how often the watching thread checks the limits and moves the bar
_CHUNK = 1 << 20
SIZE_SLACK = 1.25  # a download stops past 1.25 x the file's known size (+1 MB): the catalogue's sizes are rounded
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env_flag(name: str) -> bool:
    """A yes/no environment value: 1/true/yes/on or 0/false/no/off/unset, any case; anything else is an error (an
    `off` that turned the network off was one)."""
    value = os.environ.get(name, "")
    word = value.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ClposeError(f"{name}={value!r}: expected 1, true, yes, on or 0, false, no, off (or unset)")
    return word in _TRUE


def env_number(name: str, default: float, above_zero: bool, expected: str) -> float:
    """A finite number from the environment (`default` where unset), above 0 or at least 0."""
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0 or (above_zero and number == 0):
        raise ClposeError(f"{name}={value!r}: expected {expected}")
    return number


@dataclass
class _Transfer:
    """A download as far as it got: written by the receiving thread, read by the watching one."""

    received: int = 0
    total: int = 0  # Content-Length, 0 where the server sends none
    answered: bool = False
    stop: bool = False
    error: BaseException | None = None
    digest: Any = field(default_factory=hashlib.sha256)
    done: threading.Event = field(default_factory=threading.Event)

    def got(self) -> str:
        if not self.answered:
            return "before the server answered"
        return f"with {self.received} of {self.total} bytes received" if self.total else f"with {self.received} bytes"


def _receive(url: str, f: BinaryIO, t: _Transfer, timeout: float) -> None:
    """The receiving thread: it may block in a read for up to `timeout`, so the watching thread keeps the limits."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "clpose"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            t.total, t.answered = int(response.headers.get("Content-Length") or 0), True
            while not t.stop and (chunk := response.read1(_CHUNK)):  # read1: whatever came, not a full chunk
                f.write(chunk)
                t.digest.update(chunk)
                t.received += len(chunk)
    except BaseException as e:  # handed to the watching thread, which names it in one line
        t.error = e
    finally:
        t.done.set()


def _watch(t: _Transfer, bar: Any, limit: float, rate: float, head: str, tail: str, most: float = math.inf) -> None:
    """Wait for the receiving thread, moving the bar; past `limit` seconds, below `rate` kB/s over the last
    RATE_WINDOW_S seconds, or past `most` bytes (a server that never ends a file of known size), a ClposeError
    `head`...`tail`."""
    start = time.monotonic()
    samples = collections.deque([(start, 0)])  # (time, bytes received): the rate window
    while not t.done.wait(_POLL_S):
        now, received = time.monotonic(), t.received
        bar.update(received // 1_000_000 - bar.completed)
        if received > most or t.total > most:
            raise ClposeError(
                f"{head}the server sends {max(received, t.total) / 1e6:.0f} MB or more, far past the file's known "
                f"size{tail}"
            )
        if now - start >= limit:
            raise ClposeError(f"{head}past the deadline of {limit:g} s ({TIMEOUT_ENV}=SECONDS) {t.got()}{tail}")
        while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        then, before = samples[0]
        if rate and now - then >= RATE_WINDOW_S and received - before < rate * 1000 * (now - then):
            raise ClposeError(
                f"{head}{received - before} bytes in the last {now - then:.0f} s, below the minimum of {rate:g} kB/s "
                f"over {RATE_WINDOW_S:g} s ({MIN_RATE_ENV}=KB_PER_S, 0: no minimum) {t.got()}{tail}"
            )
        samples.append((now, received))


def _reason(e: BaseException) -> str:
    """Why a download failed, in a few words."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return " ".join(str(e.reason or e).split())
    return f"{type(e).__name__}: {first_line(e)}"


def download(
    url: str, path: Path, hash_prefix: str | None, label: str, size_mb: float, where: str, progress: bool = True
) -> None:
    """Download `url` into a temporary file beside `path`, renamed into place only when complete and, where
    `hash_prefix` is given, its SHA-256 starts with it; otherwise a ClposeError ending in `where` (what to do
    instead). A thread receives; this one keeps the deadline and the minimum rate, which hold from the connection
    on. `label` names what is downloaded (a weights name) in the line that starts it."""
    from clpose.io import atomic_path
    from clpose.progress import ProgressBar

    limit = env_number(TIMEOUT_ENV, DEADLINE_S, True, "a number of seconds above 0")
    rate = env_number(MIN_RATE_ENV, MIN_RATE_KBS, False, "a rate in kB/s, 0 or more (0: no minimum)")
    t = _Transfer()
    total_mb = math.ceil(size_mb) if size_mb >= 1 else None
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            with ProgressBar(f"downloading {path.name} (MB)", total_mb, "", enabled=progress) as bar:
                bar.log(f"downloading {label} from {url} to {path}")
                timeout = min(_RECEIVE_TIMEOUT_S, limit + 1.0)  # past the deadline: the deadline's message
                threading.Thread(target=_receive, args=(url, f, t, timeout), daemon=True).start()
                # a file of known size ends near it: a server streaming on would otherwise fill the disk
                most = SIZE_SLACK * size_mb * 1e6 + 1e6 if size_mb > 0 else math.inf
                _watch(t, bar, limit, rate, f"cannot download {url}: ", f"; {where}", most)
            if t.error is not None:
                raise ClposeError(f"cannot download {url} ({_reason(t.error)}): {where}")
            if t.total and t.received != t.total:
                raise ClposeError(f"cannot download {url}: the server sent {t.received} of {t.total} bytes; {where}")
            digest = t.digest.hexdigest()
            if hash_prefix and not digest.startswith(hash_prefix):
                raise ClposeError(
                    f"the download of {url} does not match its name's hash (sha256 {digest[:12]}..., expected "
                    f"{hash_prefix}...: a proxy that rewrote it?): nothing was kept; {where}"
                )
    finally:
        t.stop = True  # the receiving thread ends at its next read
