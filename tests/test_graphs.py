"""CUDA-graph replay (clpose.engine.graphs) with a stand-in capture: shapes, padding, copies, fallbacks. The CUDA
capture itself needs a GPU (docs/benchmarks.md has the measured runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clpose.engine.graphs import GraphedForward, graphs_unavailable
from clpose.precision import FP32


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.conv(x)
        return [y, y.mean(dim=(2, 3))]


class FakeCapture:
    """Stands in for a CUDA graph: 'capture' runs the forward once; 'replay' reruns it on the static input and
    writes into the same output tensors, as a graph does."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, forward, static_input):
        self.shapes.append(tuple(static_input.shape))
        first = forward(static_input)
        single = isinstance(first, torch.Tensor)
        outputs = [o.clone() for o in ([first] if single else first)]

        def replay() -> None:
            new = forward(static_input)
            for held, value in zip(outputs, [new] if single else new, strict=True):
                held.copy_(value)

        return replay, outputs[0] if single else outputs


def test_replay_matches_eager_with_padding_and_one_graph_per_padded_shape() -> None:
    torch.manual_seed(0)
    model = TwoHeads().eval()
    capture = FakeCapture()
    graphed = GraphedForward(model, "cpu", FP32, capture=capture)
    first = None
    for n in (1, 3, 4, 5, 3, 1):
        x = torch.randn(n, 3, 8, 6)
        got = graphed(x)
        with torch.no_grad():
            want = model(x)
        assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
        if first is None:
            first, kept = got, [t.clone() for t in got]
    assert capture.shapes == [(1, 3, 8, 6), (4, 3, 8, 6), (8, 3, 8, 6)]  # 3 -> 4, 5 -> 8; repeats replay
    for a, b in zip(first, kept, strict=True):
        assert torch.equal(a, b)  # later replays did not overwrite what was handed out


def test_too_many_shapes_and_a_failed_capture_fall_back_to_eager(capsys) -> None:
    model = TwoHeads().eval()
    capture = FakeCapture()
    graphed = GraphedForward(model, "cpu", FP32, max_graphs=1, capture=capture)
    graphed(torch.randn(1, 3, 8, 6))
    out = graphed(torch.randn(2, 3, 8, 6))  # a second shape: eager
    assert len(capture.shapes) == 1 and out[0].shape == (2, 4, 8, 6)

    def failing(forward, static_input):
        raise RuntimeError("operation not permitted when stream is capturing")

    broken = GraphedForward(model, "cpu", FP32, capture=failing)
    x = torch.randn(2, 3, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(broken(x)[0], model(x)[0])
    assert not broken.active
    broken(x)
    err = capsys.readouterr().err
    assert err.count("running without CUDA graphs: capturing a graph for input (2, 3, 8, 6) failed") == 1


def test_on_the_cpu_graphs_are_unavailable_and_posemodel_runs_eagerly() -> None:
    from clpose.engine.posemodel import PoseModel, any_skeleton, model_recipe

    assert graphs_unavailable(torch.device("cpu")) == "CUDA graphs need a CUDA device (cpu is not one)"
    pose = PoseModel.from_recipe(model_recipe("clnet_resnet18", (64, 48)), any_skeleton(16), pretrained=False)
    assert pose.use_cuda_graphs(True) == "CUDA graphs need a CUDA device (cpu is not one)"
    assert not pose.cuda_graphs
    crops = torch.randn(2, 3, 64, 48)
    assert pose.maps(crops)[0].shape == (2, 48, 4, 3)


def test_posemodel_with_a_stand_in_graph_gives_the_eager_maps_with_flip() -> None:
    from clpose.engine.posemodel import PoseModel, any_skeleton, model_recipe

    torch.manual_seed(0)
    pose = PoseModel.from_recipe(model_recipe("clnet_resnet18", (64, 48)), any_skeleton(16), pretrained=False)
    crops = torch.randn(3, 3, 64, 48)
    eager = pose.maps(crops, flip=True)[0]
    pose.cuda_graphs = True
    pose._graphed = GraphedForward(pose.model.eval(), "cpu", FP32, capture=FakeCapture())
    graphed = pose.maps(crops, flip=True)[0]
    torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("people", [[2, 0, 1], [1]])
def test_crops_on_device_match_opencv_crops(people: list[int]) -> None:
    """infer on a GPU crops there: each frame uploaded once, every box cut by one grid_sample."""
    from clpose.data.dataset import STD_RGB
    from clpose.engine.posemodel import PoseModel, any_skeleton, model_recipe

    pose = PoseModel.from_recipe(model_recipe("clnet_resnet18", (64, 48)), any_skeleton(16), pretrained=False)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (72, 128, 3), dtype=np.uint8) for _ in people]
    boxes = [rng.uniform([0, 0, 20, 30], [90, 40, 60, 60], (n, 4)) for n in people]
    want, want_affines = pose.crops(images, boxes)
    got, got_affines = pose.crops_on_device(images, boxes)
    np.testing.assert_array_equal(got_affines, want_affines)
    levels = (got - want).abs() * torch.tensor(STD_RGB)[:, None, None] * 255
    assert levels.max() <= 2.0 + 1e-4 and levels.mean() < 0.1


def test_graphs_are_captured_without_the_autocast_weight_cache() -> None:
    """A captured graph must cast the weights itself: autocast's cached casts are freed when the caller's autocast
    exits, and a replay would read freed memory (why make_graphed_callables refuses a caching autocast)."""
    from clpose.precision import resolve_precision

    seen: list[bool] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_autocast_cache_enabled())
            return x * 2

    bf16 = resolve_precision("bf16", "cpu")
    graphed = GraphedForward(Probe(), "cpu", bf16, capture=FakeCapture())
    with bf16.autocast("cpu"):  # the caller's own autocast (PoseModel.maps) caches
        assert torch.is_autocast_cache_enabled()
        graphed(torch.ones(1, 3, 4, 4))
    assert seen and not any(seen)
