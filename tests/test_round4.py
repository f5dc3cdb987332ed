"""Issue 31, the re-run of round 4's classes (docs/reliability.md, "Round 4"): the defects a second adversarial pass
found in the first fixes, each at its root, with its repro as a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import one_line_error
from PIL import Image
from typer.testing import CliRunner

import clpose.demo as demo
from clpose.cli.app import app
from clpose.data.prepare import run_prepare
from clpose.errors import ClposeError
from clpose.outputs import OwnedFolder

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    run_prepare("synthetic", root, root, synthetic={"train": 8, "val": 4, "size": 64, "workers": 1}, show=False)
    return root


@pytest.fixture(scope="module")
def recipe(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_text(
        f"model: {{name: clnet_resnet10}}\ndata: {{dataset: synthetic, root: {data}, input_size: 64x64, "
        "num_workers: 0}\ntrain: {epochs: 1, batch_size: 4, amp: off}\neval: {batch_size: 4, flip: false}\n"
    )
    return path


@pytest.fixture(scope="module")
def run(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# -- class 1: what clpose did not write ------------------------------------------------------------------------------


def _photo(path: Path) -> bytes:
    cv2.imwrite(str(path), np.full((20, 20, 3), 200, np.uint8))
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("curves.png", None),  # a photo of the user's: a run's name, not a run's file
        ("metrics.jsonl", '{"epoch": 1, "note": "another tool"}\n'),
        ("run.json", '{"runs": [{"run_id": 7}]}\n'),
        ("run.json", '{"run_id": "mine"}\n'),
    ],
)
def test_a_file_named_like_a_runs_is_not_the_runs_without_the_runs_identity(
    recipe: Path, tmp_path: Path, name: str, text: str | None
) -> None:
    out = tmp_path / "x"
    out.mkdir()
    if text is None:
        before = _photo(out / name)
    else:
        (out / name).write_text(text)
        before = (out / name).read_bytes()
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    one_line_error(result, f"--out {out} holds {name}, which clpose train did not write")
    assert (out / name).read_bytes() == before


def test_a_resolved_recipe_of_another_run_copied_and_edited_is_the_users(
    recipe: Path, run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "g"
    out.mkdir()
    mine = out / "recipe.yaml"
    mine.write_text((run / "recipe.yaml").read_text() + "# my note\n")
    before = mine.read_bytes()
    result = runner.invoke(app, ["train", str(mine), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mine.read_bytes() == before and (out / "recipe.resolved.yaml").is_file()
    again = runner.invoke(app, ["train", str(mine), "--out", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert mine.read_bytes() == before  # and still after the run it made is replaced


def test_the_users_lock_and_replaced_folders_are_not_the_runs(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    (out / ".replaced-photos").mkdir(parents=True)
    (out / ".replaced-photos" / "f.jpg").write_bytes(b"a photo")
    (out / ".lock").write_text("my notes")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / ".lock").read_text() == "my notes"
    assert (out / ".replaced-photos" / "f.jpg").read_bytes() == b"a photo"
    again = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--overwrite"])
    assert again.exit_code == 0 and (out / ".replaced-photos" / "f.jpg").is_file()


def test_the_demo_lists_an_entry_only_when_it_comes_to_write_it(tmp_path: Path, monkeypatch) -> None:
    """Stopped while it trains: only data and plan.json are listed, so a train/ and a summary.json the user makes
    afterwards are theirs, and `--fresh` refuses them instead of removing them."""
    out = tmp_path / "dm"
    monkeypatch.setattr(demo, "_prepare", lambda *args: (out / "data").mkdir(parents=True, exist_ok=True))
    monkeypatch.setattr(demo, "_plan", lambda *args: (1, 4))

    def stopped(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_train", stopped)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(out, minutes=0.05)
    assert OwnedFolder(out, "demo", demo.DEMO_ENTRIES).written() == ["data", "plan.json", "train"]
    (out / "eval.json").write_text("{}")  # the user's, under a name the demo had not reached
    with pytest.raises(ClposeError, match=r"holds eval\.json, which clpose demo did not write"):
        demo.run_demo(out, minutes=0.05, fresh=True)
    assert (out / "eval.json").read_text() == "{}"


def test_prepare_replaces_only_records_and_summaries_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "train.json").write_text('{"mine": 1}')
    args = ["prepare", "synthetic", "--out", str(out), "--train", "2", "--val", "2", "--size", "64", "--workers", "1"]
    one_line_error(runner.invoke(app, args), f"--out {out} holds train.json, which clpose prepare did not write")
    assert (out / "train.json").read_text() == '{"mine": 1}' and not (out / "images").exists()
    (out / "train.json").unlink()
    for _ in range(2):  # its own, again and again
        assert runner.invoke(app, args).exit_code == 0


def test_the_files_named_after_a_clip_replace_only_clip_files(tmp_path: Path) -> None:
    q = tmp_path / "q"
    q.mkdir()
    (q / "clip.json").write_text('{"mine": 1}')
    args = ["prepare", "synthetic", "--out", str(tmp_path / "d"), "--train", "2", "--val", "2", "--size", "64",
            "--workers", "1", "--video", str(q / "clip.mp4"), "--frames", "3"]  # fmt: skip
    one_line_error(runner.invoke(app, args), f"{q} holds clip.json, which clpose prepare --video did not write")
    assert (q / "clip.json").read_text() == '{"mine": 1}' and not (tmp_path / "d").exists()
    (q / "clip.json").unlink()
    for _ in range(2):
        assert runner.invoke(app, args).exit_code == 0
    assert json.loads((q / "clip.json").read_text())["skeleton"] == "synthetic"


# -- class 2: TIFF ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_is_turned_once_as_a_viewer_shows_it(tmp_path: Path, orientation: int) -> None:
    """OpenCV's TIFF decoder (and a recent Pillow) turn a TIFF by its tag themselves: it was turned twice."""
    from clpose.inference.photos import load_photo

    stored = np.random.default_rng(orientation).integers(0, 255, (40, 70, 3)).astype(np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "o.tif", tiffinfo={0x0112: orientation})
    image.save(tmp_path / "o.png", exif=exif)
    tiff, said = load_photo(tmp_path / "o.tif")
    png, _ = load_photo(tmp_path / "o.png")
    assert said == orientation and tiff.shape == png.shape and np.array_equal(tiff, png)


