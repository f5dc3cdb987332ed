"""The run folder: which folder a training writes, who may write it, and what may continue it.

One rule for every command that trains (`clpose train`, `clpose demo`), kept here and nowhere else:

- A folder *holds a run* when it holds a checkpoint (last.pt or best.pt). recipe.yaml, metrics.jsonl or curves.png
  without one are what a run left when it stopped before finishing an epoch: a new start replaces them.
- Every run has an id, written in run.json and in every checkpoint it saves. A folder is continued only by
  checkpoints of its own run; a checkpoint of an older clpose (no id) only from its own folder. A checkpoint of
  another run starts a *branch* in a new or empty folder: the source's metrics up to the checkpoint's epoch and its
  best.pt come along, and run.json records where it branched from.
- One process writes a folder at a time (clpose.training.lock).
- Nothing in the folder changes before the new run's setup and its checkpoint check (clpose.training.fits) have
  passed (`commit`); then
  the files of an earlier run (--overwrite) or of a run that never finished an epoch leave together.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clpose.config import Recipe
from clpose.console import warn
from clpose.engine.checkpoint import load_checkpoint, save_checkpoint
from clpose.errors import ClposeError, first_line
from clpose.io import write_json, write_text
from clpose.training.lock import RunLock

CHECKPOINTS = ("last.pt", "best.pt")
RUN_JSON = "run.json"
RECIPE = "recipe.yaml"  # the run's resolved recipe ...
RECIPE_BESIDE = "recipe.resolved.yaml"  # ... or this where recipe.yaml is the user's (train exp/recipe.yaml --out exp)
RECIPE_HEADER = "# clpose train: the resolved recipe of run "
_OLD_RECIPE_HEADER = "# train.amp "  # the first line of a resolved recipe before RECIPE_HEADER
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "curves.png", RECIPE, RECIPE_BESIDE, RUN_JSON)  # a run's files
_TRASH = ".clpose-replaced-"  # an old run's files move into this folder together, then it is deleted
_RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # new_run_id()


def make_run_dir(recipe: Recipe, out: Path | None, resume: str | None, runs: Path = Path("runs")) -> Path:
    """The folder a training writes: --out; with --resume FILE, FILE's own folder; with --resume auto, the newest
    runs/NAME[-N] holding last.pt (else the newest whose run never finished an epoch); otherwise runs/NAME, numbered
    -2, -3, ... when it exists."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ClposeError(f"--out {out} is a file, not a run folder")
        return out
    if resume and resume != "auto":
        return Path(resume).parent
    base = runs / (recipe.name or "run")
    if resume == "auto":
        folders = [p for p in [base, *runs.glob(f"{base.name}-*")] if p.is_dir()]
        for marker in ("last.pt", RUN_JSON):  # a run to continue, else one to start again
            found = [p / marker for p in folders if (p / marker).is_file()]
            if found:
                return max(found, key=lambda p: p.stat().st_mtime).parent
        raise ClposeError(f"--resume auto: no {base}/last.pt (or {base}-N/last.pt) to continue from")
    if not base.exists():
        return base
    n = 2
    while (runs / f"{base.name}-{n}").exists():
        n += 1
    return runs / f"{base.name}-{n}"


def new_run_id() -> str:
    """A run's identity: when it started (sortable, readable) and 6 random hex digits."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def read_run_id(run_dir: Path) -> str | None:
    """The id in run_dir/run.json; None where there is none (a run of an older clpose, or no run)."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        return None
    try:
        run_id = json.loads(path.read_text(encoding="utf-8")).get("run_id")
    except (ValueError, AttributeError) as e:
        raise ClposeError(
            f"{path} cannot be read ({first_line(e)}): it names the run that {run_dir} holds; restore it, or remove "
            "it to let the folder's own checkpoints continue it"
        ) from None
    return str(run_id) if run_id else None


