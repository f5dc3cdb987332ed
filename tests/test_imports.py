"""The house drawn from the imports: every import statement of every module under clpose/ (at the top or inside a
function) runs down docs/architecture.md's list of layers, never up, and no modules import each other in a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clpose"


def layers() -> list[list[str]]:
    """docs/architecture.md's chain ("a, b  >  c  >  ..."): the layers from the top, each a list of module names
    relative to clpose (a package stands for its modules; a dotted name for one module)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Who may import whom", 1)[1].split("```", 2)[1]
    return [[name.strip() for name in layer.split(",")] for layer in re.sub(r"\s+", " ", block).split(">")]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The clpose modules `name` imports (a `from package import module` counts as the module)."""

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name) for a in node.names if a.name.startswith("clpose")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package `level` steps up
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            if base.startswith("clpose"):
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(resolve(full) if full in known else resolve(base))
    return {m for m in found if m is not None and m != name}


def layer_of(name: str, chain: list[list[str]]) -> int:
    """The index of the layer whose name is the longest prefix of the module's (`clpose` alone: the last)."""
    relative = name.removeprefix("clpose").lstrip(".") or "clpose"
    best = None
    for index, layer in enumerate(chain):
        for entry in layer:
            inside = relative == entry or relative.startswith(entry + ".")
            if inside and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    assert best is not None, f"{name} is in no layer of docs/architecture.md's list: add it there"
    return best[0]


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def test_every_import_runs_down_the_layers() -> None:
    chain = layers()
    up = [f"{a} -> {b}" for a, outs in GRAPH.items() for b in sorted(outs) if layer_of(b, chain) < layer_of(a, chain)]
    assert up == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert circles == []


@pytest.mark.parametrize(
    ("source", "target", "check"),
    [
        ("clpose.config.load", "clpose.codecs", test_every_import_runs_down_the_layers),  # config -> a registry
        ("clpose.speed.limits", "clpose.speed.bench", test_no_modules_import_each_other_in_a_circle),
    ],
)
def test_the_checks_catch_a_planted_import(monkeypatch, source: str, target: str, check) -> None:
    """The two import edges this layout removed, planted back into the graph: each check fails."""
    monkeypatch.setitem(GRAPH, source, GRAPH[source] | {target})
    with pytest.raises(AssertionError):
        check()
