"""What `clpose demo` says and leaves: the summary printed at its end, and the check of its output folder that
.ci/run asks of a shortened demo (every picture decodes, the videos have their frames, the JSON parses)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.rule import Rule
from rich.table import Table

from clpose.console import console, styled
from clpose.demo import DemoResult, model_label
from clpose.errors import ClposeError


def print_summary(result: DemoResult) -> None:
    console.print(Rule(styled(("clpose demo: summary", "bold green")), align="left"))
    console.print(
        styled(
            (f"PCK@0.2 on the synthetic validation split: {result.pck:.1f}%", "bold"),
            f" ({result.epochs} epochs; the whole demo took {result.seconds / 60:.1f} minutes)",
        )
    )
    m = result.model
    console.print(
        f"{model_label(m['name'])}: {m['params_m']:.2f} M parameters, {m['gmacs']:.2f} GMACs, {m['fps']:.0f} FPS "
        f"on this CPU ({m['precision']}, batch 1, {m['input_size']})"
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    for name, path in result.outputs.items():
        table.add_row(name, path)
    console.print(table)
    clip, run = result.out / "data" / "clip.mp4", result.out / "train"
    console.print(styled("\n", ("Next:", "bold")))
    for line in (
        f"clpose infer {clip} --checkpoint {run} --boxes {clip.with_suffix('.boxes.json')} --smooth oneeuro "
        "--out my.mp4",
        f"clpose eval {run} --no-flip --json result.json               # without the flip test",
        "clpose bench --fps --flops                       # CLNet-ResNet-50 vs SimpleBaseline-ResNet-50",
        "clpose prepare mpii --root data/mpii && clpose train recipes/mpii_resnet50.yaml     # on a GPU",
        "torchrun --nproc_per_node=8 -m clpose train recipes/coco_resnet50_256x192.yaml     # several GPUs",
        "docs/: method, datasets, training, evaluation, inference, benchmarks, reproducing",
    ):
        console.print(f"  {line}")


def check_outputs(out: Path) -> str:
    """Check what a demo left in `out` (what .ci/run asks of its shortened demo): every PNG decodes, the clip and
    the annotated video have frames and as many as poses.json, every JSON parses, the PCK is a number. Returns a
    one-line account; a ClposeError names the first file at fault."""
    import cv2

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ClposeError(message)

    jsons = sorted(out.rglob("*.json"))
    for path in jsons:
        try:
            json.loads(path.read_text())
        except ValueError as e:
            raise ClposeError(f"{path} is not valid JSON: {e}") from None
    need((out / "summary.json").is_file(), f"{out / 'summary.json'} is missing")
    pck = json.loads((out / "summary.json").read_text()).get("pck")
    need(isinstance(pck, float) and 0 <= pck <= 100, f"{out / 'summary.json'}: pck {pck!r} is not a percentage")
    need(json.loads((out / "eval.json").read_text()).get("Mean") == pck, f"{out / 'eval.json'}: Mean is not {pck}")
    need((out / "train" / "best.pt").is_file(), f"{out / 'train' / 'best.pt'} is missing")
    pngs = sorted(out.rglob("*.png"))
    need(len(pngs) >= 4, f"{out}: expected target, prediction and curve PNGs, found {len(pngs)}")
    for path in pngs:
        image = cv2.imread(str(path))
        need(image is not None and image.size > 0, f"{path} does not decode")
    frames = {}
    for name in ("data/clip.mp4", "video/annotated.mp4"):
        video = cv2.VideoCapture(str(out / name))
        frames[name] = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = video.read()
        video.release()
        need(frames[name] > 0 and ok and frame is not None, f"{out / name}: no readable frames")
    poses = len(json.loads((out / "video" / "poses.json").read_text())["frames"])
    need(
        poses == frames["video/annotated.mp4"],
        f"{out / 'video' / 'poses.json'}: {poses} frames, the video {frames['video/annotated.mp4']}",
    )
    return f"demo outputs valid: PCK {pck:.1f}%, {len(pngs)} PNGs, {len(jsons)} JSON files, {poses} video frames"
