"""docs/cli.md, generated from the typer app: `python -m clpose.cli.docs > docs/cli.md`.

tests/test_cli.py compares the file with this output, so the reference cannot drift from the commands.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer.main

from clpose.cli.app import app

# the order a user meets the commands in (the README's tour); anything new goes after them
ORDER = ["prepare", "vis", "train", "eval", "bench", "infer", "export", "demo"]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _context(command: Any, name: str, parent: Any) -> Any:
    # resilient parsing: no arguments are given, so required ones must not raise
    return command.make_context(name, [], parent=parent, resilient_parsing=True)


def _command(command: Any, ctx: Any, path: str, out: list[str]) -> None:
    sub = getattr(command, "commands", None)
    if sub:
        names = [n for n in ORDER if n in sub] + [n for n in sub if n not in ORDER]
        for name in names:
            _command(sub[name], _context(sub[name], name, ctx), f"{path} {name}", out)
        return
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    out += [f"## `{path}`", "", "```text", usage, "```", ""]
    if command.help:
        out += [inspect.cleandoc(command.help), ""]
    records = filter(None, (p.get_help_record(ctx) for p in command.params))  # None: a hidden parameter
    rows = [f"| `{_cell(name)}` | {_cell(text)} |" for name, text in records]
    if rows:  # the help texts already end with [default: ...] or [required]
        out += ["| parameter | meaning |", "|---|---|", *rows, ""]


def cli_markdown() -> str:
    """The whole command-line reference as Markdown."""
    root = typer.main.get_command(app)
    ctx = _context(root, "clpose", None)
    out = [
        "# Command-line reference",
        "",
        "Generated from the typer app by `python -m clpose.cli.docs > docs/cli.md` (a test fails when this file",
        "is out of date). `clpose COMMAND --help` prints the same. Errors caused by input are one line and exit",
        "code 2; `clpose --debug COMMAND ...` shows the traceback instead.",
        "",
    ]
    rows = [f"| `{_cell(n)}` | {_cell(t)} |" for n, t in filter(None, (p.get_help_record(ctx) for p in root.params))]
    out += ["Options of `clpose` itself:", "", "| option | meaning |", "|---|---|", *rows, ""]
    _command(root, ctx, "clpose", out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(cli_markdown(), end="")
