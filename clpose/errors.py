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


def check_range(
    name: str, value: float, low: float | None = None, high: float | None = None, open_low: bool = False
) -> None:
    """A ClposeError naming the option unless low <= value <= high (low < value with open_low); NaN never passes."""
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and value > high
    if value != value or below or above:  # value != value: NaN
        if low is not None and high is not None:
            want = f"in ({low:g}, {high:g}]" if open_low else f"in [{low:g}, {high:g}]"
        elif low is not None:
            want = f"> {low:g}" if open_low else f">= {low:g}"
        else:
            want = f"<= {high:g}"
        raise ClposeError(f"{name} must be {want}, got {value:g}")
