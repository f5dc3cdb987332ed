"""The result table `clpose eval` prints: the metric's columns (from its registry entry) on its printed scale, a row
per stage where there are several, then the counts, which people were scored where not all of the ground truth's
were, and the notes: why a column is n/a, who was excluded (clpose.evaluation.undefined is the one representation of
an undefined result, for every metric)."""

from __future__ import annotations

from clpose.evaluation.metrics import Table, get_metric
from clpose.evaluation.undefined import cell, check_defined, normalise, notes


def check_tables(tables: list[Table], source: str = "the result") -> None:
    """Every table in the one representation of undefined (a NaN of a metric outside clpose becomes None with its
    reason), and refused in one line where no column of it has a value: a table of n/a is not a result."""
    for table in tables:
        metric = get_metric(table["metric"])
        normalise(table, metric.columns)
        check_defined(table, metric.columns, source)


def print_tables(tables: list[Table]) -> None:
    """One result table (a row per stage when there are several), then its counts and notes."""
    from rich.table import Table as RichTable

    from clpose.console import console

    check_tables(tables)
    metric = get_metric(tables[0]["metric"])
    table = RichTable(title=metric.title.format(alpha=f"{tables[0].get('alpha') or 0:g}"))
    if len(tables) > 1:
        table.add_column("stage", justify="right")
    for column in metric.columns:
        table.add_column(column, justify="right")
    for i, t in enumerate(tables):
        cells = [cell(t.get(c), metric.scale) for c in metric.columns]
        table.add_row(*([str(i + 1)] if len(tables) > 1 else []), *cells)
    console.print(table)
    counts = {k: tables[-1][k] for k in ("people", "joints_counted", "instances", "images") if k in tables[-1]}
    console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
    if tables[-1].get("people_scored"):  # part of the ground truth's people (LSP's test set): which
        console.print(f"people scored: {tables[-1]['people_scored']}")
    for line in notes(tables[-1], metric.columns):  # the ground truth's, the same for every stage
        console.print(line)
