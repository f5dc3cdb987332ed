"""The rich consoles every command prints through (stdout for results, stderr for errors and warnings)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.text import Text


# Piped output (logs, CI) would otherwise be cut at rich's default 80 columns, squeezing tables. No markup: what is
# printed is paths, names and numbers, and rich would read `out [x].png` as markup and print `out .png` (a folder
# `c[/x]` ended a run with a markup error); styled text is a rich Text (`styled`), never markup in a string.
class _Console(Console):
    """A rich Console that prints any name: a file name that is not UTF-8 (Python keeps its bytes as surrogates)
    is shown with a replacement character instead of failing the print after the work was done."""

    def print(self, *objects: object, **kwargs: object) -> None:
        super().print(*(shown(o) for o in objects), **kwargs)


def shown(value: object) -> object:
    """`value` with text that cannot be encoded (surrogates) made printable; other renderables as they are."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, Text) and value.plain != shown(value.plain):
        copy = value.copy()
        copy.plain = shown(value.plain)  # the same length: the styles stay where they were
        return copy
    return value


console = _Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err_console = _Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


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
