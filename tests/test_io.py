"""Atomic writes: a failed writer leaves the previous file and no temporary file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from clpose.io import atomic_open, atomic_path, write_json, write_text


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "records.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write('{"half": ')
        raise RuntimeError("interrupted")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["records.json"]


def test_atomic_path_keeps_the_suffix_and_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.png"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == target.parent
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError
    assert target.read_bytes() == b"png" and len(list(target.parent.iterdir())) == 1


def test_write_text(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_written_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_json_is_strict_json_with_null_for_undefined_numbers(tmp_path) -> None:
    """A metric can be undefined (a joint never labelled in a split): null, never a NaN token; NumPy scalars
    and arrays become plain numbers and lists."""
    import json
    import math

    import numpy as np

    from clpose.io import write_json

    path = tmp_path / "r.json"
    write_json(path, {"Ankle": math.nan, "Mean": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True),
                      "rows": np.array([1.0, np.inf]), "t": (1, -math.inf)})  # fmt: skip
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"Ankle": None, "Mean": 0.5, "n": 3, "ok": True, "rows": [1.0, None], "t": [1, None]}