# -- classes 4, 5, 6, 8 ----------------------------------------------------------------------------------------------


def test_a_validation_split_nobody_can_be_scored_on_is_refused_before_training(
    recipe: Path, data: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "d"
    copy.mkdir()
    for name in ("train.json", "summary.json"):
        (copy / name).write_text((data / name).read_text())
    valid = json.loads((data / "valid.json").read_text())
    for person in valid["people"]:  # the torso joints (left shoulder, right hip) unlabelled everywhere
        for j in (13, 2):
            person["keypoints"][j] = [0.0, 0.0, 0]
    (copy / "valid.json").write_text(json.dumps(valid))
    (copy / "images").symlink_to(data / "images")
    out = tmp_path / "tz"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--set", f"data.root={copy}"])
    one_line_error(result, "the valid split cannot be scored with pck")
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


def test_a_pretrained_file_of_nan_weights_is_refused_by_name(recipe: Path, tmp_path: Path) -> None:
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    state["conv1.weight"][:] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "r"), "--set",
                                 "model.name=clnet_resnet18", "--set", f"model.pretrained={path}"])  # fmt: skip
    one_line_error(result, f"pretrained weights {path}: its weights are not finite (conv1.weight holds")


def test_detected_boxes_of_a_non_coco_run_are_one_clear_line(run: Path, tmp_path: Path) -> None:
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0}]))
    one_line_error(runner.invoke(app, ["eval", str(run), "--boxes", str(dets)]),
                   f"--boxes {dets}: detected person boxes are evaluated on COCO")  # fmt: skip


def test_sizes_and_workers_past_what_a_machine_has_are_one_line_or_capped(tmp_path: Path) -> None:
    base = ["prepare", "synthetic", "--out", str(tmp_path / "big"), "--train", "1", "--val", "1"]
    one_line_error(runner.invoke(app, [*base, "--size", "200000"]), "--size must be between 64 and 4096")
    one_line_error(runner.invoke(app, [*base, "--workers", "0"]), "--workers must be >= 1")
    result = runner.invoke(app, [*base, "--size", "64", "--workers", "99999"])  # one per image and core at most
    assert result.exit_code == 0, result.output
    one_line_error(runner.invoke(app, ["bench", "--model", "clnet_resnet10", "--input-size", "64x64", "--batch",
                                       "99999999999", "--fps"]), "--batch 99999999999: more memory than")  # fmt: skip


def test_an_output_folder_that_cannot_be_written_is_said_before_any_work(tmp_path: Path, monkeypatch) -> None:
    """`bench --json ro/b.json` measured everything, then failed. Every command's outputs are tried first (a stand-in
    raises as a read-only folder does: the tests may run as root, whom permissions do not stop)."""
    import tempfile

    import clpose.outputs as outputs

    real = tempfile.TemporaryFile
    ro = tmp_path / "ro"
    ro.mkdir()

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == ro:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", read_only)
    measured = []
    import clpose.speed.bench as bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: measured.append(1))
    result = runner.invoke(app, ["bench", "--model", "clnet_resnet10", "--fps", "--json", str(ro / "b.json")])
    one_line_error(result, f"--json {ro / 'b.json'}: {ro} cannot be written (Permission denied)")
    assert measured == []


def test_names_that_are_not_utf8_are_written(run: Path, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / os.fsdecode(b"o\xfe.png")
    result = runner.invoke(app, ["infer", str(image), "--checkpoint", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert os.fsencode(out.name) in os.listdir(os.fsencode(str(tmp_path)))


def test_a_terminal_that_cannot_show_a_name_gets_replacement_characters(run: Path, tmp_path: Path) -> None:
    image = tmp_path / "фото.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    argv = [sys.executable, "-m", "clpose", "infer", str(image), "--checkpoint", str(run), "--out",
            str(tmp_path / "вых.png")]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert (tmp_path / "вых.png").is_file() and b"?" in done.stdout
