"""Every benchmark script still imports against today's package (they are run by hand, not by the suite, so a moved
or renamed name would otherwise surface only when someone measures)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "machine")


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_benchmark_imports(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/NAME.py` puts its folder first
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)), f"benchmarks/{name}.py has no main()"
    monkeypatch.delitem(sys.modules, name)
