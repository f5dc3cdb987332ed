"""The ONNX graph a runtime runs, made from a checkpoint once and reused while it is the checkpoint's: in `cache/`
beside the checkpoint (in its run folder), or the user's cache where that folder cannot be written.

A graph is keyed by the checkpoint file's SHA-256, the network's structure, the crop size and the exporter's
versions, and recorded in a JSON file beside it with its own SHA-256: a retrained best.pt or another input size gets
a fresh graph, and a truncated or edited graph is exported again instead of run. One process exports at a time (a
file lock); the others wait and reuse its graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from clpose import __version__
from clpose.console import console
from clpose.engine.onnx_graph import MIN_OPSET, export_onnx, verify_onnx
from clpose.engine.posemodel import PoseModel
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


def cache_folder(checkpoint: Path) -> Path:
    """`cache/` beside the checkpoint (in its run folder), or the user's cache where that folder cannot be written."""
    beside = checkpoint.parent / "cache"
    with contextlib.suppress(OSError):
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clpose" / "graphs"
    home.mkdir(parents=True, exist_ok=True)
    return home


def cached_graph(
    checkpoint: Path, pose: PoseModel, check: Callable | None = None, runtime: str = "onnxruntime"
) -> Path:
    """The checkpoint's ONNX graph (the network's last stage, any batch size): exported and checked against PyTorch
    by `check` (the runtime that will run it) on first use, reused while its record says it was made from the bytes
    `pose`'s weights were loaded from and the file is whole. A runtime that has not run the graph yet checks it
    once before it is used."""
    checkpoint = Path(checkpoint)
    digest = pose.checkpoint_sha256 or sha256(checkpoint)  # the loaded bytes: the file may have changed since
    key = graph_key(digest, pose)
    folder = cache_folder(checkpoint)
    path = folder / f"{checkpoint.stem}-{key}.onnx"
    record_path = path.with_suffix(".json")
    size = f"{pose.input_hw[0]}x{pose.input_hw[1]}"
    with file_lock(path):
        if _fresh(path, record_path, key):
            record = _record(record_path)
            if runtime not in record.get("checked_by", []) and check is not None:
                parity = verify_onnx(pose, path, check)
                worst = max(p.map_diff for p in parity)
                console.print(f"checked the cached graph with {runtime}: max |maps - torch| {worst:.1e} (fp32)")
                write_json(record_path, record | {"checked_by": [*record.get("checked_by", []), runtime]})
            return path
        console.print(
            f"exporting the network to ONNX for this runtime (once per checkpoint and size {size}): {escape(str(path))}"
        )
        start = time.perf_counter()
        parity = export_onnx(pose, path, dynamic_batch=True, check=check)
        write_json(
            record_path,
            {
                "key": key,
                "checkpoint": str(checkpoint.resolve()),
                "checkpoint_sha256": digest,
                "input_size": size,
                "graph_sha256": sha256(path),
                "checked_by": [runtime] if check is not None else [],
                "clpose": __version__,
                "torch": torch.__version__,
                "opset": MIN_OPSET,
                "parity": [asdict(p) for p in parity],
            },
        )
        worst = max(p.map_diff for p in parity)
        console.print(f"exported in {time.perf_counter() - start:.1f} s; max |maps - torch| {worst:.1e} (fp32)")
        for old in folder.glob(f"{checkpoint.stem}-*.onnx"):  # graphs of earlier bytes of this checkpoint file
            made = _record(old.with_suffix(".json"))  # another crop size of the same bytes stays
            same_file = made.get("checkpoint") == str(checkpoint.resolve())
            if old != path and same_file and made.get("checkpoint_sha256") != digest:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)
    return path


def _record(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _fresh(path: Path, record_path: Path, key: str) -> bool:
    """A graph made for this key whose bytes are those recorded (a truncated or edited file is made again)."""
    record = _record(record_path)
    return path.is_file() and record.get("key") == key and record.get("graph_sha256") == sha256(path)


# -- runners: one forward pass each ----------------------------------------------------------------------------------
