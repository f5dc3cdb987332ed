"""The ONNX graph a runtime runs, made from a checkpoint once and reused while it is the checkpoint's: in `cache/`
beside the checkpoint (in its run folder), or the user's cache where that folder cannot be written.

A graph is keyed by the checkpoint file's SHA-256, the network's structure, the crop size and the exporter's
versions, and recorded in a JSON file beside it with its own SHA-256: a retrained best.pt or another input size gets
a fresh graph, and a truncated or edited graph is exported again instead of run. One process exports at a time (a
file lock); the others wait and reuse its graph.

What is in a run folder is not proof of anything: anyone who can write the folder can put a graph there with a
record that names this checkpoint. So a graph runs only once it has been checked against the checkpoint's own
network by the runtime that runs it, and that check is remembered in the user's own cache (`verified/`, keyed by the
graph's SHA-256), which the run folder cannot speak for. A graph the user's clpose has not checked is checked before
it runs (and exported again when it does not reproduce the checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from clpose import __version__
from clpose.console import console, warn
from clpose.engine.onnx_graph import MIN_OPSET, GraphCheck, export_onnx, onnxruntime_check, verify_onnx
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError, first_line
from clpose.io import file_lock, sha256, write_json


def graph_key(checkpoint_sha256: str, pose: PoseModel) -> str:
    """What a cached graph depends on: the checkpoint's bytes, the network's structure (a --recipe may build another
    network around the same weights), the crop size, and the exporter's versions."""
    parts = [
        checkpoint_sha256,
        repr(pose.model),
        f"{pose.input_hw[0]}x{pose.input_hw[1]}",
        f"opset {MIN_OPSET}",
        f"clpose {__version__}",
        f"torch {torch.__version__}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class NoGraphCache(ClposeError):
    """Neither the run folder nor the user's cache can hold a graph (`--runtime auto` then runs torch)."""


def user_cache() -> Path:
    """clpose's folder in the user's cache ($XDG_CACHE_HOME or ~/.cache): only the user writes it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clpose"


def _writable(folder: Path) -> bool:
    """Whether files can be created in `folder` (made if missing): tried, not asked (os.access says yes to root on a
    read-only file system)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cache_folder(checkpoint: Path) -> Path:
    """`cache/` beside the checkpoint (in its run folder), or the user's cache where that folder cannot be written or
    is not a folder of the run's own (a symbolic link would send the graphs, records and locks elsewhere). A
    ClposeError naming both where neither can be written."""
    beside = checkpoint.parent / "cache"
    if beside.is_symlink():
        warn(f"{beside} is a symbolic link (to {os.readlink(beside)}): the graph is kept in the user's cache instead")
    elif _writable(beside) and beside.is_dir():
        return beside
    home = user_cache() / "graphs"
    if _writable(home) and not home.is_symlink():
        return home
    raise NoGraphCache(
        f"no folder to keep the exported graph in: neither {beside} nor {home} can be written (set XDG_CACHE_HOME "
        "to a writable folder, or run with --runtime torch)"
    )


def cached_graph(
    checkpoint: Path, pose: PoseModel, check: GraphCheck | None = None, runtime: str = "onnxruntime"
) -> Path:
    """The checkpoint's ONNX graph (the network's last stage, any batch size): exported and checked against PyTorch
    by `check` (the runtime that will run it; ONNX Runtime by default) on first use, reused while its record says it
    was made from the bytes `pose`'s weights were loaded from and the file is whole, and checked again by a runtime
    before it runs unless this user's clpose has checked these exact bytes with that runtime (see the module's
    docstring)."""
    checkpoint, check = Path(checkpoint), check or onnxruntime_check
    digest = pose.checkpoint_sha256 or sha256(checkpoint)  # the loaded bytes: the file may have changed since
    key = graph_key(digest, pose)
    folder = cache_folder(checkpoint)
    path = folder / f"{checkpoint.stem}-{key}.onnx"
    record_path = path.with_suffix(".json")
    with file_lock(path):
        graph_sha = _fresh(path, record_path, key)

        def check_cached() -> str:
            worst = max(p.map_diff for p in verify_onnx(pose, path, check))
            return f"max |maps - torch| {worst:.1e} (fp32)"

        if not reuse_checked(path, graph_sha, key, runtime, check_cached, f"does not reproduce {checkpoint}"):
            _export(checkpoint, pose, path, key, digest, check, runtime)
    return path


def reuse_checked(
    path: Path, graph_sha: str | None, key: str, runtime: str, check: Callable[[], str], mismatch: str
) -> bool:
    """Whether the cached graph at `path` (whose bytes hash to `graph_sha`, None where it is missing or not the one
    recorded) may run in `runtime`: this user's clpose checked these bytes with it before, or `check()` passes now
    (it returns the line to print, or raises a ClposeError: a graph of other weights, placed or left there, is said
    with `mismatch` and never run; the caller makes it again). Shared by the pose and the detector graphs."""
    if graph_sha is None:
        return False
    if verified(graph_sha, key, runtime):
        return True
    try:
        found = check()
    except ClposeError as e:
        warn(f"the cached graph {path} {mismatch} ({first_line(e)}): made again")
        return False
    console.print(f"checked the cached graph with {runtime}: {found}")
    remember(graph_sha, key, runtime)
    return True


def _export(
    checkpoint: Path, pose: PoseModel, path: Path, key: str, digest: str, check: GraphCheck, runtime: str
) -> None:
    size = f"{pose.input_hw[0]}x{pose.input_hw[1]}"
    console.print(f"exporting the network to ONNX for this runtime (once per checkpoint and size {size}): {path}")
    start = time.perf_counter()
    parity = export_onnx(pose, path, dynamic_batch=True, check=check)
    graph_sha = sha256(path)
    write_json(
        path.with_suffix(".json"),
        {
            "key": key,
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_sha256": digest,
            "input_size": size,
            "graph_sha256": graph_sha,
            "clpose": __version__,
            "torch": torch.__version__,
            "opset": MIN_OPSET,
            "parity": [asdict(p) for p in parity],
        },
    )
    remember(graph_sha, key, runtime)
    worst = max(p.map_diff for p in parity)
    console.print(f"exported in {time.perf_counter() - start:.1f} s; max |maps - torch| {worst:.1e} (fp32)")
    for old in path.parent.glob(f"{checkpoint.stem}-*.onnx"):  # graphs of earlier bytes of this checkpoint file
        made = _record(old.with_suffix(".json"))  # another crop size of the same bytes stays
        same_file = made.get("checkpoint") == str(checkpoint.resolve())
        if old != path and same_file and made.get("checkpoint_sha256") != digest:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)


