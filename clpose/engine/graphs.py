"""CUDA graphs for inference: at batch 1 a GPU waits on kernel launches, not arithmetic (so a network with fewer MACs
need not be faster there: docs/benchmarks.md "GPU speed"). A graph
captured once per input shape replays all of a forward's kernels with one launch.

`GraphedForward` wraps a model's forward: one graph per input shape, captured at the first call with that shape
(a few warm-up calls on a side stream first, as torch.cuda.graphs asks); batches are padded up to the next power
of two so that a video whose number of people changes from frame to frame needs a handful of graphs, not one per
count. Where graphs cannot be used (not CUDA, a capture that fails, too many shapes) it calls the model
directly and says why once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clpose.console import warn
from clpose.errors import first_line
from clpose.precision import Precision

Replay = Callable[[], None]
# capture(forward, static_input) -> (replay, static_output): the CUDA one below; tests pass a stand-in
Capture = Callable[[Callable[[torch.Tensor], Any], torch.Tensor], tuple[Replay, Any]]


def graphs_unavailable(device: torch.device) -> str | None:
    """Why CUDA graphs cannot be used on `device`, or None when they can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device ({device} is not one)"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def cuda_capture(forward: Callable[[torch.Tensor], Any], static_input: torch.Tensor) -> tuple[Replay, Any]:
    """Warm up on a side stream (cuDNN picks its algorithms, allocations settle), then capture one forward on that
    stream, all on the input's GPU (torch.cuda.graph's default capture stream belongs to whichever device was
    current when it was first made, which need not be this one)."""
    with torch.cuda.device(static_input.device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                forward(static_input)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            static_output = forward(static_input)
    return graph.replay, static_output


@dataclass
class _Graph:
    static_input: torch.Tensor
    static_output: Any
    replay: Replay


class GraphedForward:
    """`model(x)` in `precision` under inference mode, replayed from CUDA graphs.

    Args:
        model: the network (eval mode; its weights must not change while graphs exist).
        device: where it runs; anything but CUDA calls the model directly.
        precision: the autocast the graphs are captured in.
        max_graphs: shapes kept; a further shape runs eagerly.
        pad_batch: pad the batch to the next power of two (bounds the number of graphs).
        capture: the capture function (the CUDA one by default).
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str,
        precision: Precision,
        max_graphs: int = 8,
        pad_batch: bool = True,
        capture: Capture | None = None,
    ) -> None:
        self.model, self.device, self.precision = model, torch.device(device), precision
        self.max_graphs, self.pad_batch = max_graphs, pad_batch
        self.reason = None if capture is not None else graphs_unavailable(self.device)
        self._capture = capture or cuda_capture
        self._graphs: dict[tuple, _Graph] = {}
        self._eager_only: set[tuple] = set()
        self._told = False

    def _key(self, x: torch.Tensor) -> tuple:
        size = 1 << max(0, x.shape[0] - 1).bit_length() if self.pad_batch else x.shape[0]  # next power of two
        return (size, *x.shape[1:], x.dtype, x.is_contiguous(memory_format=torch.channels_last))

    def replays(self, x: torch.Tensor) -> bool:
        """Whether an input like `x` runs from a captured graph (False before its first call)."""
        return self.active and self._key(x) in self._graphs

    @property
    def active(self) -> bool:
        return self.reason is None

    def _eager(self, x: torch.Tensor) -> Any:
        # no autocast cache: a captured graph must cast the weights itself, not read cached copies that are freed
        # when the caller's autocast exits
        with torch.inference_mode(), self.precision.autocast(self.device, cache=False):
            return self.model(x)

    def _say_why(self) -> None:
        if not self._told and self.reason:
            self._told = True
            warn(f"running without CUDA graphs: {self.reason}")

    def __call__(self, x: torch.Tensor) -> Any:
        if self.reason is not None:
            self._say_why()
            return self._eager(x)
        n = x.shape[0]
        key = self._key(x)
        size = key[0]
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= self.max_graphs or key in self._eager_only:
                return self._eager(x)  # an unusual shape, or one whose graph does not fit in memory
            static = torch.zeros((size, *x.shape[1:]), dtype=x.dtype, device=x.device)
            if key[-1]:
                static = static.contiguous(memory_format=torch.channels_last)
            try:
                replay, out = self._capture(self._eager, static)
            except torch.cuda.OutOfMemoryError:  # the graph's memory pool comes on top of the forward's: this shape
                self._eager_only.add(key)  # runs eagerly, the others keep their graphs
                warn(f"no CUDA graph for input {tuple(static.shape)}: out of memory while capturing (runs eagerly)")
                return self._eager(x)
            except RuntimeError as e:
                self.reason = f"capturing a graph for input {tuple(static.shape)} failed ({first_line(e)})"
                self._graphs.clear()
                self._say_why()
                return self._eager(x)
            graph = self._graphs[key] = _Graph(static, out, replay)
        graph.static_input[:n].copy_(x)
        if n < size:
            graph.static_input[n:].zero_()
        graph.replay()
        # the next replay overwrites the graph's output: hand out copies of the rows asked for
        return _map_tensors(graph.static_output, lambda t: t[:n].clone())


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value
