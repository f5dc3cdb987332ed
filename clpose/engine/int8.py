"""INT8: a checkpoint's network quantised after training, with its accuracy checked as part of quantising.

The fp32 ONNX graph of the checkpoint (clpose.engine.graph_cache) is quantised by NNCF's post-training quantisation
(`nncf.quantize`, its ONNX backend: a QDQ graph that OpenVINO and ONNX Runtime both run with int8 kernels) on
calibration crops made by the PoseModel's own crop path (clpose.engine.calibration, or `--calibration PATH` through
clpose.inference.calibration). Then the new graph is compared with the fp32 network on held-out crops:

- keypoint displacement in crop pixels (median, p95, worst), over the keypoints fp32 scores >= SCORED (those a user
  sees drawn and counts);
- where the held-out crops are labelled (the recipe's validation split), the recipe's metric, fp32 and int8.

A graph within the budget (INT8_BUDGET points of the metric on its printed scale, and at most INT8_RELATIVE_BUDGET
of the fp32 score, where labels exist; else p95 displacement <= DISPLACEMENT_BUDGET of the crop's height) is kept.
Past it, the next rung of LADDER is quantised and checked, each keeping more in float than the one before:

1. all int8 (NNCF's defaults);
2. the layers that write the maps (the last convolutions: the composite head's heatmaps and offsets, whose steps are
   a fraction of a cell) in float, through NNCF's ignored scope;
3. also smoothed: SmoothQuant (SMOOTHING) on the convolutions' inputs, and the residual additions in float. Per-tensor
   activation ranges are set by the typical crop, so a person whose activations run far past the others' (seen:
   9x, a crouching catcher on a ResNet-50) is clipped in the residual stream; SmoothQuant moves each input channel's
   range into the weights (quantised per channel) and the residual stream stays float. It costs part of the int8
   frames/s in OpenVINO (docs/benchmarks.md, "The third rung"), hence the last rung, not the first; ONNX Runtime
   runs it slower than fp32, so its ladder stops before it (RuntimeEntry.int8_smoothed, ladder_for).

Past the last, a ClposeError: int8 is never used silently.

The graph is cached beside the fp32 one (cache/, the same lock), keyed by the fp32 graph's key, the calibration's
fingerprint and count, NNCF's and ONNX's versions and these settings; its record holds the check. As with the fp32
graph, a cached int8 graph runs only once this user's clpose has checked it with that runtime and this CPU's int8
kernels (the user's cache remembers it: int8_label), so a planted or copied graph is checked again before it is used.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clpose import __version__
from clpose.console import console, warn
from clpose.data.transforms import box_size
from clpose.engine.graph_cache import cache_folder, cached_graph, graph_key, remember, verified
from clpose.engine.onnx_graph import GraphCheck
from clpose.engine.posemodel import PoseModel
from clpose.engine.predict import predict
from clpose.engine.runners import distribution_version
from clpose.errors import ClposeError, first_line
from clpose.io import atomic_path, file_lock, sha256, write_json
from clpose.precision import FP32, int8_precision

INT8_BUDGET = 0.5  # points of the recipe's metric on its printed scale: 0.5 PCK, 0.005 AP (0.5 on eval's x 100)
# ... and at most this share of the fp32 score: half a point is nothing to a trained network and everything to one
# that scores 0.6 (a drop to 0.18 would pass the points alone)
INT8_RELATIVE_BUDGET = 0.1
DISPLACEMENT_BUDGET = 0.01  # without labels: p95 keypoint displacement, as a fraction of the crop's height
SCORED = 0.3  # keypoints compared: fp32 score at least this (infer's default --kpt-threshold)
SMOOTHING = 0.8  # SmoothQuant's alpha on convolutions (share of each channel's range moved into the weights)
CALIBRATION_CROPS = 300
CHECK_PEOPLE = 200
NNCF_EXTRA = "pip install 'clpose[deploy]'"


@dataclass(frozen=True)
class CheckSet:
    """Held-out crops the int8 graph is compared on: a labelled dataset and its metric (scored as `clpose eval`
    would, without the flip test), or unlabelled normalised crops (N, 3, H, W)."""

    source: str
    dataset: Any = None  # TopDownDataset
    metric: Any = None  # clpose.evaluation.metrics.Metric
    options: Any = None  # ScoreOptions
    crops: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.crops)


@dataclass(frozen=True)
class Calibration:
    """What an int8 graph is calibrated and checked on. `make` returns (calibration crops (N, 3, H, W), the check
    set) and is called only where a graph has to be made or checked; `fingerprint` (what the crops are made of: the
    records file and its people, or the files and options of --calibration) keys the graph without making them."""

    source: str  # said on screen and in the JSON, e.g. "300 people of data/coco/train.json"
    fingerprint: str
    count: int
    make: Callable[[], tuple[torch.Tensor, CheckSet]]


CalibrationSource = Callable[[PoseModel], Calibration | None]  # the crops of a PoseModel (None: none here)


@dataclass(frozen=True)
class Rung:
    """One way to quantise (the module's docstring says why there are three)."""

    head_in_float: bool = False
    smoothing: float | None = None  # SmoothQuant's alpha on convolutions, residual additions in float (None: off)

    def said(self) -> str:
        """As the checks print it after their source: "" (all int8), ", head in float", then the smoothing."""
        head = ", head in float" if self.head_in_float else ""
        smoothed = f", smoothed (SmoothQuant {self.smoothing:g}, residual additions in float)" if self.smoothing else ""
        return head + smoothed

    def words(self) -> str:
        """The rung in a refusal: "all int8", "with the head in float", "smoothed with the head in float"."""
        if not self.head_in_float:
            return "all int8"
        return f"{'smoothed ' if self.smoothing else ''}with the head in float"

    @classmethod
    def of(cls, record: dict[str, Any] | Any) -> Rung:
        """The rung a graph's record (a dict) or a check (Int8Check, DetectorCheck) says it was made with; records
        from before smoothing have none."""
        if not isinstance(record, dict):
            return cls(record.head_in_float, record.smoothing)
        return cls(bool(record.get("head_in_float")), record.get("smoothing"))


LADDER = (Rung(), Rung(head_in_float=True), Rung(head_in_float=True, smoothing=SMOOTHING))


def ladder_for(runtime: str) -> tuple[Rung, ...]:
    """The rungs `runtime` runs faster than fp32: all of LADDER, or all but the smoothed one (its entry says)."""
    from clpose.engine.runtime_names import RUNTIMES

    return LADDER if RUNTIMES[runtime].int8_smoothed else tuple(r for r in LADDER if not r.smoothing)


def smoothed_elsewhere(runtime: str) -> str:
    """Where a smoothed graph runs, said to a user of `runtime` that does not run it: ", or with --runtime ..."."""
    from clpose.engine.runtime_names import RUNTIMES

    if ladder_for(runtime) == LADDER:
        return ""
    names = " or ".join(name for name, entry in RUNTIMES.items() if entry.int8_smoothed)
    if not names:
        return ""
    return f", or with --runtime {names}, which also tries a smoothed graph ({runtime} runs those slower than fp32)"


@dataclass
class Int8Check:
    """The accuracy check of an int8 graph against the fp32 network on held-out crops."""

    source: str
    crops: int
    head_in_float: bool
    displacement_px: dict[str, float]  # median, p95, worst (crop pixels), over keypoints fp32 scores >= SCORED
    metric: str | None = None
    fp32: float | None = None  # on the printed scale
    int8: float | None = None
    budget: str = ""
    passed: bool = False
    smoothing: float | None = None  # Rung.smoothing

    def describe(self) -> str:
        d = self.displacement_px
        moved = f"keypoints moved {d['median']:.2f} / {d['p95']:.2f} / {d['worst']:.2f} px (median / p95 / worst)"
        score = f"{self.metric} {self.fp32:.2f} fp32, {self.int8:.2f} int8; " if self.metric is not None else ""
        rung = Rung.of(self).said()
        verdict = "within" if self.passed else "past"
        return (
            f"int8 check on {self.crops} held-out crops ({self.source}{rung}): {score}{moved}; {verdict} {self.budget}"
        )

    def summary(self) -> str:
        """Its numbers in a few words (a refusal's last try says the rest): "oks 81.82 int8, p95 7.18 px"."""
        score = f"{self.metric} {self.int8:.2f} int8, " if self.metric is not None else ""
        return f"{score}p95 {self.displacement_px['p95']:.2f} px"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Int8Graph:
    """A checked int8 graph and what is known of it (the JSON outputs carry `to_json`)."""

    path: Path
    calibration: str
    calibration_count: int
    check: Int8Check
    made: bool = False  # made in this process (else found in the cache)
    record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "graph": str(self.path),
            "calibration": self.calibration,
            "calibration_crops": self.calibration_count,
            "check": self.check.to_json(),
            "quantiser": self.record.get("versions", {}),
        }


