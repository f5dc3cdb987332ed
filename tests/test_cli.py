"""The command line: every subcommand's help, the error contract (one red line, exit 2), --debug, --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clpose import __version__
from clpose.cli.app import app
from clpose.errors import ClposeError

runner = CliRunner()
SUBCOMMANDS = ["prepare", "vis", "train", "eval", "bench", "infer", "export", "demo"]


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert f" {name} " in result.output


@pytest.mark.parametrize(
    "args", [[c, "--help"] for c in SUBCOMMANDS] + [["vis", "targets", "--help"], ["vis", "dataset", "--help"]]
)
def test_every_subcommand_has_help_describing_its_options(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage: clpose" in result.output
    if args[0] != "vis" or len(args) == 3:
        assert "--help" in result.output and result.output.count("--") >= 2


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith(f"clpose {__version__}")


def test_clpose_error_is_one_red_line_and_exit_code_2() -> None:
    def boom() -> None:
        raise ClposeError("data/x.json: key 'joints'\nis missing")

    app.command("boom")(boom)  # typer builds the click group at each invoke, so a temporary command works
    try:
        result = runner.invoke(app, ["boom"])
        assert result.exit_code == 2
        assert result.stderr.strip() == "error: data/x.json: key 'joints' is missing"
        assert "Traceback" not in result.output
        debug = runner.invoke(app, ["--debug", "boom"])
        assert isinstance(debug.exception, ClposeError)
    finally:
        app.registered_commands = [c for c in app.registered_commands if c.callback is not boom]


def test_python_dash_m_clpose_help_runs_as_a_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "clpose", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in SUBCOMMANDS:
        assert name in proc.stdout


def test_usage_errors_exit_2_without_traceback() -> None:
    result = runner.invoke(app, ["prepare", "nosuchdataset"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_docs_cli_md_is_generated_from_the_app() -> None:
    from clpose.cli.docs import cli_markdown

    text = cli_markdown()
    for name in SUBCOMMANDS:
        assert f"## `clpose {name}" in text
    committed = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert committed == text, "docs/cli.md is out of date: python -m clpose.cli.docs > docs/cli.md"


def test_paths_with_brackets_print_as_they_are(tmp_path) -> None:
    """Issue 31, class 8: rich read `out [x].png` as markup and printed `out .png` (a folder `c[/x]` ended a run with a
    markup error). The console prints text as it is; styled parts are rich Text, never markup in a string."""
    from clpose.console import console

    with console.capture() as captured:
        console.print("wrote out [x].png and c[/x]/a.json, [bold]not bold[/bold]")
    assert captured.get().strip() == "wrote out [x].png and c[/x]/a.json, [bold]not bold[/bold]"
    out = tmp_path / "d [x]"
    args = ["prepare", "synthetic", "--out", str(out), "--train", "2", "--val", "2", "--size", "64", "--workers", "1"]
    result = runner.invoke(app, [*args, "--video", str(out / "clip [1].mp4"), "--frames", "2"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"video: {out}/clip [1].mp4 (2 frames" in said and f"ground truth in {out}/clip [1].json)" in said
