"""Small pieces shared by the subcommand modules."""

from __future__ import annotations

from typing import NoReturn

from clpose.errors import ClposeError


def not_available(command: str, issue: int) -> NoReturn:
    """Subcommands whose work has not landed yet stop here with one clear line and exit code 2."""
    raise ClposeError(f"`clpose {command}` is not available yet (tracked in issue #{issue})")
