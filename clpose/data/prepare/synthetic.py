"""The built-in synthetic data set: JPEG images and records in the same format as the real data sets."""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clpose.data.prepare.common import ImageTable, Report
from clpose.data.records import Records, new_records
from clpose.data.synthetic import person_box, render_sample
from clpose.data.synthetic_video import ClipSpec, check_clip, present, render_video_frames
from clpose.data.transforms import box_to_center_scale
from clpose.errors import ClposeError, first_line
from clpose.io import json_text, opencv_path, staged
from clpose.outputs import OwnedFolder
from clpose.progress import ProgressBar

SPLIT_IDS = {"train": 0, "valid": 1}
MIN_SIZE, MAX_SIZE = 64, 4096  # the synthetic images' side: a figure needs 64 px; 4096 px is 48 MB an image


def _render_chunk(args: tuple[Path, str, int, int, int, int]) -> list[dict]:
    """Render images [start, stop) of a split into `folder`; each image's generator is seeded by
    (seed, split, index), so the data does not depend on how the work is divided."""
    folder, split, seed, size, start, stop = args
    cv2.setNumThreads(1)
    people = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, SPLIT_IDS[split], i])
        image, figure = render_sample(rng, size)
        file = f"{split}/{i:06d}.jpg"
        if not cv2.imwrite(str(folder / file), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise ClposeError(f"could not write {folder / file}")
        keypoints = np.concatenate([figure.joints, figure.visibility[:, None]], axis=1)
        keypoints[figure.visibility == 0] = 0.0
        box = person_box(figure.joints, figure.height)
        center, scale = box_to_center_scale(box)
        people.append(
            {
                "file": file,
                "center": center.tolist(),
                "scale": scale.tolist(),
                "box": box.tolist(),
                "keypoints": keypoints.tolist(),
                "extras": {"head_box": figure.head_box.tolist()},
            }
        )
    return people


def prepare_synthetic(
    out: Path, report: Report, counts: dict[str, int], size: int = 256, seed: int = 0, workers: int | None = None
) -> tuple[dict[str, Records], dict[str, ImageTable]]:
    if not MIN_SIZE <= size <= MAX_SIZE:  # a 200000-pixel image is 120 GB of memory: a typo, not a request
        raise ClposeError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")
    if workers is not None and workers < 1:
        raise ClposeError(f"--workers must be >= 1, got {workers}")
    for split, n in counts.items():
        if n < 1:
            raise ClposeError(f"--{'train' if split == 'train' else 'val'} must be >= 1, got {n}")
    image_dir = out / "images"
    # the generator writes images/train/00000.jpg ...: never into an images/ folder of the user's
    images = OwnedFolder(out, "prepare synthetic", ["images"], legacy=_older_synthetic)
    images.claim()
    images.record(["images"])
    # more processes than cores or images only cost their start (99999 tried to spawn 99999 of them)
    cores = os.cpu_count() or 1
    workers = min(workers or 4, cores, max(counts.values()))
    splits, tables = {}, {}
    for split, n in counts.items():
        (image_dir / split).mkdir(parents=True, exist_ok=True)
        step = max(1, -(-n // (workers * 8)))
        chunks = [(image_dir, split, seed, size, a, min(n, a + step)) for a in range(0, n, step)]
        rendered = []
        with ProgressBar(f"rendering {split}", n) as progress:
            if workers > 1:
                with multiprocessing.get_context("spawn").Pool(workers) as pool:
                    for part in pool.imap(_render_chunk, chunks):
                        rendered.extend(part)
                        progress.update(len(part))
            else:
                for chunk in chunks:
                    rendered.extend(_render_chunk(chunk))
                    progress.update(chunk[5] - chunk[4])
        table = ImageTable(image_dir)
        people = []
        for person in rendered:
            index = table.add(person.pop("file"), known_size=(size, size))
            people.append({"image_index": index, **person, "keypoints": np.array(person["keypoints"])})
        splits[split] = new_records(
            "synthetic",
            "synthetic",
            split,
            table.images,
            people,
            image_dir,
            [f"clpose synthetic generator, seed {seed}, size {size}"],
        )
        tables[split] = table
    return splits, tables


def _older_synthetic(out: Path) -> bool:
    """A folder an older clpose generated the synthetic set in (before the manifest): its summary says so."""
    try:
        return json.loads((out / "summary.json").read_text()).get("dataset") == "synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def video_outputs(path: Path) -> dict[str, Path]:
    """What `write_video(path)` writes: the clip, and the files named after it (the output guard checks all three)."""
    path = Path(path)
    return {
        "--video": path,
        "the clip's ground truth": path.with_suffix(".json"),
        "the clip's boxes": path.with_suffix(".boxes.json"),
    }


def clip_folder(path: Path) -> OwnedFolder:
    """The clip and the files named after it, as a command's own (PATH.json of the user's is never replaced); a clip
    of an older clpose is recognised by its ground truth."""
    names = [p.name for p in video_outputs(path).values()]
    return OwnedFolder(Path(path).parent, "prepare --video", names, lambda f: _older_clip(path), option="--video into")


def _older_clip(path: Path) -> bool:
    try:
        truth = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(truth, dict) and truth.get("skeleton") == "synthetic" and isinstance(truth.get("frames"), list)


def write_video(
    path: Path,
    frames: int,
    seed: int = 0,
    width: int = 640,
    height: int = 360,
    fps: float = 25.0,
    people: int = 2,
    motion: str = "drift",
    speed: float | None = None,
    enter: int = 0,
    leave: int = 0,
) -> Path:
    """Render a clip of moving figures to `path` (mp4v), its ground truth to PATH.json and person boxes (COCO
    results format, for `clpose infer --boxes`) to PATH.boxes.json; the three appear together or not at all.

    `motion` (clpose.data.synthetic_video.MOTIONS): "drift" is the demo's clip; "walk" and "fast" figures move
    `speed` frame widths per second (default: the motion's), the last `enter` of them entering part-way through
    and the `leave` before those leaving. The ground truth lists, per frame, the people in it (at least one joint
    inside the image) by their `person` id, and per person the frame it `enters` and the one it `leaves` at."""
    spec = ClipSpec(frames, width, height, fps, people, motion, speed, enter, leave)
    check_clip(spec)
    owned = clip_folder(path)
    owned.claim()  # the files named after the clip replace only clip files clpose wrote
    owned.record(owned.names)
    rng = np.random.default_rng([seed, 7])
    truth: list[dict] = []
    video, truth_path, boxes_path = video_outputs(path).values()
    with staged() as stage:
        tmp = stage.path(video)
        writer = cv2.VideoWriter(opencv_path(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise ClposeError(f"OpenCV cannot write the video {path} (mp4v codec unavailable)")
        try:
            for frame, joints, vis in render_video_frames(rng, spec):
                writer.write(frame)
                truth.append({"frame": len(truth), "people": _people_in(joints, vis)})
        finally:
            writer.release()
        stage.write_text(truth_path, json_text(_truth_record(spec, truth), indent=None))
        boxes = truth_boxes(truth, np.random.default_rng([seed, 8]))
        stage.write_text(boxes_path, json_text(boxes, indent=None))
    return path


def _people_in(joints: np.ndarray, vis: np.ndarray) -> list[dict]:
    """The ground truth of one frame: the people in it, by id, with their keypoints (16, 3) [x, y, v]."""
    return [
        {"person": p, "keypoints": np.round(np.concatenate([joints[p], vis[p][:, None]], 1), 3).tolist()}
        for p in np.flatnonzero(present(vis)).tolist()
    ]


def _truth_record(spec: ClipSpec, frames: list[dict]) -> dict:
    """PATH.json: the clip's size and rate, how its figures move, when each is in the frame, and every frame."""
    seen: dict[int, list[int]] = {p: [] for p in range(spec.people)}
    for frame in frames:
        for person in frame["people"]:
            seen[person["person"]].append(frame["frame"])
    schedule = [
        {
            "person": p,
            "enters": at[0] if at else None,
            "leaves": at[-1] + 1 if at and at[-1] < spec.frames - 1 else None,
        }
        for p, at in seen.items()
    ]
    return {
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "skeleton": "synthetic",
        "motion": {"name": spec.motion, "speed": spec.pace, "step": spec.step},
        "people": schedule,
        "frames": frames,
    }


def truth_boxes(frames: list[dict], rng: np.random.Generator, jitter: float = 0.02) -> list[dict]:
    """Person boxes of a clip in COCO results format (image_id = frame index), standing in for a detector: the
    keypoints' bounding box enlarged 16%, with `jitter` x size of random error per frame, as a detector's; each
    carries the `person` id of the ground truth. Only the people in a frame have a box in it."""
    boxes = []
    for frame in frames:
        for person in frame["people"]:
            kp = np.array(person["keypoints"])[:, :2]
            lo, hi = kp.min(0), kp.max(0)
            size = hi - lo
            lo = lo - 0.08 * size + rng.normal(0, jitter, 2) * size
            size = size * (1.16 + rng.normal(0, jitter, 2))
            boxes.append(
                {
                    "image_id": frame["frame"],
                    "category_id": 1,
                    "bbox": [round(float(v), 2) for v in (*lo, *size)],
                    "score": 1.0,
                    "person": person["person"],
                }
            )
    return boxes


@dataclass(frozen=True)
class ClipTruth:
    """A clip's ground truth (write_video's PATH.json) as arrays, person id = index along P.

    keypoints (F, P, 16, 3): [x, y, v] in image pixels; v = 2 inside the image, 0 outside it, and all 0 for a person
    not in that frame. present (F, P): the person is in the frame (at least one joint inside). enters, leaves (P,):
    the first frame a person is in, and the first frame from which it is out to the end (None: never in, or in the
    last frame). step: the pixels every walking figure's pelvis moves per frame (None for "drift")."""

    width: int
    height: int
    fps: float
    keypoints: np.ndarray
    present: np.ndarray
    enters: list[int | None]
    leaves: list[int | None]
    step: float | None


def read_clip_truth(path: Path) -> ClipTruth:
    """Read PATH.json as `write_video` writes it; a missing key is a ClposeError naming the file and the key."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        people, frames = record["people"], record["frames"]
        keypoints = np.zeros((len(frames), len(people), 16, 3))
        for t, frame in enumerate(frames):
            for person in frame["people"]:
                p = person["person"]
                if not (isinstance(p, int) and 0 <= p < len(people)):
                    raise ValueError(f"frame {t}: person {p!r} is none of the {len(people)} people")
                keypoints[t, p] = person["keypoints"]
        return ClipTruth(
            int(record["width"]),
            int(record["height"]),
            float(record["fps"]),
            keypoints,
            (keypoints[..., 2] > 0).any(axis=-1),
            [p["enters"] for p in people],
            [p["leaves"] for p in people],
            record["motion"]["step"],
        )
    except (OSError, ValueError) as e:
        raise ClposeError(f"clip ground truth {path}: {first_line(e)}") from None
    except KeyError as e:
        raise ClposeError(
            f"clip ground truth {path} has no key {e} (`clpose prepare synthetic --video` writes it; an older clpose "
            "wrote no person ids: render the clip again)"
        ) from None
    except TypeError as e:
        raise ClposeError(
            f"clip ground truth {path} is not laid out as write_video writes it ({first_line(e)})"
        ) from None
