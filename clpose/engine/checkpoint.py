"""Checkpoints: plain tensors and dicts only, written atomically, read with torch.load(weights_only=True).

A checkpoint holds model, optimizer, scheduler and grad-scaler states, the epoch, the RNG states, the
resolved recipe (as plain data) and the package version, so `clpose eval`, `infer` and `export` can rebuild
the model and its codec from the file alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from clpose.errors import ClposeError, first_line
from clpose.io import atomic_path
from clpose.safeload import read_tensors

REQUIRED = ("model", "recipe", "version", "epoch")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file next to `path`, then os.replace: a crash (even SIGKILL) mid-write
    leaves the previous checkpoint intact."""
    path = Path(path)
    try:  # atomic_path also removes the temporary files that killed writers of `path` left (clpose.io)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as e:  # torch's stream writer reports a full disk as a RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on that disk"
        except OSError:
            free = "free space unknown"
        raise ClposeError(f"cannot write checkpoint {path}: {reason} ({free}; the previous file is kept)") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a clpose checkpoint; a missing, corrupt or foreign file is a ClposeError naming it."""
    return read_checkpoint(path, map_location)[0]


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], str]:
    """`load_checkpoint`, and the SHA-256 of the bytes it loaded (what a graph exported from them is keyed by)."""
    path = Path(path)
    if path.is_dir():
        path = find_checkpoint(path)
    if not path.is_file():
        raise ClposeError(f"checkpoint {path} does not exist")
    state, digest = read_tensors(path, "checkpoint", map_location)
    if not isinstance(state, dict):
        raise ClposeError(f"{path} is not a clpose checkpoint")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ClposeError(f"{path} is not a clpose checkpoint (it lacks {', '.join(missing)})")
    return state, digest


def find_checkpoint(run_dir: Path) -> Path:
    """best.pt of a run folder, else last.pt."""
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise ClposeError(f"{run_dir} holds neither best.pt nor last.pt")


def latest_checkpoint(runs: str | Path = "runs", name: str = "best.pt") -> Path:
    """The most recently written `name` under the runs folder (what `infer`/`eval` use without a checkpoint)."""
    found = sorted(Path(runs).glob(f"**/{name}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ClposeError(
            f"no {name} under {runs}/: train a model first (clpose train RECIPE, or clpose demo) or pass a checkpoint"
        )
    return found[-1]
