"""The three stages of `clpose infer` on a video, overlapped: a thread reads and decodes frames ahead, the calling
thread finds people and runs the networks (with the cores `--threads` gives them), and a thread draws, encodes and
records what was found. OpenCV's decoding, drawing and encoding and the runtimes' inference release the GIL, so the
stages run at once on separate cores.

Order and completeness: each stage is one thread and the queues are first in, first out, so frames leave in the order
they came and every frame the networks finished is written; a stop (Ctrl-C, SIGTERM) stops the reader, and the
writer still writes every frame handed to it before the outputs are finalised. An error in a side thread is raised
in the calling thread at its next hand-over (or at `close`), so a failed write still fails the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()


class _Stage:
    """A worker thread with a bounded queue and an error slot."""

    def __init__(self, depth: int) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.busy = 0.0  # seconds this stage worked (its share of the run, overlapping the others)

    def raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class FrameReader(_Stage):
    """Frames of `frames` (an iterator) read ahead in a thread, up to `depth` of them."""

    def __init__(self, frames: Iterator[Any], depth: int = 8) -> None:
        super().__init__(depth)
        self._frames = frames
        self._thread = threading.Thread(target=self._run, name="clpose-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                start = time.perf_counter()
                frame = next(self._frames, _DONE)
                self.busy += time.perf_counter() - start
                if frame is _DONE:
                    break
                while not self.stopping.is_set():
                    try:
                        self.queue.put(frame, timeout=0.05)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the calling thread
            self.error = e
        finally:
            self._put_done()

    def _put_done(self) -> None:
        while True:
            try:
                self.queue.put(_DONE, timeout=0.05)
                return
            except queue.Full:
                if self.stopping.is_set():
                    return

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.queue.get()
            if item is _DONE:
                self.raise_error()
                return
            yield item

    def stop(self) -> None:
        """Stop reading (frames not yet handed out are dropped: they were never predicted) and wait for the thread."""
        self.stopping.set()
        while self._thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
        self._thread.join()


class OutputWriter(_Stage):
    """`write(*item)` for every item handed over, in order, in a thread, up to `depth` waiting."""

    def __init__(self, write: Callable[..., None], depth: int = 8) -> None:
        super().__init__(depth)
        self._write = write
        self._thread = threading.Thread(target=self._run, name="clpose-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if self.error is not None:
                continue  # a write failed: the run fails; the rest are not written
            start = time.perf_counter()
            try:
                self._write(*item)
            except BaseException as e:
                self.error = e
            self.busy += time.perf_counter() - start

    def put(self, *item: Any) -> None:
        self.raise_error()
        self.queue.put(item)

    def close(self) -> None:
        """Write everything handed over, end the thread, and raise its error if a write failed."""
        self.queue.put(_DONE)
        self._thread.join()
        self.raise_error()
