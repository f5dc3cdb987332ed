"""`--int8` for the detector: an SSD's graph (clpose.inference.detector_graph) quantised by NNCF as the pose network's
is (clpose.engine.int8.quantize_graph), calibrated on whole frames at the network's input size, and checked against
its fp32 graph on held-out frames by what a user gets from it: the person boxes at the detector's threshold.

Frames: those of `--calibration PATH` (images, a folder or a video; each frame whole, as the detector sees it), else
the images of the recipe's training split (where the pose network's int8 graph is calibrated by default). Every
fifth frame is held out for the check.

The check: fp32's person boxes (score >= the threshold) on the held-out frames, matched one to one to int8's at
IoU >= MATCH_IOU; at least BOX_BUDGET of fp32's boxes must be found and at least BOX_BUDGET of int8's must be fp32's.
Over the anchors fp32 scores highest for a person on each frame (the candidates of its boxes), the person scores must
stay within SCORE_BUDGET: where fp32 finds no person on the held-out frames (frames without people, or untrained
weights), that is all the check can say. Past the budget, the head's last convolutions (those writing the box deltas
and the class logits) are kept in float and the check runs again; past it again, a ClposeError: an int8 detector is
never used silently. Graph and record are cached beside the fp32 graph, keyed by it, the frames' fingerprint, the
threshold and the versions, and checked again by a runtime this user's clpose has not run them with.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from clpose import __version__
from clpose.console import console, warn
from clpose.engine.calibration import spread
from clpose.engine.int8 import (
    LADDER,
    Rung,
    int8_label,
    ladder_for,
    quantise_checked,
    read_record,
    refuse_unladdered,
    require_nncf,
    smoothed_elsewhere,
    write_record,
)
from clpose.engine.runners import distribution_version
from clpose.errors import ClposeError
from clpose.io import file_lock, sha256
from clpose.skeletons import COCO_PERSON

FRAMES = 150  # calibration frames (SSDLite's 320x320 input: NNCF's statistics take seconds)
HELD_OUT_EVERY = 5  # every fifth frame is held out for the check
MIN_FRAMES = 10
MATCH_IOU = 0.5  # COCO's loosest match: a box int8 moved less than this is the same person
BOX_BUDGET = 0.95  # share of fp32's boxes int8 must find, and of int8's that must be fp32's
SCORE_BUDGET = 0.05  # most a person score of fp32's best anchors may change
TOP_ANCHORS = 100  # per frame: the anchors fp32 scores highest for a person (its boxes' candidates)

Runner = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class DetectorFrames:
    """The frames an int8 detector is calibrated and checked on: `make(hw)` reads them as network inputs
    (N, 3, H, W); `fingerprint` names what they are made of without reading them."""

    source: str
    fingerprint: str
    make: Callable[[tuple[int, int]], torch.Tensor]


def path_frames(spec: Path, count: int = FRAMES) -> DetectorFrames:
    """The frames of images, a folder or a video (`--calibration PATH`), spread over the whole source."""
    from clpose.inference.detector_graph import frame_tensor
    from clpose.inference.video import Source, check_spec, source_fingerprint

    kind = check_spec(spec)
    wanted = count + count // (HELD_OUT_EVERY - 1)

    def make(hw: tuple[int, int]) -> torch.Tensor:
        source = Source(str(spec))
        frames: list[torch.Tensor] = []
        try:
            step = max(1, source.count // wanted) if source.count else 1
            for frame in source:
                if frame.index % step == 0:
                    frames.append(frame_tensor(frame.image, hw)[0])
                if len(frames) == wanted:  # not a frame more is decoded
                    break
        finally:
            source.close()
        return torch.stack(frames) if frames else torch.zeros(0, 3, *hw)

    return DetectorFrames(f"{spec} (whole frames)", source_fingerprint(Path(spec), kind, "whole", wanted), make)


def recipe_frames(recipe: Any, count: int = FRAMES) -> DetectorFrames | None:
    """The images of the recipe's training split (None where they are not on this machine)."""
    from clpose.data.dataset import read_image
    from clpose.data.records import load_records, records_path
    from clpose.inference.detector_graph import frame_tensor

    if recipe is None:
        return None
    train = records_path(recipe.data.root, recipe.data.train_split)
    if not train.is_file():
        return None
    wanted = count + count // (HELD_OUT_EVERY - 1)

    def make(hw: tuple[int, int]) -> torch.Tensor:
        records = load_records(train)
        chosen = spread(len(records.images), wanted)
        images = [read_image(records.image_dir / records.images[i]["file"], str(train)) for i in chosen]
        return torch.stack([frame_tensor(image, hw)[0] for image in images])

    fingerprint = hashlib.sha256(f"{train} {sha256(train)} {wanted}".encode()).hexdigest()
    return DetectorFrames(f"images of {train}", fingerprint, make)