def require_nncf() -> None:
    import logging

    # NNCF imports torch's C++ extension helper, which warns of a missing CUDA runtime on every CPU machine
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        raise ClposeError(f"--int8 quantises with NNCF, which is not installed: {NNCF_EXTRA}") from None


# -- quantising ----------------------------------------------------------------------------------------------------


def head_nodes(model: Any) -> list[str]:
    """The names of the convolutions (or matrix products) nearest the graph's outputs: the layers that write the
    maps. Found by walking back from each output through the operations between (reshapes, adds, activations)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    weighted = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
    found: list[str] = []
    stack, seen = [o.name for o in model.graph.output], set()
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in weighted:
            found.append(node.name)
            continue
        stack.extend(i for i in node.input if i in producers)
    return sorted(found)


def quantize_graph(fp32: Path, crops: torch.Tensor, out: Path, rung: Rung = LADDER[0]) -> list[str]:
    """Write the int8 (QDQ) graph of `fp32` to `out` as `rung` says, calibrated on `crops` (one crop per calibration
    sample, as NNCF collects statistics); returns the names of the layers kept in float through the ignored scope
    (the head's; the additions a smoothed rung leaves in float are not named)."""
    import logging

    import nncf
    import onnx

    model = onnx.load(str(fp32))
    ignored = head_nodes(model) if rung.head_in_float else []
    data = nncf.Dataset([{"images": crop[None].numpy()} for crop in crops])
    nncf.set_log_level(logging.ERROR)
    try:
        quantized = nncf.quantize(
            model,
            data,
            subset_size=len(crops),
            target_device=nncf.TargetDevice.CPU,
            ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
            **smoothing_options(rung.smoothing),
        )
    except Exception as e:  # NNCF raises its own types (and RuntimeError from the backend)
        raise ClposeError(f"NNCF could not quantise {fp32}: {first_line(e)}") from None
    with atomic_path(out) as tmp:
        onnx.save(quantized, str(tmp))
    return ignored


def smoothing_options(alpha: float | None) -> dict[str, Any]:
    """nncf.quantize's options for SmoothQuant on convolutions at `alpha` ({} for None). NNCF runs SmoothQuant only
    for its transformer model type, which also leaves additions (the residual stream; and subtractions, divisions,
    poolings, reductions) unquantised, as wanted here; the preset is set back to PERFORMANCE (symmetric activations,
    as on the other rungs), transformer's default being MIXED."""
    if alpha is None:
        return {}
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    return {
        "model_type": nncf.ModelType.TRANSFORMER,
        "preset": nncf.QuantizationPreset.PERFORMANCE,
        "advanced_parameters": AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(convolution=alpha, matmul=-1)
        ),
    }


