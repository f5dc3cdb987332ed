"""What a 1280x720 video costs `clpose infer` besides the networks: OpenCV reading (decoding) a frame and writing
(encoding) the annotated one, per container `infer --out` can write, one frame at a time as infer's reader and
writer threads do.

    python benchmarks/bench_video_io.py
    benchmarks/avx2only/run python benchmarks/bench_video_io.py

A 100-frame synthetic clip (`clpose prepare synthetic --video`'s writer) is read, then written again with each
codec; the times are per frame, medians of `--rounds`. A codec OpenCV's build cannot write here is said so.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from machine import cpu_description

from clpose.data.prepare.synthetic import write_video

CODECS = (("mp4v", "mp4"), ("MJPG", "avi"), ("avc1", "mp4"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reads: list[float] = []
    writes: dict[str, list[float]] = {fourcc: [] for fourcc, _ in CODECS}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(Path(tmp) / "clip.mp4", 100, 1, 1280, 720, 25, 1, "walk")
        for _ in range(args.rounds):
            capture, frames = cv2.VideoCapture(str(clip)), []
            start = time.perf_counter()
            while (got := capture.read())[0]:
                frames.append(got[1])
            reads.append((time.perf_counter() - start) / len(frames))
            capture.release()
            for fourcc, suffix in CODECS:
                writer = cv2.VideoWriter(str(Path(tmp) / f"out.{suffix}"), cv2.VideoWriter_fourcc(*fourcc), 25,
                                         (1280, 720))  # fmt: skip
                if not writer.isOpened():
                    continue
                start = time.perf_counter()
                for frame in frames:
                    writer.write(frame)
                writer.release()
                writes[fourcc].append((time.perf_counter() - start) / len(frames))
    print(f"CPU {cpu_description()}; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; medians of {args.rounds}")
    print(f"read (decode) a 1280x720 mp4v frame: {1000 * statistics.median(reads):.2f} ms")
    for fourcc, times in writes.items():
        said = f"{1000 * statistics.median(times):.2f} ms" if times else "cannot be written by this OpenCV build"
        print(f"write (encode) a 1280x720 frame, {fourcc}: {said}")


if __name__ == "__main__":
    main()