@dataclass
class DetectorCheck:
    """The int8 detector against fp32 on held-out frames."""

    source: str
    frames: int
    head_in_float: bool
    threshold: float
    fp32_boxes: int  # fp32's person boxes clear of the threshold (score >= threshold + SCORE_BUDGET)
    int8_boxes: int  # int8's, likewise
    matched: int  # fp32's clear boxes that int8 found (at IoU >= MATCH_IOU)
    mean_iou: float  # of the matched pairs (NaN: none)
    score_change: float  # largest change of a person score over fp32's best anchors
    passed: bool = False
    budget: str = ""
    smoothing: float | None = None  # Rung.smoothing

    def describe(self) -> str:
        rung = Rung.of(self).said()
        iou = self.mean_iou if self.mean_iou is not None else float("nan")  # JSON's null: no pair matched
        change = self.score_change if self.score_change is not None else float("inf")  # null: a NaN output
        boxes = (
            f"int8 found {self.matched} of fp32's {self.fp32_boxes} person boxes ({self.int8_boxes} of its own; "
            f"mean IoU {iou:.3f})"
            if self.fp32_boxes or self.int8_boxes
            else f"no person box in fp32 or int8 at {self.threshold:g}"
        )
        verdict = "within" if self.passed else "past"
        return (
            f"detector int8 check on {self.frames} held-out frames ({self.source}{rung}): {boxes}; person scores "
            f"changed at most {change:.3f}; {verdict} {self.budget}"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_check(
    fp32: Runner, int8: Runner, decoder: Any, frames: torch.Tensor, threshold: float, source: str,
    rung: Rung = LADDER[0],
) -> DetectorCheck:  # fmt: skip
    """Compare the two runners' person boxes and scores on `frames` (network inputs); `rung` made the int8 one."""
    with torch.no_grad():
        return _check(fp32, int8, decoder, frames, threshold, source, rung)


def _check(
    fp32: Runner, int8: Runner, decoder: Any, frames: torch.Tensor, threshold: float, source: str, rung: Rung
) -> DetectorCheck:
    # a box whose score is within SCORE_BUDGET of the threshold may appear or vanish with a change the budget allows:
    # it need not be found, and may match; the boxes counted are those clear of the threshold in either graph
    low, high = max(threshold - SCORE_BUDGET, 0.0), threshold + SCORE_BUDGET
    must = found = extra = unmatched = 0
    ious: list[float] = []
    change = 0.0
    for x in frames:
        outs = [torch.as_tensor(np.asarray(run(x[None])[0]), dtype=torch.float32) for run in (fp32, int8)]
        scores = [F.softmax(o[:, 4:], dim=-1)[:, COCO_PERSON] for o in outs]
        best = scores[0].topk(min(TOP_ANCHORS, len(scores[0]))).indices
        moved = float((scores[1][best] - scores[0][best]).abs().max())
        change = max(change, moved) if np.isfinite(moved) else float("inf")  # a NaN output is past any budget
        (ref, ref_scores), (got, got_scores) = (decoder(o, decoder.hw, low) for o in outs)
        pairs = _matches(ref, got)
        ious += [iou for _, _, iou in pairs]
        ref_matched, got_matched = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
        clear_ref, clear_got = (ref_scores >= high).nonzero().flatten(), (got_scores >= high).nonzero().flatten()
        must += len(clear_ref)
        found += sum(int(i) in ref_matched for i in clear_ref)
        extra += len(clear_got)
        unmatched += sum(int(j) not in got_matched for j in clear_got)
    check = DetectorCheck(source, len(frames), rung.head_in_float, threshold, must, extra, found,
                          float(np.mean(ious)) if ious else float("nan"), change, smoothing=rung.smoothing)  # fmt: skip
    recall = found / must if must else 1.0
    precision = 1.0 - unmatched / extra if extra else 1.0
    check.passed = recall >= BOX_BUDGET and precision >= BOX_BUDGET and change <= SCORE_BUDGET
    check.budget = (
        f"the budget: {BOX_BUDGET:.0%} of the boxes kept (IoU >= {MATCH_IOU:g}; boxes within {SCORE_BUDGET:g} of the "
        f"threshold may change) and person scores within {SCORE_BUDGET:g}"
    )
    return check


def _matches(ref: torch.Tensor, got: torch.Tensor) -> list[tuple[int, int, float]]:
    """One-to-one pairs (i, j, IoU) of boxes (xyxy) at IoU >= MATCH_IOU, the best pairs first (greedy)."""
    if not len(ref) or not len(got):
        return []
    iou = box_iou(ref, got)
    pairs = []
    while True:
        value, flat = iou.flatten().max(0)
        if float(value) < MATCH_IOU:
            return pairs
        i, j = divmod(int(flat), iou.shape[1])
        pairs.append((i, j, float(value)))
        iou[i, :], iou[:, j] = -1.0, -1.0


def int8_key(fp32_key: str, frames: DetectorFrames, threshold: float) -> str:
    parts = [
        fp32_key,
        frames.fingerprint,
        f"threshold {threshold}",
        f"nncf {distribution_version('nncf')}",
        f"onnx {distribution_version('onnx')}",
        f"budget {BOX_BUDGET} {SCORE_BUDGET} {MATCH_IOU} {TOP_ANCHORS}",
        f"ladder {LADDER}",
        f"clpose {__version__}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def detector_int8_graph(
    fp32_path: Path,
    fp32_key: str,
    decoder: Any,
    fp32: Runner,
    frames: DetectorFrames | None,
    threshold: float,
    runtime: str,
    runner_of: Callable[[Path], Runner],
) -> dict[str, Any]:
    """The detector's int8 graph for `runtime` beside its fp32 graph: made, checked and cached on first use.
    Returns what the JSON outputs record (the graph, its frames and its check); `runner_of(path)` runs a graph."""
    from clpose.engine.graph_cache import remember, verified

    require_nncf()
    if frames is None:
        raise ClposeError(
            "--int8 with a detector needs calibration frames: the recipe's training images are not on this machine "
            "and no --calibration PATH (images, a folder or a video) was given"
        )
    key = int8_key(fp32_key, frames, threshold)
    path = fp32_path.with_name(f"{fp32_path.stem}-{key}.int8.onnx")
    label = int8_label(runtime)
    with file_lock(path):
        record = read_record(path.with_suffix(".json"))
        if path.is_file() and record.get("key") == key and record.get("graph_sha256") == (graph_sha := sha256(path)):
            refuse_unladdered(path, record, runtime)
            if verified(graph_sha, key, label):
                console.print(f"int8 detector {path}: {DetectorCheck(**record['check']).describe()}")
                return _described(path, record)
            held = _split(frames, decoder.hw)[1]
            check = run_check(fp32, runner_of(path), decoder, held, threshold, frames.source, Rung.of(record))
            console.print(f"checked the cached int8 detector with {runtime}: {check.describe()}")
            if check.passed:
                remember(graph_sha, key, label)
                return _described(path, record | {"check": check.to_json()})
            warn(f"the cached int8 detector {path} is past the budget here: making it again")
        return _make(path, fp32_path, key, decoder, fp32, frames, threshold, runtime, runner_of, label)


def _split(frames: DetectorFrames, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    made = frames.make(hw)
    held = torch.zeros(len(made), dtype=torch.bool)
    held[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY] = True
    if len(made) < MIN_FRAMES:
        raise ClposeError(
            f"{frames.source}: {len(made)} frames, at least {MIN_FRAMES} are needed to calibrate and check the "
            "int8 detector: give more images or a longer video"
        )
    return made[~held], made[held]


def _make(
    path: Path,
    fp32_path: Path,
    key: str,
    decoder: Any,
    fp32: Runner,
    frames: DetectorFrames,
    threshold: float,
    runtime: str,
    runner_of: Callable[[Path], Runner],
    label: str,
) -> dict[str, Any]:
    console.print(f"quantising the detector to int8 with NNCF (once per weights and calibration frames): {path}")
    start = time.perf_counter()
    calibration, held = _split(frames, decoder.hw)
    console.print(f"calibration: {len(calibration)} frames ({frames.source}); check: {len(held)} held-out frames")
    results, kept = quantise_checked(
        fp32_path, calibration, path,
        lambda rung: run_check(fp32, runner_of(path), decoder, held, threshold, frames.source, rung),
        lambda results: f"the int8 detector misses the accuracy budget even {Rung.of(results[-1]).words()} "
        f"({results[-1].describe()}): run without --int8, or calibrate on frames like the video's (--calibration "
        f"PATH){smoothed_elsewhere(runtime)}",
        ladder_for(runtime),
    )  # fmt: skip
    fields = {
        "fp32_graph": fp32_path.name,
        "calibration": {"source": frames.source, "count": len(calibration), "fingerprint": frames.fingerprint},
    }
    record = write_record(path, key, label, runtime, fields, results, kept)
    console.print(f"int8 detector made in {time.perf_counter() - start:.0f} s")
    return _described(path, record)


def _described(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "graph": str(path),
        "calibration": record["calibration"]["source"],
        "calibration_frames": record["calibration"]["count"],
        "check": record["check"],
        "quantiser": record.get("versions", {}),
    }
