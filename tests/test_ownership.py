"""Nothing clpose did not write is deleted or replaced (issue 31, class 1): `clpose demo --fresh` removes only what
the demo's manifest lists, the demo refuses a folder of the user's, and `prepare --video` checks the files named after
the clip (X.mp4 -> X.json, X.boxes.json) against the records it writes, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import one_line_error
from typer.testing import CliRunner

import clpose.demo as demo
from clpose.cli.app import app
from clpose.errors import ClposeError
from clpose.outputs import OwnedFolder

runner = CliRunner()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_runs(root: Path) -> dict[str, bytes]:
    """A folder of the user's: two runs and a notes file, none written by the demo."""
    for name in ("mpii_r50", "train"):
        (root / name).mkdir(parents=True)
        (root / name / "best.pt").write_bytes(b"weights of " + name.encode())
    (root / "notes.txt").write_text("keep me")
    return _tree(root)


@pytest.mark.parametrize("fresh", [True, False])
def test_demo_into_a_folder_of_the_users_is_refused_and_nothing_is_deleted(tmp_path: Path, fresh: bool) -> None:
    runs = tmp_path / "runs"
    before = _user_runs(runs)
    args = ["demo", "--out", str(runs), "--minutes", "1"] + (["--fresh"] if fresh else [])
    result = runner.invoke(app, args)
    one_line_error(result, f"--out {runs}", "train", "clpose demo did not write")
    assert _tree(runs) == before  # not one file removed, added or changed (no manifest either)


def test_fresh_removes_only_what_the_manifest_lists(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    folder = OwnedFolder(out, "demo", demo.DEMO_ENTRIES)
    folder.claim()
    folder.record(["data", "eval.json"])
    (out / "data" / "sub").mkdir(parents=True)
    (out / "data" / "sub" / "img.jpg").write_bytes(b"x")
    (out / "eval.json").write_text("{}")
    (out / "mine.txt").write_text("the user's")  # not a name of the demo's
    (out / "other").mkdir()
    (out / "other" / "best.pt").write_bytes(b"w")
    assert OwnedFolder(out, "demo", demo.DEMO_ENTRIES).clear() == ["data", "eval.json"]
    assert sorted(p.name for p in out.iterdir()) == [".clpose-demo.json", "mine.txt", "other"]
    assert (out / "other" / "best.pt").read_bytes() == b"w"
    assert json.loads((out / ".clpose-demo.json").read_text())["wrote"] == []


def test_an_entry_the_manifest_does_not_list_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    folder = OwnedFolder(out, "demo", demo.DEMO_ENTRIES)
    folder.claim()
    folder.record(["data"])
    (out / "train").mkdir()  # the user's own folder of that name, put there after the demo ran
    with pytest.raises(ClposeError, match=r"holds train, which clpose demo did not write"):
        OwnedFolder(out, "demo", demo.DEMO_ENTRIES).claim()


def test_a_manifest_lists_only_the_commands_names(tmp_path: Path) -> None:
    """A manifest edited to list `..` or another folder removes nothing outside the command's names."""
    out = tmp_path / "demo"
    (out / "keep").mkdir(parents=True)
    (tmp_path / "outside").mkdir()  # (never "/" or ".." here: a broken filter must not be able to do harm)
    (out / ".clpose-demo.json").write_text(json.dumps({"wrote": ["keep", "../outside", "data"]}))
    assert OwnedFolder(out, "demo", demo.DEMO_ENTRIES).clear() == []
    assert (out / "keep").is_dir() and (tmp_path / "outside").is_dir()


def test_a_demo_folder_of_an_older_clpose_is_adopted(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "train").mkdir(parents=True)
    (out / "plan.json").write_text(
        json.dumps({"minutes": 1, "train": 400, "samples_per_s": 50.0, "epochs": 2, "train_per_epoch": 400})
    )
    folder = OwnedFolder(out, "demo", demo.DEMO_ENTRIES, legacy=demo._older_demo)
    folder.claim()
    assert set(folder.written()) == set(demo.DEMO_ENTRIES)
    assert folder.clear() == ["plan.json", "train"]


def test_an_empty_or_new_folder_is_claimed(tmp_path: Path) -> None:
    for out in (tmp_path / "new" / "deeper", tmp_path):
        folder = OwnedFolder(out, "demo", demo.DEMO_ENTRIES)
        folder.claim()
        assert folder.manifest.is_file() and folder.written() == []


@pytest.mark.parametrize("name", ["valid", "train", "summary"])
def test_prepare_video_never_replaces_the_records_it_writes(tmp_path: Path, name: str) -> None:
    """`--video D/valid.mp4` would write D/valid.json, the validation records: refused before any work."""
    out = tmp_path / "d"
    args = ["prepare", "synthetic", "--out", str(out), "--train", "2", "--val", "2", "--size", "64"]
    result = runner.invoke(app, [*args, "--video", str(out / f"{name}.mp4"), "--frames", "2"])
    one_line_error(result, f"{out / name}.json", "names the same file as")
    assert not out.exists() or not any(out.iterdir())


def test_prepare_video_writes_the_clip_and_its_files_together(tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["prepare", "synthetic", "--out", str(out), "--train", "2", "--val", "2", "--size", "64", "--workers", "1"]
    result = runner.invoke(app, [*args, "--video", str(out / "clip.mp4"), "--frames", "3"])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "clip.json").read_text())
    assert len(truth["frames"]) == 3 and truth["skeleton"] == "synthetic"
    assert {b["image_id"] for b in json.loads((out / "clip.boxes.json").read_text())} == {0, 1, 2}
    assert json.loads((out / "valid.json").read_text())["skeleton"] == "synthetic"  # the records, untouched


def test_prepare_video_checks_its_options_before_the_data_is_made(tmp_path: Path) -> None:
    out = tmp_path / "d"
    result = runner.invoke(
        app, ["prepare", "synthetic", "--out", str(out), "--video", str(tmp_path / "c.mp4"), "--frames", "0"]
    )
    one_line_error(result, "--frames must be >= 1")
    assert not out.exists()


def test_the_synthetic_generator_never_writes_into_an_images_folder_of_the_users(tmp_path: Path) -> None:
    from clpose.data.prepare import run_prepare

    mine = tmp_path / "mine"
    (mine / "images" / "train").mkdir(parents=True)
    (mine / "images" / "train" / "00000.jpg").write_bytes(b"my photo")
    with pytest.raises(ClposeError, match=r"holds images, which clpose prepare synthetic did not write"):
        run_prepare("synthetic", mine, mine, synthetic={"train": 2, "val": 2, "size": 64, "workers": 1}, show=False)
    assert (mine / "images" / "train" / "00000.jpg").read_bytes() == b"my photo"
    ours = tmp_path / "ours"
    for _ in range(2):  # its own folder, again
        run_prepare("synthetic", ours, ours, synthetic={"train": 2, "val": 2, "size": 64, "workers": 1}, show=False)
    assert len(list((ours / "images" / "train").iterdir())) == 2


def test_a_loop_of_links_as_an_output_or_an_input_is_one_line(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from clpose.outputs import check_outputs

    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    for outputs, inputs in (({"--json": loop}, {}), ({"--json": tmp_path / "a.json"}, {"--boxes": loop})):
        with pytest.raises(ClposeError, match=r"loop\.json is a loop of symbolic links"):
            check_outputs(outputs, inputs)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["infer", str(image), "--json", str(loop)])
    one_line_error(result, "loop.json is a loop of symbolic links")
