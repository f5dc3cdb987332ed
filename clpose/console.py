"""The rich consoles every command prints through (stdout for results, stderr for errors and warnings)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

# Piped output (logs, CI) would otherwise be cut at rich's default 80 columns, squeezing tables.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def print_error(message: str) -> None:
    """One red line on stderr (newlines folded so the message stays one line)."""
    text = " ".join(str(message).split())
    err_console.print(f"[bold red]error:[/bold red] [red]{escape(text)}[/red]", soft_wrap=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)