def _displacement(fp32: np.ndarray, int8: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """How far int8 moved the keypoints (N, K, 2) fp32 scores >= SCORED; all of them where none does (a network
    unsure everywhere still has its keypoints, and an empty comparison would pass anything)."""
    everywhere = np.linalg.norm(int8 - fp32, axis=-1)
    scored = scores >= SCORED
    moved = everywhere[scored] if scored.any() else everywhere.ravel()
    return {
        "median": float(np.median(moved)),
        "p95": float(np.percentile(moved, 95)),
        "worst": float(moved.max()),
        "keypoints": int(moved.size),
        "scored_only": bool(scored.any()),
    }


def run_check(pose: PoseModel, runner: Any, check_set: CheckSet, rung: Rung = LADDER[0]) -> Int8Check:
    """Compare `runner` (the int8 graph in its runtime) with the fp32 network of `pose` on the check set."""
    int8 = copy.copy(pose)
    int8.runner = runner
    fp32 = copy.copy(pose)
    # the reference is fp32 whatever `pose` runs: under amp auto a CPU with native bf16 runs it in bf16
    fp32.runner, fp32.precision = None, FP32
    fp32.use_cuda_graphs(False)
    height = pose.input_hw[0]
    pixels = DISPLACEMENT_BUDGET * height
    if check_set.dataset is None:
        batches = torch.split(check_set.crops, 32)
        ref = [fp32.decode(fp32.maps(b)[0]) for b in batches]
        got = [int8.decode(int8.maps(b)[0]) for b in batches]
        kp_ref, scores = np.concatenate([k for k, _ in ref]), np.concatenate([s for _, s in ref])
        moved = _displacement(kp_ref, np.concatenate([k for k, _ in got]), scores)
        check = Int8Check(check_set.source, check_set.count, rung.head_in_float, moved, smoothing=rung.smoothing)
        check.budget = f"the budget: p95 <= {pixels:.2f} px ({DISPLACEMENT_BUDGET:.0%} of the crop's height)"
        check.passed = moved["p95"] <= pixels
        return check
    metric = check_set.metric
    preds = {name: predict(p, check_set.dataset, 32, flip=False) for name, p in (("fp32", fp32), ("int8", int8))}
    scale = metric.scale
    values = {
        name: metric.value(metric.score_predictions(check_set.dataset, p, check_set.options)[0]) * scale
        for name, p in preds.items()
    }
    # image pixels of crops of different sizes: back to crop pixels through each crop's own size
    records = check_set.dataset.records
    sizes = np.stack([box_size(records.scales[i], pose.input_hw, pose.box_padding) for i in preds["fp32"].indices])
    sizes = sizes[:, 1] / height  # image pixels per crop pixel
    moved = _displacement(
        preds["fp32"].keypoints[-1] / sizes[:, None, None],
        preds["int8"].keypoints[-1] / sizes[:, None, None],
        preds["fp32"].scores[-1],
    )
    check = Int8Check(check_set.source, check_set.count, rung.head_in_float, moved, metric.name,
                      smoothing=rung.smoothing)  # fmt: skip
    check.fp32, check.int8 = values["fp32"], values["int8"]
    check.passed, check.budget = within_budget(check.fp32, check.int8, metric.higher_is_better, metric.name)
    return check


def within_budget(fp32: float, int8: float, higher_is_better: bool, name: str) -> tuple[bool, str]:
    """Whether int8's score is within the budget of fp32's (both on the metric's printed scale), and the budget said
    in words: a drop of at most INT8_BUDGET points and at most INT8_RELATIVE_BUDGET of fp32's score."""
    drop = fp32 - int8 if higher_is_better else int8 - fp32
    allowed = min(INT8_BUDGET, INT8_RELATIVE_BUDGET * abs(fp32))
    said = (
        f"the budget: a drop of at most {INT8_BUDGET:g} {name} points and {INT8_RELATIVE_BUDGET:.0%} of fp32's score "
        f"({allowed:.2f} here)"
    )
    return math.isfinite(drop) and drop <= allowed, said


# -- the cached graph ------------------------------------------------------------------------------------------------


def int8_key(fp32_key: str, calibration: Calibration) -> str:
    parts = [
        fp32_key,
        calibration.fingerprint,
        f"crops {calibration.count}",
        f"nncf {distribution_version('nncf')}",
        f"onnx {distribution_version('onnx')}",
        f"budget {INT8_BUDGET} {INT8_RELATIVE_BUDGET} {DISPLACEMENT_BUDGET} {SCORED}",
        f"ladder {LADDER}",
        "reference fp32",  # graphs checked before 2026-12-07 may have been compared with bf16 (amp auto): made again
        f"clpose {__version__}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def int8_label(runtime: str) -> str:
    """What this user's record of checks (graph_cache.remember) knows an int8 graph was checked with: the runtime,
    its version and the CPU's int8 kernels, since one graph scores differently in VNNI's and AVX2's kernels and a
    cache may be shared by CPUs of both kinds (a home folder on a cluster)."""
    return f"{runtime} {distribution_version(runtime)} int8, {int8_precision().reason}"


def int8_graph(
    checkpoint: Path,
    pose: PoseModel,
    calibration: Calibration | None,
    runtime: str,
    runner_of: Callable[[Path], Any],
    check: GraphCheck,
) -> Int8Graph:
    """The checkpoint's int8 graph for `runtime`: made, checked and cached on first use; checked again by a runtime
    this user's clpose has not checked it with. `runner_of(path)` runs a graph in `runtime`; `check` is the fp32
    graph's parity check in that runtime."""
    require_nncf()
    checkpoint = Path(checkpoint)
    fp32 = cached_graph(checkpoint, pose, check=check, runtime=runtime)
    if calibration is None:
        raise ClposeError(
            f"--int8 needs calibration crops: the recipe's training split is not on this machine (data.root of "
            f"{checkpoint}'s recipe) and no --calibration PATH (images, a folder or a video) was given"
        )
    digest = pose.checkpoint_sha256 or sha256(checkpoint)
    key = int8_key(graph_key(digest, pose), calibration)
    path = cache_folder(checkpoint) / f"{checkpoint.stem}-{key}.int8.onnx"
    record_path = path.with_suffix(".json")
    label = int8_label(runtime)
    with file_lock(path):
        record = read_record(record_path)
        if path.is_file() and record.get("key") == key and record.get("graph_sha256") == (graph_sha := sha256(path)):
            refuse_unladdered(path, record, runtime)
            stored = Int8Check(**record["check"])
            if verified(graph_sha, key, label):
                console.print(f"int8 graph {path}: {stored.describe()}")
                return Int8Graph(path, record["calibration"]["source"], record["calibration"]["count"], stored, False,
                                 record)  # fmt: skip
            _, check_set = calibration.make()
            checked = run_check(pose, runner_of(path), check_set, Rung.of(record))
            console.print(f"checked the cached int8 graph with {runtime}: {checked.describe()}")
            if checked.passed:
                remember(graph_sha, key, label)
                return Int8Graph(path, record["calibration"]["source"], record["calibration"]["count"], checked, False,
                                 record)  # fmt: skip
            warn(f"the cached int8 graph {path} is past the budget here: making it again")
        return _make(path, fp32, key, digest, pose, calibration, runtime, runner_of, label)


def refuse_unladdered(path: Path, record: dict[str, Any], runtime: str) -> None:
    """A cached graph made by a rung `runtime` does not run fast (made by another runtime) is refused, not run."""
    if Rung.of(record) not in ladder_for(runtime):
        raise ClposeError(
            f"{path} is a smoothed int8 graph (the all-int8 tries before it missed the accuracy budget): run without "
            f"--int8{smoothed_elsewhere(runtime)}"
        )


def _make(
    path: Path,
    fp32: Path,
    key: str,
    digest: str,
    pose: PoseModel,
    calibration: Calibration,
    runtime: str,
    runner_of: Callable[[Path], Any],
    label: str,
) -> Int8Graph:
    console.print(f"quantising the network to int8 with NNCF (once per checkpoint and calibration): {path}")
    start = time.perf_counter()
    crops, check_set = calibration.make()
    console.print(f"calibration: {len(crops)} crops ({calibration.source}); check: {check_set.count} held-out crops")
    results, kept = quantise_checked(
        fp32, crops, path, lambda rung: run_check(pose, runner_of(path), check_set, rung),
        lambda results: f"int8 misses the accuracy budget even {Rung.of(results[-1]).words()} "
        f"({results[-1].describe()}; {earlier_tries(results)}): run without --int8{smoothed_elsewhere(runtime)}",
        ladder_for(runtime),
    )  # fmt: skip
    fields = {
        "checkpoint_sha256": digest,
        "fp32_graph": fp32.name,
        "input_size": f"{pose.input_hw[0]}x{pose.input_hw[1]}",
        "calibration": {
            "source": calibration.source,
            "count": len(crops),
            "crops_sha256": hashlib.sha256(crops.numpy().tobytes()).hexdigest(),
            "fingerprint": calibration.fingerprint,
        },
    }
    record = write_record(path, key, label, runtime, fields, results, kept)
    console.print(f"int8 graph made in {time.perf_counter() - start:.0f} s")
    return Int8Graph(path, calibration.source, len(crops), results[-1], True, record)


def earlier_tries(results: list[Int8Check]) -> str:
    """The tries before a refusal's last in a few words: "all int8: oks 81.82 int8, p95 7.18 px; head in float: ..."."""
    return "; ".join(f"{Rung.of(r).words().removeprefix('with the ')}: {r.summary()}" for r in results[:-1])


def quantise_checked(
    fp32: Path,
    inputs: torch.Tensor,
    out: Path,
    check: Callable[[Rung], Any],
    refusal: Callable[[list[Any]], str],
    ladder: tuple[Rung, ...] = LADDER,
) -> tuple[list[Any], list[str]]:
    """The quantiser's ladder, shared by the pose network and the detector: `fp32` quantised on `inputs` into `out`
    by each rung of `ladder` in turn, `check(rung)` run and printed, until one is within its budget (`.passed`); past
    the last, the graph is removed and a ClposeError says `refusal(checks)`. Returns the checks and the layers kept
    in float by name."""
    results: list[Any] = []
    for rung in ladder:
        kept = quantize_graph(fp32, inputs, out, rung)
        checked = check(rung)
        console.print(checked.describe())
        results.append(checked)
        if checked.passed:
            return results, kept
    out.unlink(missing_ok=True)
    raise ClposeError(refusal(results))


def write_record(
    path: Path, key: str, label: str, runtime: str, fields: dict[str, Any], results: list[Any], kept: list[str]
) -> dict[str, Any]:
    """Write an int8 graph's record beside it (`fields`, then what every int8 graph records: its key and bytes, the
    rung and check used and the tries past the budget before it, the quantiser's versions) and remember the check in
    this user's cache; returns the record."""
    graph_sha = sha256(path)
    record = {
        "key": key,
        "graph_sha256": graph_sha,
        **fields,
        "head_in_float": results[-1].head_in_float,
        "smoothing": results[-1].smoothing,
        "float_layers": kept,
        "check": results[-1].to_json(),
        "earlier_tries": [r.to_json() for r in results[:-1]],
        "versions": {name: distribution_version(name) for name in ("nncf", "onnx", runtime)} | {"clpose": __version__},
        "made": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(path.with_suffix(".json"), record)
    remember(graph_sha, key, label)
    return record


def read_record(path: Path) -> dict[str, Any]:
    """An int8 graph's record (the JSON beside it), or {} where it is missing, unreadable or not one."""
    import json

    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) and isinstance(value.get("check"), dict) else {}
