"""The built-in synthetic data set: JPEG images and records in the same format as the real data sets."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import cv2
import numpy as np

from clpose.data.prepare.common import ImageTable, Report
from clpose.data.records import Records, new_records
from clpose.data.synthetic import person_box, render_sample, render_video_frames
from clpose.data.transforms import box_to_center_scale
from clpose.errors import ClposeError
from clpose.io import json_text, staged
from clpose.outputs import OwnedFolder
from clpose.progress import ProgressBar

SPLIT_IDS = {"train": 0, "valid": 1}


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
    if size < 64:
        raise ClposeError(f"--size must be at least 64 pixels, got {size}")
    image_dir = out / "images"
    # the generator writes images/train/00000.jpg ...: never into an images/ folder of the user's
    images = OwnedFolder(out, "prepare synthetic", ["images"], legacy=_older_synthetic)
    images.claim()
    images.record(["images"])
    workers = workers or min(4, os.cpu_count() or 1)
    splits, tables = {}, {}
    for split, n in counts.items():
        if n < 1:
            raise ClposeError(f"--{'train' if split == 'train' else 'val'} must be >= 1, got {n}")
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


def write_video(
    path: Path, frames: int, seed: int = 0, width: int = 640, height: int = 360, fps: float = 25.0, people: int = 2
) -> Path:
    """Render a clip of moving figures to `path` (mp4v), its ground truth to PATH.json and person boxes (COCO
    results format, for `clpose infer --boxes`) to PATH.boxes.json; the three appear together or not at all."""
    if frames < 1:
        raise ClposeError(f"--frames must be >= 1, got {frames}")
    rng = np.random.default_rng([seed, 7])
    truth = []
    video, truth_path, boxes_path = video_outputs(path).values()
    with staged() as stage:
        tmp = stage.path(video)
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise ClposeError(f"OpenCV cannot write the video {path} (mp4v codec unavailable)")
        try:
            for frame, joints, vis in render_video_frames(rng, frames, width, height, people):
                writer.write(frame)
                truth.append(
                    {
                        "frame": len(truth),
                        "people": [
                            {"keypoints": np.round(np.concatenate([j, v[:, None]], 1), 3).tolist()}
                            for j, v in zip(joints, vis, strict=True)
                        ],
                    }
                )
        finally:
            writer.release()
        record = {"fps": fps, "width": width, "height": height, "skeleton": "synthetic", "frames": truth}
        stage.write_text(truth_path, json_text(record, indent=None))
        boxes = truth_boxes(truth, np.random.default_rng([seed, 8]))
        stage.write_text(boxes_path, json_text(boxes, indent=None))
    return path


def truth_boxes(frames: list[dict], rng: np.random.Generator, jitter: float = 0.02) -> list[dict]:
    """Person boxes of a clip in COCO results format (image_id = frame index), standing in for a detector: the
    keypoints' bounding box enlarged 16%, with `jitter` x size of random error per frame, as a detector's."""
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
                }
            )
    return boxes
