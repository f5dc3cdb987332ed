"""The result table `clpose eval` prints: the metric's columns (from its registry entry) on its printed scale, a row
per stage where there are several, then the counts."""

from __future__ import annotations

from clpose.evaluation.metrics import Table, get_metric


def print_tables(tables: list[Table]) -> None:
    """One result table (a row per stage when there are several), then its counts."""
    from rich.table import Table as RichTable

    from clpose.console import console

    metric = get_metric(tables[0]["metric"])
    table = RichTable(title=metric.title.format(alpha=f"{tables[0].get('alpha') or 0:g}"))
    if len(tables) > 1:
        table.add_column("stage", justify="right")
    for column in metric.columns:
        table.add_column(column, justify="right")
    for i, t in enumerate(tables):
        cells = [f"{t[c] * metric.scale:.1f}" for c in metric.columns]
        table.add_row(*([str(i + 1)] if len(tables) > 1 else []), *cells)
    console.print(table)
    counts = {k: tables[-1][k] for k in ("people", "joints_counted", "instances", "images") if k in tables[-1]}
    console.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
