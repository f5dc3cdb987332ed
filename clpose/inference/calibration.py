"""`--calibration PATH`: the calibration and check crops of an int8 graph made from images, a folder or a video,
where the recipe's training data is not on this machine (a user with only best.pt).

Frames are read as `clpose infer` reads them (clpose.inference.video.Source: photos as displayed, video frames in
order), their people found as infer finds them (`boxes_of`: the boxes file, the detector or the whole frame), and
cropped by the PoseModel (the pixels the network sees at inference). Every fifth crop is held out for the accuracy
check (keypoint displacement only: these crops have no labels); the others calibrate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from clpose.engine.int8 import CALIBRATION_CROPS, Calibration, CheckSet
from clpose.engine.posemodel import PoseModel
from clpose.errors import ClposeError
from clpose.inference.predictor import full_image_box, usable_boxes
from clpose.inference.results import InferOptions
from clpose.inference.video import Frame, Source, check_spec, source_fingerprint

HELD_OUT_EVERY = 5  # every fifth crop is held out for the check
MIN_CROPS = 10  # fewer calibrate nothing worth trusting

BoxesOf = Callable[[Frame], tuple[np.ndarray, np.ndarray]]


def path_calibration(
    spec: str | Path, boxes_of: Callable[[PoseModel, Source], BoxesOf], boxes: str, count: int = CALIBRATION_CROPS
) -> Callable[[PoseModel], Calibration]:
    """A calibration source for `use_runtime` from images, a folder or a video: `boxes_of(pose, source)` gives each
    frame's person boxes; `boxes` names where they come from (in the fingerprint and on screen)."""
    path = Path(spec)
    kind = check_spec(path)
    wanted = count + count // (HELD_OUT_EVERY - 1)  # the calibration crops and the held-out ones

    def calibration(pose: PoseModel) -> Calibration:
        def make() -> tuple[torch.Tensor, CheckSet]:
            crops = _crops(path, pose, boxes_of, wanted)
            held = torch.zeros(len(crops), dtype=torch.bool)
            held[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY] = True
            if len(crops) < MIN_CROPS or int(held.sum()) == 0:
                raise ClposeError(
                    f"--calibration {spec}: {len(crops)} person crops found ({boxes}), at least {MIN_CROPS} are needed "
                    "to calibrate and check int8: give more images or a longer video"
                )
            check = CheckSet(f"every {HELD_OUT_EVERY}th crop of {spec}, no labels", crops=crops[held])
            return crops[~held], check

        fingerprint = source_fingerprint(path, kind, boxes, wanted)
        return Calibration(f"{spec} ({boxes})", fingerprint, count, make)

    return calibration


def _crops(path: Path, pose: PoseModel, boxes_of: Callable[[PoseModel, Source], BoxesOf], wanted: int) -> torch.Tensor:
    """Up to `wanted` crops, from frames spread over the whole source (every n-th frame of a long video)."""
    source = Source(str(path))
    try:
        find = boxes_of(pose, source)
        step = max(1, source.count // wanted) if source.count else 1
        crops: list[torch.Tensor] = []
        for frame in source:
            if frame.index % step:
                continue
            found, _, _ = usable_boxes(frame.image.shape[:2], *find(frame))  # infer's one rule for boxes
            if len(found):
                made, _ = pose.crops([frame.image], [found])
                crops.extend(made)
            if len(crops) >= wanted:
                break
    finally:
        source.close()
    return torch.stack(crops[:wanted]) if crops else torch.zeros(0, 3, *pose.input_hw)


def whole_frames(pose: PoseModel, source: Source) -> BoxesOf:
    """Each image (or frame) is one person: its whole frame is the box (eval's and export's --calibration)."""
    return lambda frame: (full_image_box(frame.image)[None], np.ones(1))


def infer_calibration(spec: Path, opts: InferOptions) -> Callable[[PoseModel], Calibration]:
    """`clpose infer --int8 --calibration PATH`: the people of PATH found with infer's own box options."""
    from clpose.inference.predictor import Predictor
    from clpose.inference.run import box_provider

    if opts.detector is not None:
        boxes = f"people found by {opts.detector}"
    else:
        boxes = "each frame one person" if opts.boxes == "full" else f"boxes of {opts.boxes}"
    return path_calibration(spec, lambda pose, source: box_provider(opts, Predictor(pose), source)[0], boxes)
