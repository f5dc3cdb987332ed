"""Check what a shortened `clpose demo` left in DIR: every PNG decodes, the videos have frames, every JSON parses
and the PCK is a number. Usage: python .ci/check_demo.py DIR"""

import json
import math
import sys
from pathlib import Path

import cv2

out = Path(sys.argv[1])
summary = json.loads((out / "summary.json").read_text())
pck = summary["pck"]
assert isinstance(pck, float) and math.isfinite(pck) and 0 <= pck <= 100, f"PCK is not a number: {pck!r}"
assert json.loads((out / "eval.json").read_text())["Mean"] == pck
jsons = sorted(out.rglob("*.json"))
for path in jsons:
    json.loads(path.read_text())
pngs = sorted(out.rglob("*.png"))
assert len(pngs) >= 4, f"expected target, prediction and curve pictures, found {pngs}"
for path in pngs:
    image = cv2.imread(str(path))
    assert image is not None and image.size > 0, f"{path} does not decode"
for name in ("data/clip.mp4", "video/annotated.mp4"):
    video = cv2.VideoCapture(str(out / name))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = video.read()
    assert frames > 0 and ok and frame.shape == (360, 640, 3), f"{name}: {frames} frames, first read {ok}"
poses = json.loads((out / "video/poses.json").read_text())
assert len(poses["frames"]) == frames, f"poses.json has {len(poses['frames'])} frames, the video {frames}"
assert (out / "train/best.pt").is_file()
print(f"demo outputs valid: PCK {pck:.1f}%, {len(pngs)} PNGs, {len(jsons)} JSON files, {frames} video frames")
