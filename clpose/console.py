"""The rich consoles every command prints through (stdout for results, stderr for errors and warnings)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.text import Text

# Piped output (logs, CI) would otherwise be cut at rich's default 80 columns, squeezing tables. No markup: what is
# printed is paths, names and numbers, and rich would read `out [x].png` as markup and print `out .png` (a folder
# `c[/x]` ended a run with a markup error); styled text is a rich Text (`styled`), never markup in a string.
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of plain parts and (text, style) parts, e.g. styled(("PCK 91.0%", "bold"), " after 4 epochs"): nothing
    in it is read as markup."""
    return Text.assemble(*parts)


def print_error(message: str) -> None:
    """One red line on stderr (newlines folded so the message stays one line)."""
    text = " ".join(str(message).split())
    err_console.print(f"[bold red]error:[/bold red] [red]{escape(text)}[/red]", soft_wrap=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)
