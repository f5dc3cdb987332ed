"""The one exception type a user sees as a clean message."""

from __future__ import annotations


class ClposeError(Exception):
    """Bad input or a failed precondition, named precisely enough to fix it.

    The CLI prints it as one red line on stderr and exits with code 2 (the traceback only under --debug).
    The message should name the file, key or shape at fault.
    """


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (its type where the message is empty), for a one-line error."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]
