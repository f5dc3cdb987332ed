"""Data pipeline benchmark: samples/s of one worker for COCO-style 256x192 crops from 640x480 JPEGs, and the
synthetic generator's images/s on one core.

    python benchmarks/bench_data.py

The JPEGs are the real COCO sample photos of ../shared/realdata/coco resized to 640x480 (synthetic scenes
when that folder is absent), with their people. One process, one OpenCV thread, one torch thread: what one
data-loader worker gets. The parts (decode, warp, encode, normalise) are timed by calling the same functions
the dataset calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.config import AugmentConfig
from clpose.data.dataset import READ_FLAGS, TopDownDataset, load_image, normalize
from clpose.data.records import load_records, new_records
from clpose.data.synthetic import render_sample
from clpose.data.transforms import warp
from clpose.skeletons import COCO

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "coco"


def make_records(folder: Path):
    """640x480 JPEGs (quality 90) with COCO people; from the real sample photos when they are available."""
    images, people = [], []
    if (REALDATA / "test_coco.json").is_file():
        from clpose.data.prepare import run_prepare

        run_prepare("coco", REALDATA, folder / "prep", ["val=test_coco.json"], ["."], show=False)
        src = load_records(folder / "prep" / "val.json")
        for j, img in enumerate(src.images):
            photo = cv2.imread(str(src.image_dir / img["file"]), READ_FLAGS)
            sx, sy = 640 / photo.shape[1], 480 / photo.shape[0]
            cv2.imwrite(str(folder / f"{j}.jpg"), cv2.resize(photo, (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 90])
            images.append({"id": j, "file": f"{j}.jpg", "width": 640, "height": 480})
            for i in np.flatnonzero(src.image_index == j):
                kpts = src.keypoints[i].copy()
                kpts[:, 0] *= sx
                kpts[:, 1] *= sy
                people.append(
                    {
                        "image_index": j,
                        "center": src.centers[i] * (sx, sy),
                        "scale": src.scales[i] * (sx, sy),
                        "keypoints": kpts,
                    }
                )
        source = "COCO sample photos"
    else:
        rng = np.random.default_rng(0)
        for j in range(8):
            scene, _ = render_sample(rng, 480)
            cv2.imwrite(str(folder / f"{j}.jpg"), cv2.resize(scene, (640, 480)), [cv2.IMWRITE_JPEG_QUALITY, 90])
            images.append({"id": j, "file": f"{j}.jpg", "width": 640, "height": 480})
            kpts = np.zeros((17, 3))
            kpts[:, :2] = rng.uniform(200, 400, (17, 2))
            kpts[:, 2] = 2
            people.append({"image_index": j, "center": [320, 240], "scale": [1.0, 1.6], "keypoints": kpts})
        source = "synthetic scenes"
    return new_records("coco", "coco", "bench", images, people, folder, []), source


def per_sample_ms(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    aug = AugmentConfig(scale_factor=0.35, rotation_factor=45, half_body_prob=0.3, color_jitter=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        records, source = make_records(Path(tmp))
        n_people = len(records)
        paths = [str(records.image_path(i)) for i in range(n_people)]
        print(f"{n_people} people on {len(records.images)} 640x480 JPEGs ({source}); 1 process, 1 thread\n")
        rows = []
        for name, codec in (
            ("composite S=16", CompositeCodec((256, 192), 16)),
            ("heatmap S=4", HeatmapCodec((256, 192), 4)),
        ):
            ds = TopDownDataset(records, COCO, codec, (256, 192), train=True, augment=aug)
            image = load_image(paths[0])
            affine, _, jitter = ds.crop_geometry(0)
            crop = warp(image, affine, (256, 192))
            kp, vis = records.keypoints[0, :, :2], records.keypoints[0, :, 2]
            parts = {"total": [], "decode": [], "imread": [], "warp": [], "encode": [], "normalise": []}
            for _ in range(args.rounds):  # interleaved rounds; medians reported
                parts["total"].append(per_sample_ms(lambda i, d=ds: d[i % n_people], args.samples))
                parts["decode"].append(per_sample_ms(lambda i: load_image(paths[i % n_people]), args.samples))
                parts["imread"].append(  # OpenCV's decode of the same files, for the ratio
                    per_sample_ms(lambda i: cv2.imread(paths[i % n_people], READ_FLAGS), args.samples)
                )
                parts["warp"].append(
                    per_sample_ms(
                        lambda i, a=affine, im=image: warp(im, a, (256, 192)),
                        args.samples,
                    )
                )
                parts["encode"].append(per_sample_ms(lambda i, c=codec, k=kp, v=vis: c.encode(k, v), args.samples))
                parts["normalise"].append(per_sample_ms(lambda i, c=crop, j=jitter: normalize(c, j), args.samples))
            med = {k: statistics.median(v) for k, v in parts.items()}
            rows.append((name, med))
        print(
            "| codec | samples/s | total ms | decode ms (cv2.imread ms) | warp ms | encode ms | normalise+jitter ms "
            "| encode share |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, m in rows:
            print(
                f"| {name} | {1e3 / m['total']:.0f} | {m['total']:.3f} | {m['decode']:.3f} ({m['imread']:.3f}) | "
                f"{m['warp']:.3f} | "
                f"{m['encode']:.3f} | {m['normalise']:.3f} | {100 * m['encode'] / m['total']:.1f}% |"
            )

    rng_times = []
    for r in range(args.rounds):
        start = time.perf_counter()
        for i in range(100):
            image, _ = render_sample(np.random.default_rng([0, r, i]), 256)
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        rng_times.append((time.perf_counter() - start) / 100)
    rate = 1 / statistics.median(rng_times)
    print(f"\nsynthetic generator, 256x256, render + JPEG encode, one core: {rate:.0f} images/s")


if __name__ == "__main__":
    main()
