"""Small helpers shared by the test files: the one-line-error check of the CLI and a checkpoint writer."""

from __future__ import annotations

import http.server
import threading
import time
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


def synthetic_checkpoint(path: Path, model: str = "clnet_resnet18", size: str = "64x64") -> Path:
    """A freshly initialised (seed 0) composite model for the synthetic skeleton, as a checkpoint."""
    import torch

    from clpose.models import build_model
    from clpose.recipes import recipe_from_dict

    recipe = recipe_from_dict(
        {
            "model": {"name": model},
            "data": {"dataset": "synthetic", "root": "unused", "input_size": size},
            "codec": {"name": "composite"},
            "loss": {"name": "composite"},
        },
        name="test",
    )
    torch.manual_seed(0)
    return write_checkpoint(path, recipe, build_model(model, 16).state_dict(), "synthetic", 16)


def fit_recipe(path: Path, text: str, out: Path) -> Path:
    """Write a recipe and train it on the CPU, quietly; the run folder."""
    from clpose.recipes import load_recipe
    from clpose.training.loop import fit

    path.write_text(text)
    return fit(load_recipe(path), out=out, device="cpu", show_progress=False).run_dir


class Server:
    """Files served from memory by a ThreadingHTTPServer on 127.0.0.1: `files` name -> bytes; `requests` counts the
    GETs per name; `mode` "ok", "truncate" (Content-Length of the whole file, then half of it and a closed
    connection), "slow" (a pause before sending, so that two clients overlap), "trickle" (the headers, then one byte
    every `interval` seconds), "trickle-headers" (the status line, then a header one byte at a time), "silent"
    (the connection accepted, nothing ever sent) or "endless" (no Content-Length, zeros until stopped)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: dict[str, int] = {}
        self.mode = "ok"
        self.interval = 0.05
        self.stopping = threading.Event()  # set at close: a trickling handler stops
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def trickle(self, data: bytes) -> None:
                for i in range(len(data)):
                    if server.stopping.wait(server.interval):
                        return
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests[name] = server.requests.get(name, 0) + 1
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                if server.mode == "slow":
                    time.sleep(1.0)
                if server.mode == "silent":
                    server.stopping.wait(30)
                    return
                if server.mode == "endless":  # no Content-Length, zeros for ever
                    self.send_response(200)
                    self.end_headers()
                    while not server.stopping.is_set():
                        try:
                            self.wfile.write(bytes(1 << 16))
                        except OSError:  # the client hung up
                            return
                    return
                if server.mode == "trickle-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    self.trickle(b"X-Pad: " + b"a" * 1000 + b"\r\n")
                    return
                if server.mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.trickle(data)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if server.mode == "truncate" else data)
                if server.mode == "truncate":
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
