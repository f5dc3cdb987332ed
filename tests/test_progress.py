"""The one progress bar: plain lines when stdout is not a terminal (logs, CI), nothing when disabled."""

from __future__ import annotations

from clpose.console import console
from clpose.progress import ProgressBar


def test_a_log_gets_plain_lines_while_running_and_at_the_end() -> None:
    assert not console.is_terminal  # pytest captures stdout: as in a log file
    bar = ProgressBar("measuring", 3, "{rate:.1f} samples/s", plain_every=0.0, rate=0.0)
    with console.capture() as captured, bar:
        bar.update(1, rate=12.5)
        bar.update(2, description="timing clnet_resnet50", rate=20.0)
    lines = captured.get().splitlines()
    assert lines[0].startswith("measuring 1/3 12.5 samples/s")
    assert lines[1].startswith("timing clnet_resnet50 3/3 20.0 samples/s")
    assert lines[-1].startswith("timing clnet_resnet50 3/3 20.0 samples/s") and lines[-1].endswith(" s")


def test_plain_lines_are_rate_limited_and_a_disabled_bar_prints_nothing() -> None:
    with console.capture() as captured, ProgressBar("infer", None, plain_every=3600.0) as bar:
        for _ in range(100):
            bar.update(1)
    assert len(captured.get().splitlines()) == 1  # only the final line
    assert captured.get().startswith("infer 100 ")
    with console.capture() as captured, ProgressBar("quiet", 2, enabled=False, plain_every=0.0) as bar:
        bar.update(2)
        bar.log("not shown")
    assert captured.get() == ""


def test_a_template_field_not_yet_set_shows_nothing_instead_of_failing() -> None:
    with console.capture() as captured, ProgressBar("train", 1, "loss {loss:.4g}", plain_every=0.0) as bar:
        bar.update(1)
    assert "train 1/1" in captured.get() and "loss" not in captured.get()
