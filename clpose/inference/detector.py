"""Person boxes: from a detections file (COCO results format) or a torchvision COCO detector whose weights come by
name (clpose.weights) or from a local file."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from clpose.engine.runtimes import torch_threads
from clpose.errors import ClposeError, first_line
from clpose.precision import Precision
from clpose.safeload import read_tensors
from clpose.skeletons import COCO_PERSON

if TYPE_CHECKING:
    from clpose.engine.runtimes import RuntimeInfo
    from clpose.inference.detector_graph import SSDDecoder
    from clpose.inference.detector_int8 import DetectorFrames

# why a Faster R-CNN's network stays in torch whatever --runtime says
_NOT_EXPORTED = "a Faster R-CNN runs in torch (its region proposals and RoI heads are not exported)"


ID_READINGS = ("auto", "index", "number")  # --boxes-ids
_READING_TEXT = {
    ("index", False): "0-based positions of the images in sorted name order",
    ("number", False): "the number in each file name (a COCO id: 397133 = 000000397133.jpg; 1 = 00001.png)",
    ("index", True): "0-based frame indices",
    ("number", True): "1-based frame numbers",
}


class BoxesFile:
    """Detections in COCO results format ([{image_id, category_id, bbox, score}]), looked up per frame.

    Which entries belong to a frame (`match` decides once, before any frame is read, and never by a guess):
    - a string image_id, or a `file_name` key: the image's file name, or its stem (000000397133.jpg or
      000000397133); a video frame's name ("frame 3");
    - an integer image_id: read one of two ways, for every frame alike. "index": the 0-based position of the image
      in the folder's sorted names, or a video's 0-based frame index. "number": the number that ends the image's file
      name, leading zeros ignored (397133 for 000000397133.jpg and COCO_val2014_000000397133.jpg, 1 for 00001.png
      and frame_0001.png), or a video's 1-based frame number (the number ffmpeg gives the frame it extracts).
    `ids="auto"` takes the reading under which every integer id names an image (or the only one under which any
    does) and refuses, in one line naming both, ids that fit both readings where they differ: frames extracted as
    00001.png, 00002.png, ... with ids 1-3 are frames 1-3 one way and 2-4 the other. A video reads indices (its
    frames have no names that say otherwise) unless its ids look 1-based (they start at 1, with no 0, or end at the
    frame count), which is refused as well: a file of the first 50 frames numbered 1-50 would give every frame the
    next one's boxes.
    `unmatched_warning()` says at the end of a run when the ids and the frames did not meet.
    """

    def __init__(self, path: Path, threshold: float = 0.0, num_keypoints: int | None = None, ids: str = "auto") -> None:
        self.path = Path(path)
        if ids not in ID_READINGS:
            raise ClposeError(f"--boxes-ids {ids!r}: expected one of {', '.join(ID_READINGS)}")
        if not self.path.is_file():
            raise ClposeError(f"boxes file {path} does not exist")
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, or UnicodeDecodeError for a binary file
            raise ClposeError(f"boxes file {path} is not valid JSON ({first_line(e)})") from None
        if not isinstance(entries, list):
            raise ClposeError(f"boxes file {path}: expected a list of {{image_id, bbox, score}}")
        self.by_key: dict[int | str, list[tuple[list[float], float]]] = {}
        # every entry's key, below the threshold too (a frame whose boxes all score low still matched); in file order
        self.ids: dict[int | str, None] = {}
        self.matched: set[int | str] = set()
        self.frames = self.video_frames = self.frames_without_entries = 0
        self.rule, self.reading, self.video = ids, "", False
        self._numbers: dict[int, int] = {}  # a folder's image position -> the number its name holds
        for i, e in enumerate(entries):
            key, box, score = _entry(e, i, path, num_keypoints)
            self.ids[key] = None
            if score >= threshold:
                self.by_key.setdefault(key, []).append((box, score))

    def match(self, names: list[str] | None, count: int = 0) -> str:
        """Decide how integer image ids name the frames: `names`, a folder's image names in sorted order (one name
        for an image); None for a video or camera of `count` frames (0: not known). Returns what the ids were read
        as; ids that fit two readings are a ClposeError that names both and the option that chooses."""
        self.video = names is None
        ints = [k for k in self.ids if isinstance(k, int)]
        if self.video:
            self.reading = self.rule if self.rule != "auto" else _video_reading(ints, count, self.path)
        else:
            self._numbers = {i: n for i, name in enumerate(names) if (n := _coco_id(Path(name).stem)) is not None}
            self.reading = self.rule if self.rule != "auto" else _folder_reading(ints, names, self._numbers, self.path)
            if self.reading == "number":
                _check_numbers_unique(names, self._numbers, self.path)
        return self.reading_text

    @property
    def reading_text(self) -> str:
        """What the integer image ids were read as (for the JSON), once `match` has decided."""
        if not self.reading or not any(isinstance(k, int) for k in self.ids):
            return ""  # names only: nothing was read as a number
        return _READING_TEXT[self.reading, self.video]

    def boxes(self, index: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) [x, y, w, h] and scores (N,) of frame `index` named `name` (Frame.index, Frame.name)."""
        if not self.reading:
            raise RuntimeError("BoxesFile.match(...) decides how ids name frames before boxes() is asked")
        keys: list[int | str] = [name] if self.video else [name, Path(name).stem]
        if self.reading == "index":
            keys.append(index)
        elif self.video:
            keys.append(index + 1)
        elif index in self._numbers:
            keys.append(self._numbers[index])
        self.frames += 1
        self.video_frames += self.video
        key = next((k for k in keys if k in self.ids), None)  # a name wins over an integer id for the same frame
        if key is None:
            self.frames_without_entries += 1
            return np.zeros((0, 4)), np.zeros(0)
        self.matched.add(key)
        found = self.by_key.get(key, [])
        if not found:
            return np.zeros((0, 4)), np.zeros(0)
        return np.array([b for b, _ in found]), np.array([s for _, s in found])

    def unmatched_warning(self) -> str | None:
        """One line for the end of a run when the file's image ids and the frames seen did not meet, else None.

        Warned: none of the ids matched (every frame got no boxes: ids of other images, or another naming), or
        some ids matched nothing while some frames found no entry (part of the file named otherwise). Not warned:
        a file that covers more frames than were seen (a subset folder, a run stopped early), or frames without
        an entry while every id matched (images where the detector found nobody).
        """
        if not self.frames or not self.ids:
            return None
        unmatched = [k for k in self.ids if k not in self.matched]
        noun = "frame" if self.video_frames == self.frames else "image"
        like = ", ".join(_short_id(k) for k in unmatched[:3])
        hint = f"ids like {like}; expected frame indices, file names or COCO ids such as 000000397133.jpg"
        ids, seen = _count(len(self.ids), "image id"), _count(self.frames, noun)
        if len(unmatched) == len(self.ids):
            return f"{self.path.name}: none of its {ids} matched the {seen} ({hint})"
        if unmatched and self.frames_without_entries:
            return (
                f"{self.path.name}: {len(unmatched)} of its {ids} matched none of the {seen}, and "
                f"{_count(self.frames_without_entries, noun)} found no entry (unmatched {hint})"
            )
        return None