def read_rows(path: Path, upto: int) -> list[dict]:
    """The rows of metrics.jsonl up to epoch `upto`; a line torn by a kill while it was appended is dropped (the
    epoch it belonged to is trained again)."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warn(f"{path}: line {number} is torn (a kill while it was written): dropped")
    return [r for r in rows if isinstance(r, dict) and r.get("epoch", math.inf) <= upto]


# ------------------------------------------------------------------------------------------------------------
# what a training does with its folder


@dataclass
class RunPlan:
    """What a training does with its run folder: decided by rank 0 under the lock and shared with every rank."""

    run_dir: Path
    run_id: str
    checkpoint: Path | None = None  # what training resumes from (None: epoch 1)
    rows: list[dict] = field(default_factory=list)  # metrics.jsonl rows up to the checkpoint's epoch
    best: float | None = None  # None: the checkpoint's best_metric; NaN where a branch carries no best model
    replace: list[str] = field(default_factory=list)  # files of an earlier run, removed together at commit
    carry_best: Path | None = None  # a branch: the best.pt it copies in (with its own run id)
    branched_from: dict[str, Any] | None = None
    write_id: bool = True  # False where the folder's run.json already names this run
    recipe_name: str = RECIPE  # where the resolved recipe goes (RECIPE_BESIDE where recipe.yaml is the user's)
    notes: list[str] = field(default_factory=list)  # one line each, said when the run starts


def open_run(
    recipe: Recipe,
    out: Path | None,
    resume: str | None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    runs: Path = Path("runs"),
) -> tuple[RunPlan, RunLock, dict | None]:
    """Choose and lock the run folder, and decide what this training does with it. Nothing in the folder is changed
    (the lock file aside). Returns the plan, the held lock (release it when the run ends) and the checkpoint state
    it resumes from (None: epoch 1)."""
    if resume == "auto" and overwrite:
        raise ClposeError("--resume auto continues the run in the folder and --overwrite replaces it: give one of them")
    state = None
    if resume and resume != "auto":  # read first: a missing or damaged checkpoint leaves no folder behind
        state = load_checkpoint(resume, map_location=device)
    made = False
    if out is None and not resume:
        run_dir, made = _claim_numbered(recipe, runs), True
    else:
        run_dir = make_run_dir(recipe, out, resume, runs)
    lock = RunLock(run_dir, made).acquire()
    try:
        for stale in run_dir.glob(f"{_TRASH}????????"):  # an --overwrite killed while it deleted (we hold the lock)
            if stale.is_dir() and not stale.is_symlink():  # mkdtemp's name; nothing else of that name is touched
                shutil.rmtree(stale, ignore_errors=True)
        plan, state = _decide(run_dir, resume, overwrite, state, device)
    except BaseException:
        lock.release()
        raise
    return plan, lock, state


def _claim_numbered(recipe: Recipe, runs: Path) -> Path:
    """runs/NAME[-N], created here: mkdir is atomic, so two trainings started at once get two folders."""
    while True:
        path = make_run_dir(recipe, None, None, runs)
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            if not path.is_dir():
                raise


def _decide(
    run_dir: Path, resume: str | None, overwrite: bool, state: dict | None, device: torch.device | str
) -> tuple[RunPlan, dict | None]:
    held = [name for name in CHECKPOINTS if (run_dir / name).is_file()]
    leftovers, recipe_name = _files_of_runs(run_dir, resume)
    folder_id = read_run_id(run_dir)
    plan, state = _decide_plan(run_dir, resume, overwrite, state, device, held, leftovers, folder_id)
    plan.recipe_name = recipe_name
    if recipe_name == RECIPE_BESIDE:
        plan.notes.append(
            f"{run_dir / RECIPE} is not a run's (clpose did not write it): it stays as it is, and the "
            f"resolved recipe goes to {run_dir / RECIPE_BESIDE}"
        )
    return plan, state


def _decide_plan(
    run_dir: Path,
    resume: str | None,
    overwrite: bool,
    state: dict | None,
    device: torch.device | str,
    held: list[str],
    leftovers: list[str],
    folder_id: str | None,
) -> tuple[RunPlan, dict | None]:
    if resume is None:
        if held and not overwrite:
            raise ClposeError(
                f"--out {run_dir} already holds a run ({', '.join(held)}): continue it with --resume auto, choose "
                "another folder, or replace it with --overwrite"
            )
        plan = RunPlan(run_dir, new_run_id(), replace=leftovers)
        if held:
            plan.notes.append(f"{run_dir}: its earlier run is replaced ({', '.join(leftovers)} removed)")
        elif leftovers:
            plan.notes.append(f"{run_dir}: its run stopped before finishing an epoch (no checkpoint): starting again")
        return plan, None
    if resume == "auto":
        last = run_dir / "last.pt"
        if last.is_file():
            state = load_checkpoint(last, map_location=device)
            if not _same_run(last, state, run_dir, folder_id):
                raise ClposeError(
                    f"{last} is of run {state.get('run_id')} but {run_dir / RUN_JSON} names run {folder_id}: the "
                    "folder was mixed by hand; move the file that does not belong, or train into another --out"
                )
            return _continue(run_dir, last, state, folder_id), state
        if held:
            raise ClposeError(
                f"--resume auto: {last} does not exist ({run_dir} holds only best.pt): continue from it with "
                f"--resume {run_dir / 'best.pt'}"
            )
        why = "its run stopped before finishing an epoch" if leftovers else "no run has started there"
        note = f"--resume auto: {run_dir} holds no checkpoint ({why}): starting at epoch 1"
        return RunPlan(run_dir, new_run_id(), replace=leftovers, notes=[note]), None
    path = Path(resume)
    assert state is not None  # loaded by open_run
    if held and _same_run(path, state, run_dir, folder_id):
        if overwrite:
            raise ClposeError(f"--overwrite would delete {run_dir}, the run --resume {path} continues: leave it out")
        return _continue(run_dir, path, state, folder_id), state
    if held and not overwrite:
        theirs = f"run {folder_id}" if folder_id else "a run of an older clpose"
        ours = f"run {state['run_id']}" if state.get("run_id") else f"a run of {path.parent}"
        raise ClposeError(
            f"--out {run_dir} holds another run ({theirs}) than --resume {path} ({ours}): continue {run_dir} with "
            f"--resume auto, branch {path} into a new or empty --out, or replace {run_dir} with --overwrite"
        )
    return _branch(run_dir, path, state, leftovers), state


def _files_of_runs(run_dir: Path, resume: str | None = None) -> tuple[list[str], str]:
    """(the files in `run_dir` that a training wrote, where this run's resolved recipe goes). Only those files may
    be replaced; a file of a run's name that clpose did not write (a photo called curves.png, a hand-made
    metrics.jsonl, the user's own recipe.yaml) is never touched: recipe.yaml of the user's makes the run write
    RECIPE_BESIDE, anything else is a ClposeError naming it.

    A folder holds a run of clpose's when its run.json is one (a run id clpose made) or, for a run of a clpose before
    run.json, when a checkpoint there is one of clpose's. Its files are then the run's: a resolved recipe whose first
    line names that run, metrics rows of epochs, curves.png, the checkpoints. Without such a run nothing is."""
    run_id = _own_run_id(run_dir)
    # resuming, a checkpoint that cannot be read is said as such (not as a file of someone else's)
    legacy = run_id is None and any(_clpose_checkpoint(run_dir / name, resume is not None) for name in CHECKPOINTS)
    ours, recipe_name = [], RECIPE
    for name in RUN_FILES:
        path = run_dir / name
        if not (path.exists() or path.is_symlink()):
            continue
        if (run_id is not None or legacy) and _written_by_training(path, run_id):
            ours.append(name)
        elif name == RECIPE:
            recipe_name = RECIPE_BESIDE
        else:
            raise ClposeError(
                f"--out {run_dir} holds {name}, which clpose train did not write: a run writes its own {name} "
                "there; move the file, or train into another --out"
            )
    return ours, recipe_name


def _own_run_id(run_dir: Path) -> str | None:
    """The run id of run_dir/run.json where it is one clpose wrote ({"run_id": "DATE-TIME-HEX", "created": ...})."""
    path = run_dir / RUN_JSON
    if path.is_symlink() or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    run_id = value.get("run_id") if isinstance(value, dict) else None
    return run_id if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) and "created" in value else None


def _clpose_checkpoint(path: Path, strict: bool = False) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        state = load_checkpoint(path)
    except ClposeError:
        if strict:
            raise
        return False
    return isinstance(state, dict) and {"model", "epoch", "recipe"} <= state.keys()


def _written_by_training(path: Path, run_id: str | None) -> bool:
    """Whether a file of a run's name in a folder that holds a run (`run_id`: its id; None: a run of a clpose before
    run.json) is one a training wrote."""
    if path.is_symlink() or not path.is_file():
        return False
    if path.name == RUN_JSON:
        return run_id is not None
    if path.suffix == ".pt":
        return run_id is not None or _clpose_checkpoint(path)
    if path.suffix == ".png":
        return True
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.name in (RECIPE, RECIPE_BESIDE):
        header = f"{RECIPE_HEADER}{run_id}\n" if run_id is not None else _OLD_RECIPE_HEADER
        return text.startswith(header)
    lines = [line for line in text.splitlines() if line.strip()]  # metrics.jsonl: rows of epochs ...
    torn = bool(lines) and _metrics_row(lines[-1]) is None  # ... the last one perhaps cut short by a kill
    return all(_metrics_row(line) for line in lines[: len(lines) - torn])


def _metrics_row(line: str) -> bool | None:
    """Whether a line is a row of a training's metrics.jsonl; None where it is not JSON at all."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return isinstance(row, dict) and {"epoch", "metric", "lr"} <= row.keys()


