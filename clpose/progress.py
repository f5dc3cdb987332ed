"""The one progress bar of clpose: a rich bar on a terminal, plain lines in a log.

When stdout is not a terminal (a log file, CI, `nohup`, a Slurm job) a live bar prints nothing useful, so the same
object prints a plain line every `plain_every` seconds and one at the end: a long `clpose bench` or `prepare` in a log
shows that it is alive and how far it got.
"""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clpose.console import console


class ProgressBar:
    """Progress of `total` steps (None: unknown), with a line of fields formatted by `template` (e.g.
    "loss {loss:.4g}"), shown only where `enabled`."""

    def __init__(
        self,
        description: str,
        total: int | None,
        template: str = "",
        enabled: bool = True,
        completed: int = 0,
        transient: bool = True,
        plain_every: float = 30.0,
        **fields: Any,
    ) -> None:
        self.description, self.total, self.template, self.enabled = description, total, template, enabled
        self.completed, self.fields = completed, fields
        self.plain = enabled and not console.is_terminal
        self.plain_every = plain_every
        self._start = self._last_line = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[text]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled or self.plain,
            transient=transient,
        )
        self._task = self._progress.add_task(description, total=total, completed=completed, text=self._text())

    def _text(self) -> str:
        try:
            return self.template.format(**self.fields) if self.template else ""
        except (KeyError, ValueError):  # a field not yet set: show nothing rather than fail a long run
            return ""

    def __enter__(self) -> ProgressBar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)
        if self.plain and exc[0] is None:
            self._plain_line()

    def update(self, advance: int = 1, description: str | None = None, **fields: Any) -> None:
        self.completed += advance
        self.fields.update(fields)
        if description is not None:
            self.description = description
        self._progress.update(self._task, advance=advance, description=self.description, text=self._text())
        if self.plain and time.perf_counter() - self._last_line >= self.plain_every:
            self._plain_line()

    def log(self, message: str) -> None:
        """A line above the bar (or in the log)."""
        if self.enabled:
            self._progress.console.print(message)

    def _plain_line(self) -> None:
        self._last_line = time.perf_counter()
        done = f"{self.completed}/{self.total}" if self.total else str(self.completed)
        elapsed = time.perf_counter() - self._start
        console.print(f"{self.description} {done} {self._text()} {elapsed:.0f} s".replace("  ", " ").strip())
