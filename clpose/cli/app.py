"""The `clpose` typer app: one entry point, one thin command per subcommand.

The command bodies parse options and call the core. A ClposeError raised anywhere becomes one red line on
stderr and exit code 2 (ClposeGroup.invoke); `clpose --debug ...` shows the traceback instead. SIGTERM stops every
command as Ctrl-C does (temporary files removed, outputs finalised where a command does that), exit code 130.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from clpose import __version__
from clpose.cli import bench, demo, evaluate, export, infer, prepare, train, vis, weights
from clpose.console import print_error
from clpose.errors import ClposeError, first_line
from clpose.io import free_space
from clpose.signals import sigterm_as_interrupt

INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT); SIGTERM is made to end alike


class ClposeGroup(TyperGroup):
    """Turns a ClposeError, and an OSError on a user path, into one red line and exit code 2, unless --debug; Ctrl-C
    and SIGTERM into one line and exit code 130."""

    def invoke(self, ctx: Any) -> Any:
        try:
            # SIGTERM's default action ends Python at once, before the atomic writers remove their temporary files
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            print_error("interrupted (Ctrl-C or SIGTERM); files being written were removed, finished ones kept")
            raise typer.Exit(INTERRUPTED) from None
        except ClposeError as e:
            if ctx.params.get("debug"):
                raise
            print_error(worker_message(str(e)))
            raise typer.Exit(2) from None
        except OSError as e:  # a user path the system refuses: read-only, a folder where a file goes, a full disk
            if ctx.params.get("debug"):
                raise
            print_error(os_error_message(e))
            raise typer.Exit(2) from None


def worker_message(message: str) -> str:
    """The original message of an error raised in a data-loader worker: torch re-raises it as
    "Caught ClposeError in DataLoader worker process 0. Original Traceback ... ClposeError: MESSAGE"."""
    if "Caught " not in message or "Original Traceback" not in message:
        return message
    prefix = message[: message.index("Caught ")]  # e.g. "epoch 1: "
    last = [line for line in message.strip().splitlines() if line.strip()][-1]
    return prefix + (last.split("ClposeError: ", 1)[1] if "ClposeError: " in last else last.strip())


def os_error_message(e: OSError) -> str:
    """One line naming the path and the system's reason, e.g. "cannot write out/best.pt: No space left on device"."""
    reason = e.strerror or first_line(e)
    if isinstance(e, FileExistsError | NotADirectoryError) and e.filename is not None and not e.filename2:
        blocker = next((p for p in (Path(e.filename), *Path(e.filename).parents) if p.is_file()), None)
        if blocker is not None:  # an output folder (or a folder above it) where a file is: name that file
            return f"{blocker}: a file is in the way (expected a folder there)"
    if e.filename is None:
        return f"{reason} ({type(e).__name__})"
    target = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
    if e.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)):  # the disk, a limit or a quota
        return f"{target}: {reason} ({free_space(Path(e.filename).parent)})"
    return f"{target}: {reason}"


app = typer.Typer(
    cls=ClposeGroup,
    name="clpose",
    help="Composite-localization human pose estimation: prepare data, train, evaluate, benchmark, run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = "not installed"
        typer.echo(f"clpose {__version__} (torch {torch_version})")
        raise typer.Exit()


@app.callback()
def _root(
    version_: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Composite-localization human pose estimation."""


app.command("prepare")(prepare.prepare)
app.add_typer(vis.app, name="vis")
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("bench")(bench.bench)
app.command("infer")(infer.infer)
app.command("export")(export.export)
app.command("demo")(demo.demo)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Console-script entry point (`clpose` and `python -m clpose`)."""
    for stream in (sys.stdout, sys.stderr):
        # a terminal or pipe whose encoding cannot show a path (PYTHONIOENCODING=ascii and a name in Cyrillic) gets
        # a replacement character, not a UnicodeEncodeError after the outputs were written
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")
    app()