def _same_run(path: Path, state: dict, run_dir: Path, folder_id: str | None) -> bool:
    """Whether checkpoint `path` belongs to the run in `run_dir`: by run id where both have one, else (a run of an
    older clpose) only where the checkpoint lies in that folder."""
    if state.get("run_id") and folder_id:
        return state["run_id"] == folder_id
    return path.resolve().parent == run_dir.resolve()


def _continue(run_dir: Path, path: Path, state: dict, folder_id: str | None) -> RunPlan:
    run_id = folder_id or state.get("run_id") or new_run_id()  # an older clpose's run gets its id now
    rows = read_rows(run_dir / "metrics.jsonl", int(state["epoch"]))
    return RunPlan(run_dir, run_id, checkpoint=path, rows=rows, write_id=folder_id is None)


def _branch(run_dir: Path, path: Path, state: dict, leftovers: list[str]) -> RunPlan:
    epoch = int(state["epoch"])
    rows = read_rows(path.parent / "metrics.jsonl", epoch)
    carry, said = _best_to_carry(path, state, rows)
    origin = {"checkpoint": str(path.resolve()), "run_id": state.get("run_id"), "epoch": epoch}
    note = f"branching {path} (epoch {epoch}) into {run_dir}: {said}; run.json records the branch"
    if any(name in leftovers for name in CHECKPOINTS):  # --overwrite
        note += f" (the earlier run there is replaced: {', '.join(leftovers)} removed)"
    return RunPlan(
        run_dir,
        new_run_id(),
        checkpoint=path,
        rows=rows,
        best=None if carry is not None else math.nan,
        replace=leftovers,
        carry_best=carry,
        branched_from=origin,
        notes=[note],
    )


