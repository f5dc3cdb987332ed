"""Inference: the Predictor, `clpose infer` on images, folders and videos (also truncated ones), tracking and
One-Euro smoothing, and `clpose export` parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import write_checkpoint
from typer.testing import CliRunner

from clpose import ClposeError
from clpose.cli.app import app
from clpose.data.prepare.synthetic import write_video
from clpose.inference.predictor import Pose, Predictor
from clpose.inference.smoothing import OneEuro, PoseTracker, iou
from clpose.models import build_model
from clpose.recipes import recipe_from_dict

runner = CliRunner()


def make_checkpoint(
    path: Path, model: str = "clnet_resnet18", dataset: str = "synthetic", size: str = "64x64", codec: str = "composite"
) -> Path:
    """A checkpoint of a freshly initialised model (what training would write, minus the optimiser)."""
    loss = "heatmap_mse" if codec == "heatmap" else "composite"
    recipe = recipe_from_dict(
        {
            "model": {"name": model},
            "data": {"dataset": dataset, "root": "unused", "input_size": size},
            "codec": {"name": codec},
            "loss": {"name": loss},
        },
        name="test",
    )
    k = {"synthetic": 16, "mpii": 16, "coco": 17, "lsp": 14}[dataset]
    torch.manual_seed(0)
    return write_checkpoint(path, recipe, build_model(model, k).state_dict(), dataset, k)


def test_predictor_on_real_coco_images_with_gt_boxes(realdata: Path, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "coco.pt", dataset="coco", size="64x48")
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    data = json.loads((realdata / "coco" / "test_coco.json").read_text())
    images, boxes = [], []
    for img in data["images"]:
        images.append(cv2.imread(str(realdata / "coco" / img["file_name"])))
        boxes.append(np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == img["id"]]))
    batched = predictor.predict_batch(images, boxes)
    assert [len(p) for p in batched] == [len(b) for b in boxes]
    for image_boxes, poses in zip(boxes, batched, strict=True):
        for box, pose in zip(image_boxes, poses, strict=True):
            assert isinstance(pose, Pose) and pose.keypoints.shape == (17, 2) and pose.scores.shape == (17,)
            x, y, w, h = box
            pad = 0.25 * max(w, h) * 1.5  # the crop is the box fitted to 3:4 and padded 1.25
            assert (pose.keypoints[:, 0] >= x - pad).all() and (pose.keypoints[:, 0] <= x + w + pad).all()
            assert (pose.keypoints[:, 1] >= y - pad).all() and (pose.keypoints[:, 1] <= y + h + pad).all()
            np.testing.assert_allclose(pose.box, box)
    single = predictor.predict(images[0], boxes[0])
    np.testing.assert_allclose(single[0].keypoints, batched[0][0].keypoints, atol=1e-3)  # batching changes nothing
    whole = predictor.predict(images[0])
    assert len(whole) == 1 and whole[0].box.tolist() == [0, 0, images[0].shape[1], images[0].shape[0]]


def test_predictor_rejects_bad_images(tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "c.pt"), device="cpu")
    with pytest.raises(ClposeError, match=r"image 0 must be a BGR array \(H, W, 3\), got \(10, 10\)"):
        predictor.predict(np.zeros((10, 10), np.uint8))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=12, seed=3, width=160, height=96)


def _count(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    n, fps = 0, cap.get(cv2.CAP_PROP_FPS)
    while cap.read()[0]:
        n += 1
    return n, fps


@pytest.mark.parametrize("video", ["synthetic", "mmpose_demo.mp4"])
def test_infer_on_a_video_keeps_frame_count_and_fps(
    video: str, clip: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = clip if video == "synthetic" else request.getfixturevalue("realdata") / "video" / video
    ckpt = make_checkpoint(tmp_path / "c.pt")
    out, js = tmp_path / "out.mp4", tmp_path / "out.json"
    result = runner.invoke(
        app,
        [
            "infer",
            str(source),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--json",
            str(js),
            "--smooth",
            "oneeuro",
            "--batch",
            "4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _count(out) == _count(source)
    data = json.loads(js.read_text())
    assert len(data["frames"]) == _count(source)[0] and [f["frame"] for f in data["frames"]] == list(
        range(len(data["frames"]))
    )
    assert all(len(f["people"]) == 1 and f["people"][0]["track_id"] == 0 for f in data["frames"])
    assert data["skeleton"] == "synthetic" and len(data["frames"][0]["people"][0]["keypoints"]) == 16
    assert "frames/s" in result.output and "network" in result.output


def test_infer_with_a_boxes_file_tracks_two_people(clip: Path, tmp_path: Path) -> None:
    truth = json.loads(clip.with_suffix(".json").read_text())
    boxes = []
    for frame in truth["frames"]:
        for person in frame["people"]:
            kp = np.array(person["keypoints"])[:, :2]
            lo, hi = kp.min(0) - 5, kp.max(0) + 5
            boxes.append({"image_id": frame["frame"], "category_id": 1, "bbox": [*lo, *(hi - lo)], "score": 0.9})
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    js = tmp_path / "out.json"
    result = runner.invoke(
        app,
        [
            "infer",
            str(clip),
            "--checkpoint",
            str(make_checkpoint(tmp_path / "c.pt")),
            "--boxes",
            str(tmp_path / "boxes.json"),
            "--json",
            str(js),
        ],
    )
    assert result.exit_code == 0, result.output
    frames = json.loads(js.read_text())["frames"]
    ids = [[p["track_id"] for p in f["people"]] for f in frames]
    assert all(sorted(i) == [0, 1] for i in ids)  # two people, the same two ids throughout


def test_infer_on_an_image_and_a_folder(realdata: Path, tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "c.pt", dataset="mpii")
    image = realdata / "mpii" / "005808361.jpg"
    result = runner.invoke(app, ["infer", str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "a.png")).shape == cv2.imread(str(image)).shape
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((realdata / "mpii").glob("*.jpg"))[:3]:
        shutil.copy(p, folder)
    result = runner.invoke(
        app,
        [
            "infer",
            str(folder),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "o"),
            "--json",
            str(tmp_path / "o.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 3
    assert [r["image"] for r in json.loads((tmp_path / "o.json").read_text())["frames"]] == sorted(
        p.name for p in folder.iterdir()
    )


def test_a_truncated_video_is_predicted_as_far_as_it_can_be_read(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(10):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = video.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    js = tmp_path / "o.json"
    result = runner.invoke(
        app,
        [
            "infer",
            str(tmp_path / "cut.avi"),
            "--checkpoint",
            str(make_checkpoint(tmp_path / "c.pt")),
            "--json",
            str(js),
        ],
    )
    assert result.exit_code == 0, result.output
    read = len(json.loads(js.read_text())["frames"])
    assert 0 < read < 10 and f"{10 - read} frames could not be read" in " ".join(result.output.split())


def test_infer_bad_input(tmp_path: Path, clip: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "c.pt")
    (tmp_path / "empty").mkdir()
    cases = [
        (["infer", str(tmp_path / "empty"), "--checkpoint", str(ckpt)], "holds no images"),
        (["infer", str(clip), "--checkpoint", str(tmp_path / "missing.pt")], "missing.pt does not exist"),
        (["infer", str(tmp_path / "nope.mp4"), "--checkpoint", str(ckpt)], "nope.mp4 does not exist"),
        (
            ["infer", str(clip), "--checkpoint", str(ckpt), "--detector", "torchvision-fasterrcnn"],
            "FasterRCNN_ResNet50_FPN_Weights.COCO_V1 is not in the cache and CLPOSE_OFFLINE=1: download "
            "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth to ",
        ),
        (["infer", str(clip), "--checkpoint", str(ckpt), "--detector", "yolo"], "--detector 'yolo': unknown detector"),
        (["infer", str(clip), "--checkpoint", str(ckpt), "--detector-weights", "w.pth"], "needs --detector NAME"),
        (
            [
                "infer",
                str(clip),
                "--checkpoint",
                str(ckpt),
                "--detector",
                "torchvision-fasterrcnn",
                "--detector-weights",
                str(tmp_path / "w.pth"),
            ],
            "detector weights " + str(tmp_path / "w.pth") + " do not exist",
        ),
    ]
    (tmp_path / "coco_dets.json").write_text(
        json.dumps([{"image_id": 0, "category_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [0] * 51, "score": 1}])
    )
    cases.append(
        (
            ["infer", str(clip), "--checkpoint", str(ckpt), "--boxes", str(tmp_path / "coco_dets.json")],
            "17 keypoints but the checkpoint's skeleton has 16",
        )
    )
    (tmp_path / "cars.json").write_text(json.dumps([{"image_id": 0, "category_id": 3, "bbox": [0, 0, 5, 5]}]))
    cases.append(
        (["infer", str(clip), "--checkpoint", str(ckpt), "--boxes", str(tmp_path / "cars.json")], "not a person")
    )
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.split()), (message, result.stderr)


def test_one_euro_smooths_noise_and_follows_a_step() -> None:
    rng = np.random.default_rng(0)
    f = OneEuro(min_cutoff=1.0, beta=0.0)
    noisy = 100 + rng.normal(0, 2.0, 300)
    out = np.array([f(np.array([v]), t / 30)[0] for t, v in enumerate(noisy)])
    assert out[30:].std() < 0.35 * noisy[30:].std()
    g = OneEuro(min_cutoff=1.0, beta=0.05)
    step = np.where(np.arange(120) < 30, 0.0, 200.0)
    followed = np.array([g(np.array([v]), t / 30)[0] for t, v in enumerate(step)])
    assert followed[29] == 0.0 and abs(followed[45] - 200) < 2.0 and abs(followed[-1] - 200) < 1e-3
    h = OneEuro()
    h(np.array([1.0, 2.0]), 0.0)
    held = h(np.array([50.0, 60.0]), 0.1, valid=np.array([False, True]))
    assert held[0] == 1.0 and held[1] != 2.0  # a low-score measurement does not move its keypoint


def test_tracker_keeps_ids_by_overlap() -> None:
    tracker = PoseTracker()
    k = np.zeros((16, 2))
    s = np.ones(16)

    def poses(*boxes: list[float]) -> list[Pose]:
        return [Pose(k.copy(), s, np.array(b, dtype=np.float64), 1.0, 1.0) for b in boxes]

    a = tracker.update(poses([0, 0, 10, 10], [50, 50, 10, 10]), 0, 0.0)
    b = tracker.update(poses([52, 51, 10, 10], [1, 1, 10, 10]), 1, 0.04)  # the same people, listed the other way
    assert [p.track_id for p in a] == [0, 1] and [p.track_id for p in b] == [1, 0]
    c = tracker.update(poses([200, 200, 10, 10]), 2, 0.08)
    assert c[0].track_id == 2
    assert iou(np.array([0, 0, 10, 10]), np.array([[5, 0, 10, 10]]))[0, 0] == pytest.approx(50 / 150)


@pytest.mark.parametrize(("fmt", "decode"), [("onnx", False), ("onnx", True), ("torchscript", True)])
@pytest.mark.parametrize("model", ["clnet_resnet18", "simplebaseline_resnet18"])
def test_export_parity(fmt: str, decode: bool, model: str, tmp_path: Path) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'clpose[export]'")
        pytest.importorskip("onnxscript", reason="the export extra is not installed: pip install 'clpose[export]'")
    codec = "heatmap" if model.startswith("simple") else "composite"
    ckpt = make_checkpoint(tmp_path / "c.pt", model=model, codec=codec)
    out = tmp_path / f"m.{fmt}"
    args = ["export", str(ckpt), "--format", fmt, "--out", str(out), "--dynamic-batch"] + (
        ["--with-decode"] if decode else []
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.is_file() and result.output.count("parity on") == 2
    if fmt == "onnx" and decode:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        keypoints, scores = session.run(
            None, {"images": np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)}
        )
        assert keypoints.shape == (3, 16, 2) and scores.shape == (3, 16)


def test_ctrl_c_still_finalises_the_video_and_the_json(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clpose.inference import run as infer_run

    real, calls = infer_run._Step.__call__, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(infer_run._Step, "__call__", interrupted)
    out, js = tmp_path / "o.mp4", tmp_path / "o.json"
    result = runner.invoke(
        app,
        [
            "infer",
            str(clip),
            "--checkpoint",
            str(make_checkpoint(tmp_path / "c.pt")),
            "--out",
            str(out),
            "--json",
            str(js),
            "--batch",
            "2",
        ],
    )
    assert result.exit_code == 130 and "stopped (Ctrl-C or SIGTERM) after 4 frames" in result.output
    assert _count(out)[0] == 4  # a playable video of the frames done so far
    data = json.loads(js.read_text())
    assert data["interrupted"] is True and len(data["frames"]) == 4
    temporary = [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".clpose-prepare-video.json"]
    assert not temporary  # no temporary files left (the clip generator's manifest is its record, not one)


def test_fasterrcnn_detector_from_a_local_file(tmp_path: Path) -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    clip = write_video(tmp_path / "short.mp4", frames=2, seed=4, width=96, height=64)  # the detector is slow on a CPU
    torch.manual_seed(0)
    weights = tmp_path / "frcnn.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), weights)
    js = tmp_path / "o.json"
    args = [
        "infer",
        str(clip),
        "--checkpoint",
        str(make_checkpoint(tmp_path / "c.pt")),
        "--detector",
        "torchvision-fasterrcnn",
        "--detector-weights",
        str(weights),
        "--det-threshold",
        "0.0",
        "--json",
        str(js),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    frames = json.loads(js.read_text())["frames"]
    assert len(frames) == 2 and all(isinstance(f["people"], list) for f in frames)
    torch.save({"backbone.body.conv1.weight": torch.zeros(3)}, weights)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "do not fit fasterrcnn_resnet50_fpn" in result.stderr
