"""Does a checkpoint fit the recipe that would continue it? Another model (name or weights), optimizer or skeleton is
refused in one line naming the checkpoint and every difference, before anything in the run folder is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clpose.config import Recipe
from clpose.errors import ClposeError


def check_fits(
    path: Path, state: dict, recipe: Recipe, module: torch.nn.Module, optimizer: torch.optim.Optimizer, skeleton: str
) -> None:
    """Refuse, in one line naming `path` and what differs, a checkpoint that cannot continue `recipe`: another model
    (name or weights), optimizer or skeleton. Called before anything in the run folder is written."""
    saved = state.get("recipe") if isinstance(state.get("recipe"), dict) else {}
    differs = []
    name = state.get("model_name") or (saved.get("model") or {}).get("name")
    if name and name != recipe.model.name:
        differs.append(f"model {name} (the recipe: {recipe.model.name})")
    elif weights := _weight_differences(state.get("model"), module.state_dict()):
        differs.append(weights)
    kind = (saved.get("train") or {}).get("optimizer")
    if kind and kind != recipe.train.optimizer:
        differs.append(f"optimizer {kind} (the recipe: {recipe.train.optimizer})")
    elif groups := _optimizer_differences(state.get("optimizer"), optimizer.state_dict()):
        differs.append(groups)
    if state.get("skeleton") and state["skeleton"] != skeleton:
        differs.append(f"skeleton {state['skeleton']} (the data: {skeleton})")
    if differs:
        raise ClposeError(f"checkpoint {path} does not fit this recipe: {'; '.join(differs)}")


def _weight_differences(saved: Any, own: dict[str, torch.Tensor]) -> str:
    if not isinstance(saved, dict):
        return "it holds no model weights"
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shaped = [k for k in own if k in saved and tuple(getattr(saved[k], "shape", ())) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if shaped:
        k = shaped[0]
        example = f"{k} {tuple(saved[k].shape)}, the model's {tuple(own[k].shape)}"
        parts.append(f"{len(shaped)} of another shape (e.g. {example})")
    return f"model weights: {', '.join(parts)}" if parts else ""


def _optimizer_differences(saved: Any, own: dict) -> str:
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list):
        return "it holds no optimizer state"
    theirs = [len(g.get("params", [])) for g in saved["param_groups"]]
    ours = [len(g["params"]) for g in own["param_groups"]]
    return "" if theirs == ours else f"optimizer state for parameter groups of {theirs} tensors (the model's: {ours})"