def _best_to_carry(path: Path, state: dict, rows: list[dict]) -> tuple[Path | None, str]:
    """The best model of the source run up to the checkpoint's epoch, i.e. the one whose metric is the checkpoint's
    best_metric: its run's best.pt where that is not from a later epoch, else the checkpoint itself where it was the
    best. With neither, the branch has no best.pt until its first validation."""
    epoch, best = int(state["epoch"]), float(state.get("best_metric", -math.inf))
    history = f"its metrics up to epoch {epoch}" if rows else "no metrics.jsonl beside it"
    if path.name == "best.pt":
        return path, f"{history} and best.pt (this checkpoint) come along"
    other = path.parent / "best.pt"
    if other.is_file():
        theirs = load_checkpoint(other)
        if int(theirs["epoch"]) <= epoch and float(theirs.get("best_metric", math.nan)) == best:
            return other, f"{history} and its best.pt (epoch {int(theirs['epoch'])}) come along"
    row = next((r for r in rows if r.get("epoch") == epoch), None)
    if math.isfinite(best) and row is not None and row.get("value") == best:
        return path, f"{history} and best.pt (this checkpoint, the best so far) come along"
    return None, f"{history} come along; its best model up to epoch {epoch} is not at hand, so best.pt starts anew"


def commit(plan: RunPlan, recipe_text: str) -> None:
    """Write the run's identity and starting files, once its setup and checkpoint check have passed: the files of an
    earlier run leave first, together; a branch copies its best.pt in."""
    run_dir = plan.run_dir
    carried = load_checkpoint(plan.carry_best) if plan.carry_best is not None else None  # before it may be replaced
    if plan.replace:
        _remove_together(run_dir, plan.replace)
    if plan.write_id:
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(run_dir / RUN_JSON, {"run_id": plan.run_id, "created": created, "branched_from": plan.branched_from})
    if carried is not None:  # a best.pt of this run: it may continue the branch (--resume BRANCH/best.pt)
        carried.update(run_id=plan.run_id, branched_from=plan.branched_from)
        save_checkpoint(run_dir / "best.pt", carried)
    write_text(run_dir / plan.recipe_name, f"{RECIPE_HEADER}{plan.run_id}\n{recipe_text}")
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in plan.rows))


def _remove_together(run_dir: Path, names: list[str]) -> None:
    """Move the files into one hidden folder (renames: the old run is gone in an instant, never half), then delete it.
    A kill before the delete leaves only that folder, which the next start under the lock removes."""
    trash = Path(tempfile.mkdtemp(prefix=_TRASH, dir=run_dir))
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.replace(run_dir / name, trash / name)
    shutil.rmtree(trash, ignore_errors=True)