def _verified_path(graph_sha: str, key: str) -> Path:
    # by the graph's bytes and the key: graphs of two keys can be byte-identical (the same network, another torch)
    return user_cache() / "verified" / f"{graph_sha}-{key}.json"


def verified(graph_sha: str, key: str, runtime: str) -> bool:
    """Whether this user's clpose checked the graph of these bytes, for this key, with `runtime`."""
    return runtime in _record(_verified_path(graph_sha, key)).get("checked_by", [])


def remember(graph_sha: str, key: str, runtime: str) -> None:
    """Remember the check in the user's cache; where that cannot be written, the graph is simply checked again next
    time (slower, never less safe)."""
    path = _verified_path(graph_sha, key)
    checked = _record(path).get("checked_by", [])
    with contextlib.suppress(OSError, ClposeError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"graph_sha256": graph_sha, "key": key, "checked_by": sorted({*checked, runtime})})


def _record(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _fresh(path: Path, record_path: Path, key: str) -> str | None:
    """The SHA-256 of a graph made for this key whose bytes are those recorded, else None (a truncated or edited file
    is made again)."""
    record = _record(record_path)
    if not (path.is_file() and record.get("key") == key):
        return None
    graph_sha = sha256(path)
    return graph_sha if record.get("graph_sha256") == graph_sha else None