# the digits that end a file stem: 000000397133, COCO_val2014_000000397133, 00001 and frame_0001 (ffmpeg's
# `frame_%04d.png`) hold 397133, 397133, 1 and 1
_NAME_NUMBER = re.compile(r"([0-9]+)$")


def _coco_id(stem: str) -> int | None:
    """The number that ends a file stem (a COCO image id or a frame number), leading zeros ignored, or None."""
    match = _NAME_NUMBER.search(stem)
    return int(match.group(1)) if match else None


def _folder_reading(ints: list[int], names: list[str], numbers: dict[int, int], path: Path) -> str:
    """ "index" or "number" for integer ids on images `names` whose positions hold `numbers`: the reading under which
    every id names an image, else the only one under which any does; a ClposeError where both fit and differ."""
    if not ints or not numbers or all(numbers.get(i) == i for i in range(len(names))):
        return "index"  # no name holds a number, or every number is its position: the readings agree
    as_number = set(numbers.values())
    fit_index = [0 <= k < len(names) for k in ints]
    fit_number = [k in as_number for k in ints]
    covers = {"index": all(fit_index), "number": all(fit_number)}
    matches = {"index": any(fit_index), "number": any(fit_number)}
    for judged in (covers, matches):
        if judged["index"] != judged["number"]:
            return "index" if judged["index"] else "number"
    if not matches["index"]:
        return "index"  # neither names any image: the end-of-run warning says so
    first, number = min(numbers.items(), key=lambda item: item[1])
    raise ClposeError(
        f"boxes file {path}: its integer image ids fit these {len(names)} images two ways: as the number in each "
        f"file name (id {number} = {names[first]}; {sum(fit_number)} of {len(ints)} ids name an image) or as 0-based "
        f"positions in sorted order (id 0 = {names[0]}; {sum(fit_index)} of {len(ints)}); say which with "
        "--boxes-ids number or --boxes-ids index, or key the entries by file_name"
    )


