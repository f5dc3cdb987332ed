"""Undefined results: one representation for every metric.

A column a metric cannot compute (pycocotools' -1 "no ground truth in this area range", a PCK column none of whose
joints is labelled) is None in the table (null in JSON, "n/a" on screen), and `table["undefined"][column]` says why.
Never a sentinel such as -1 (printed as -100.0) and never NaN (printed as "nan", and NaN compares False with
everything, so a NaN headline silently loses or wins comparisons). People a metric cannot score at all (a PCK
normaliser of zero length) are counted in `table["excluded"]`: reason -> how many.

Readers of a table take a column's value with `column_value` (NaN for undefined: `Metric.improves` never lets NaN
become a best) and print it with `cell`; a table whose every column is undefined is refused by `check_defined`.
"""

from __future__ import annotations

import math
from typing import Any

from clpose.errors import ClposeError

UNDEFINED = "undefined"  # table key: column -> why it has no value
EXCLUDED = "excluded"  # table key: reason -> how many people could not be scored
NOT_A_NUMBER = "the scorer gave no number (NaN)"


def mark_undefined(table: dict[str, Any], column: str, reason: str) -> None:
    """Make `column` of `table` undefined, saying why."""
    table[column] = None
    table.setdefault(UNDEFINED, {})[column] = reason


def is_undefined(value: Any) -> bool:
    """None, or a NaN a metric outside clpose may still return."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def column_value(table: dict[str, Any], column: str) -> float:
    """The column as a float: NaN where undefined (so that an undefined headline never becomes a run's best)."""
    value = table.get(column)
    return math.nan if is_undefined(value) else float(value)


def reason(table: dict[str, Any], column: str) -> str:
    return table.get(UNDEFINED, {}).get(column, NOT_A_NUMBER)


def normalise(table: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """`table` with every NaN column (a metric registered outside clpose may return one) written as undefined."""
    for column in columns:
        value = table.get(column)
        if value is not None and is_undefined(value):
            mark_undefined(table, column, NOT_A_NUMBER)
    return table


def cell(value: Any, scale: float) -> str:
    """A printed cell: the value on the metric's printed scale, or n/a."""
    return "n/a" if is_undefined(value) else f"{value * scale:.1f}"


def notes(table: dict[str, Any], columns: tuple[str, ...]) -> list[str]:
    """The lines printed under a table: why each undefined column is n/a, and who was excluded and why."""
    lines = [f"{c} n/a: {reason(table, c)}" for c in columns if is_undefined(table.get(c))]
    excluded = table.get(EXCLUDED) or {}
    if excluded:
        people = table.get("people")
        of = f" of {people}" if people is not None else ""
        why = "; ".join(f"{text} ({count})" for text, count in excluded.items())
        lines.append(f"{sum(excluded.values())}{of} people excluded, they cannot be scored: {why}")
    return lines


def check_defined(table: dict[str, Any], columns: tuple[str, ...], source: str) -> None:
    """A ClposeError when no column has a value: a table of n/a is not a result."""
    if columns and all(is_undefined(table.get(c)) for c in columns):
        why = "; ".join(sorted({reason(table, c) for c in columns}))
        raise ClposeError(f"{source}: nothing could be scored ({why})")
