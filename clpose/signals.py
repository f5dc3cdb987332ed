"""Signals as a command sees them: SIGTERM (docker stop, systemd, Slurm, `kill`) raises KeyboardInterrupt as Ctrl-C
does, so atomic writers (clpose.io) remove their temporary files; a loop that must not stop mid-unit (a video frame
written but not yet counted) asks for a stop request instead and checks it between units of work."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (docker stop, systemd, Slurm, `kill`) raises KeyboardInterrupt as Ctrl-C does, so the writers above
    remove their temporary files and a command can finalise; the previous handler is restored afterwards.

    Only the main thread may set signal handlers: elsewhere (a library caller's thread) SIGTERM keeps its handler.
    A process forked meanwhile (a data-loader or pool worker) inherits the handler; there SIGTERM still ends it at
    once, as multiprocessing expects when it terminates its workers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest:
    """Set by Ctrl-C or SIGTERM inside `stop_requested()`: a loop checks `requested` between units of work."""

    requested: bool = False


@contextlib.contextmanager
def stop_requested() -> Iterator[StopRequest]:
    """Ctrl-C and SIGTERM ask a loop to stop at its next check instead of raising wherever the code happens to be: an
    interrupt between writing a video frame and counting it would leave a file whose frames disagree with the count.
    A second signal raises KeyboardInterrupt at once (an impatient user). Only in the main thread (elsewhere the
    handlers stay as they are); the previous handlers are restored afterwards."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    owner = os.getpid()

    def request(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked worker: end it as the signal would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
