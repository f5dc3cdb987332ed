"""Shared fixtures: the real sample data beside the repository (skipped where it is absent)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# h5py's HDF5 loaded after OpenVINO, ONNX Runtime and the data pipeline's libraries in one process segfaults in
# h5py.File on this stack (torch 2.14, openvino 2026.4, onnxruntime 1.32, h5py 3.16 / HDF5 2.0: a graph test, a
# pipeline test, then an .h5 test; not under gdb; not when h5py is loaded first). A user's `clpose eval --predictions
# x.h5` loads no runtime; the suite loads everything, so h5py is loaded first here.
with contextlib.suppress(ImportError):  # without it the .h5 tests skip with their reason
    import h5py  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    """../shared/realdata, or a skip where the sample data is not beside the repository (a user's machine) or
    CLPOSE_NO_REALDATA=1 hides it (dev/mutate.py: does the suite guard every convention without the real files?)."""
    if os.environ.get("CLPOSE_NO_REALDATA") == "1":
        pytest.skip("CLPOSE_NO_REALDATA=1: the real sample data is hidden")
    if not REALDATA.is_dir():
        pytest.skip(f"real sample data not found at {REALDATA}")
    return REALDATA


@pytest.fixture(autouse=True)
def fp32_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run in fp32 on every CPU: `amp: auto` resolves here as on a CPU without native bf16 (as on CI), so
    a test gives the same numbers on an AMX machine as on an AVX2 one. Tests about bf16 ask for it explicitly;
    tests/test_precision.py restores the real detection. Subprocesses see the real machine."""
    import clpose.precision

    monkeypatch.setattr(clpose.precision, "cpu_native_bf16", lambda: (False, "tests run in fp32 (tests/conftest.py)"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test touches the network: clpose.weights is offline (tests that download serve the files from 127.0.0.1
    and turn this off), and torch.hub's cache is an empty folder of the test session, so that weights a developer
    has cached change no result. Subprocesses inherit both."""
    monkeypatch.setenv("CLPOSE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))
    # the user's cache (graphs of read-only run folders, the record of checked graphs): the test session's own
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg_cache"))
    monkeypatch.delenv("CLPOSE_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("CLPOSE_RUNTIME", "torch")  # `clpose infer` tests run torch; tests/test_runtimes.py the others


@pytest.fixture
def one_torch_thread():
    """For tests of tiny tensors: one intra-op thread costs little on an idle machine and avoids OpenMP's spinning
    threads, which make them 10x slower when another process shares the 2 cores. Restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A server, an empty torch hub cache, the network allowed (conftest turns it off)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("CLPOSE_OFFLINE")
    from helpers import Server

    s = Server()
    yield s
    s.close()