def _video_reading(ints: list[int], count: int, path: Path) -> str:
    """0-based frame indices, unless the ids look 1-based: no 0 and either a first id of 1 or a last id of the frame
    count (0-based, that frame does not exist). Those are refused: the two readings give every frame other boxes."""
    if not ints or min(ints) < 1:
        return "index"
    frames = f"a video of {count} frames" if count > 0 else "a video"
    if count > 0 and max(ints) == count:
        why = "0-based, the last has no frame"
    elif min(ints) == 1:
        why = "0-based, frame 0 has no entry"
    else:
        return "index"
    raise ClposeError(
        f"boxes file {path}: its integer image ids run from {min(ints)} to {max(ints)} on {frames}, as 1-based frame "
        f"numbers would ({why}); say which with --boxes-ids number (1-based) or --boxes-ids index (0-based)"
    )


def _check_numbers_unique(names: list[str], numbers: dict[int, int], path: Path) -> None:
    seen: dict[int, int] = {}
    for position, number in numbers.items():
        if number in seen:
            raise ClposeError(
                f"boxes file {path}: integer image ids read as file-name numbers name both {names[seen[number]]} "
                f"and {names[position]} (number {number}); key the entries by file_name"
            )
        seen[number] = position


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _short_id(key: int | str) -> str:
    return str(key) if isinstance(key, int) else json.dumps(key)[:40]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _entry(e: object, i: int, path: Path, num_keypoints: int | None) -> tuple[int | str, list[float], float]:
    """(key, bbox, score) of entry `i` of a boxes file, or a ClposeError naming the file, the entry and the key."""
    where = f"boxes file {path}: entry {i}"
    if not isinstance(e, dict) or "bbox" not in e or not ({"image_id", "file_name"} & set(e)):
        raise ClposeError(f"{where} needs bbox and image_id (or file_name)")
    if "file_name" in e:
        key = e["file_name"]
        if not isinstance(key, str):
            raise ClposeError(f"{where} file_name must be a string, got {key!r}")
    else:
        key = e["image_id"]
        if isinstance(key, float) and key.is_integer():
            key = int(key)  # 397133.0 is image 397133
        if not isinstance(key, int | str) or isinstance(key, bool):
            raise ClposeError(f"{where} image_id must be an integer or a file name, got {key!r}")
    if "category_id" in e and (not _number(e["category_id"]) or e["category_id"] != COCO_PERSON):
        raise ClposeError(f"{where} is category {e['category_id']!r}, not a person (1): pose models need person boxes")
    if num_keypoints is not None and "keypoints" in e:
        if not isinstance(e["keypoints"], list):
            raise ClposeError(f"{where} keypoints must be a list [x1, y1, v1, ...], got {e['keypoints']!r}")
        if len(e["keypoints"]) != 3 * num_keypoints:
            raise ClposeError(
                f"{where} carries {len(e['keypoints']) // 3} keypoints but the checkpoint's skeleton has "
                f"{num_keypoints}: boxes from another skeleton"
            )
    bbox = e["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ClposeError(f"{where} bbox must be [x, y, w, h]")
    if not all(_number(v) for v in bbox):
        raise ClposeError(f"{where} bbox must be 4 numbers, got {bbox!r}")
    box = np.asarray(bbox, dtype=np.float64)
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        # a NaN or empty box would crop nothing and write NaN tokens (not JSON) into the output
        raise ClposeError(f"{where} bbox {bbox!r} needs finite numbers and a positive width and height")
    score = e.get("score", 1.0)
    if not _number(score) or not math.isfinite(score):
        # a NaN score is silently below any threshold; a string one is no score at all
        raise ClposeError(f"{where} score must be a finite number, got {score!r}")
    return key, [float(v) for v in bbox], float(score)


class PersonDetector:
    """A torchvision detector trained on COCO, person boxes only (clpose.weights.DETECTORS: the Faster R-CNNs and
    `ssdlite320_mobilenet_v3_large`, the fast one). Its weights come by name through clpose.weights (fetched once,
    verified, cached) or from a local file. The network is built without weights and without its ImageNet backbone
    (`weights_backbone=None`): nothing else is ever downloaded.

    `runtime` (auto or a name in clpose.engine.runtime_names.RUNTIMES) runs the network of a fixed-size single-shot
    detector (SSD): torch, or its ONNX graph in a graph runtime (clpose.inference.detector_graph: exported once per
    weights file into the user's graph cache and checked); the boxes are decoded in torch either way. A Faster R-CNN
    always runs in torch (its proposals and RoI heads are not exported), and `runtime_info.why` says so. `precision`
    is the one the pose network runs in with torch (OpenVINO follows it to bf16 where the CPU has it natively); torch
    runs the detector in fp32. With the pose network in int8 (`--int8`), an SSD's graph is quantised too, calibrated
    on `calibration`'s frames and checked against fp32 (clpose.inference.detector_int8).
    """

    def __init__(
        self,
        name: str,
        weights: Path | None,
        device: torch.device,
        threshold: float = 0.5,
        runtime: str = "torch",
        threads: int | None = None,
        precision: Precision | None = None,
        calibration: DetectorFrames | None = None,
    ) -> None:
        import torchvision.models.detection as detection

        from clpose.weights import resolve_detector

        builder, resolved = resolve_detector(name, weights)
        self.name, self.weights = builder, resolved
        self.model = getattr(detection, builder)(weights=None, weights_backbone=None)
        state, digest = read_tensors(resolved.path, "detector weights")  # the loaded bytes key the exported graph
        try:
            self.model.load_state_dict(state)
        except Exception as e:  # a corrupt file, or a state dict of another network
            raise ClposeError(
                f"detector weights {resolved.path} do not fit {builder} ({type(e).__name__}: {first_line(e)})"
            ) from None
        self.model.to(device).eval()
        self.device, self.threshold = torch.device(device), threshold
        self.decoder: SSDDecoder | None = None
        self.runner: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.calibration = calibration
        self.runtime_info = self._use_runtime(runtime, threads or torch.get_num_threads(), precision, digest)

    def _use_runtime(self, requested: str, threads: int, precision: Precision | None, digest: str) -> RuntimeInfo:
        from clpose.engine.graph_cache import NoGraphCache
        from clpose.engine.runtimes import (
            TORCH,
            RuntimeChoice,
            RuntimeInfo,
            choose_runtime,
            graph_runner,
            package_version,
            parity_check,
            runtime_precision,
        )
        from clpose.inference.detector_graph import SSDDecoder, SSDNetwork, cached_graph, exportable

        fp32 = Precision("fp32", "off", "the detector runs fp32 in torch")
        choice = choose_runtime(requested, self.device)  # the name, the device and the package checked for all
        if not exportable(self.model):
            why = choice.why if choice.name == TORCH else f"{choice.name} runs the pose network; {_NOT_EXPORTED}"
            return RuntimeInfo(TORCH, torch.__version__, why, fp32, threads)
        network = SSDNetwork(self.model).eval()
        self.decoder, self.runner = SSDDecoder(self.model, network), network
        if choice.name == TORCH:
            return RuntimeInfo(TORCH, torch.__version__, choice.why, fp32, threads)
        int8 = precision is not None and precision.name == "int8"
        if precision is None or precision.name not in ("fp32", "bf16"):
            precision = Precision("fp32", "off", "the detector's graph is fp32")
        precision = runtime_precision(choice.name, precision)
        try:
            graph = cached_graph(self.name, digest, network, choice.name, parity_check(choice.name))
        except NoGraphCache as e:
            if requested != "auto":
                raise
            choice = RuntimeChoice(TORCH, f"auto: {choice.name} needs a graph cache ({e})")
            return RuntimeInfo(TORCH, torch.__version__, choice.why, fp32, threads)
        if int8:
            from clpose.inference.detector_graph import graph_key
            from clpose.inference.detector_int8 import detector_int8_graph
            from clpose.precision import int8_precision

            precision = int8_precision()
            made = detector_int8_graph(
                graph, graph_key(digest, self.name, network, network.hw), self.decoder, network, self.calibration,
                self.threshold, choice.name, lambda path: graph_runner(choice.name, path, threads, precision),
            )  # fmt: skip
            self.runner = graph_runner(choice.name, Path(made["graph"]), threads, precision)
            return RuntimeInfo(choice.name, package_version(choice.name), choice.why, precision, threads, int8=made)
        self.runner = graph_runner(choice.name, graph, threads, precision)
        return RuntimeInfo(choice.name, package_version(choice.name), choice.why, precision, threads)

    @torch.inference_mode()
    def boxes(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) [x, y, w, h] in frame pixels and their scores (N,), best first, of a BGR frame."""
        # a network in torch runs with its threads (infer runs torch on one thread beside a graph runtime)
        info = self.runtime_info
        threads = nullcontext() if info.runs_graph else torch_threads(info.threads)
        if self.decoder is not None and self.runner is not None:
            x = self.decoder.input(image_bgr).to(self.device)
            with threads:
                out = self.runner(x)[0].to(self.device)
            xyxy_t, scores_t = self.decoder(out, image_bgr.shape[:2], self.threshold)
            xyxy, scores = xyxy_t.cpu().numpy(), scores_t.cpu().numpy()
        else:
            rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
            with threads:
                out = self.model([rgb.to(self.device)])[0]
            keep = (out["labels"] == COCO_PERSON) & (out["scores"] >= self.threshold)
            xyxy, scores = out["boxes"][keep].cpu().numpy(), out["scores"][keep].cpu().numpy()
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1) if len(xyxy) else np.zeros((0, 4))
        return xywh, scores
