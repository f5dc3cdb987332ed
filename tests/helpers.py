"""Small helpers shared by the test files: the one-line-error check of the CLI and a checkpoint writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clpose import __version__
from clpose.config import Recipe, recipe_to_dict
from clpose.engine.checkpoint import save_checkpoint


def one_line_error(result: Any, *fragments: str) -> str:
    """The one red line of a ClposeError (exit code 2, no traceback), checked to hold every fragment."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_checkpoint(
    path: Path, recipe: Recipe, weights: dict, skeleton: str, num_keypoints: int, **extra: Any
) -> Path:
    """What training writes, minus the optimiser: enough for eval, infer and export to rebuild the model."""
    state = {
        "model": weights,
        "recipe": recipe_to_dict(recipe),
        "version": __version__,
        "epoch": 1,
        "num_keypoints": num_keypoints,
        "skeleton": skeleton,
        "model_name": recipe.model.name,
        **extra,
    }
    save_checkpoint(path, state)
    return path


def fit_recipe(path: Path, text: str, out: Path) -> Path:
    """Write a recipe and train it on the CPU, quietly; the run folder."""
    from clpose.config import load_recipe
    from clpose.training.loop import fit

    path.write_text(text)
    return fit(load_recipe(path), out=out, device="cpu", show_progress=False).run_dir
