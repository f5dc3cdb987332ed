"""Records, affine maths and TopDownDataset on small synthetic inputs made in the test."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from clpose.codecs import CompositeCodec, HeatmapCodec
from clpose.config import AugmentConfig
from clpose.data.dataset import TopDownDataset, denormalize, normalize
from clpose.data.records import load_records, new_records, records_path, save_records
from clpose.data.transforms import apply_affine, box_size, get_affine, half_body_box, invert_affine
from clpose.errors import ClposeError
from clpose.skeletons import MPII, SYNTHETIC


def _records(tmp_path: Path, n: int = 3, size: int = 120) -> tuple:
    """n images, each a grey image with a white dot at every labelled keypoint of its person."""
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir(exist_ok=True)
    images, people = [], []
    for i in range(n):
        kpts = np.zeros((16, 3))
        kpts[:, :2] = rng.uniform(30, 90, (16, 2)).round()
        kpts[:, 2] = 2
        kpts[5] = 0  # one unlabelled keypoint
        img = np.full((size, size, 3), 40, np.uint8)
        for x, y, v in kpts:
            if v:
                img[int(y), int(x)] = 255
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), img)
        images.append({"id": 100 + i, "file": f"{i}.png", "width": size, "height": size})
        people.append(
            {
                "image_index": i,
                "center": [60.0, 60.0],
                "scale": [0.4, 0.4],
                "keypoints": kpts,
                "extras": {"head_box": [1, 2, 3, 4]},
            }
        )
    records = new_records("synthetic", "synthetic", "train", images, people, tmp_path / "img", ["test"])
    return records


def test_records_round_trip_through_json(tmp_path: Path) -> None:
    records = _records(tmp_path)
    save_records(records_path(tmp_path, "train"), records)
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["format"] == "clpose-records" and data["image_root"] == "img"
    loaded = load_records(tmp_path / "train.json")
    assert len(loaded) == 3 and loaded.image_id(1) == 101
    np.testing.assert_allclose(loaded.keypoints, records.keypoints)
    assert loaded.image_path(2) == tmp_path / "img" / "2.png" and loaded.extras[0] == {"head_box": [1, 2, 3, 4]}
    sub = loaded.subset([2])
    assert len(sub) == 1 and sub.image_id(0) == 102


def test_records_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    with pytest.raises(ClposeError, match="does not exist"):
        load_records(path)
    path.write_text("{not json")
    with pytest.raises(ClposeError, match=r"bad\.json is not valid JSON"):
        load_records(path)
    save_records(path, _records(tmp_path))
    data = json.loads(path.read_text())
    data["people"][1]["keypoints"] = data["people"][1]["keypoints"][:15]
    path.write_text(json.dumps(data))
    with pytest.raises(ClposeError, match=r"bad\.json: people\[1\]: keypoints must be 16 x 3 .* \(15, 3\)"):
        load_records(path)
    del data["people"][1]["center"]
    path.write_text(json.dumps(data))
    with pytest.raises(ClposeError, match=r"people\[1\]: missing key 'center'"):
        load_records(path)


def test_affine_maps_box_onto_crop_and_inverts() -> None:
    a = get_affine(np.array([100.0, 80.0]), np.array([60.0, 80.0]), (64, 48))
    np.testing.assert_allclose(apply_affine(np.array([[100.0, 80.0], [70.0, 40.0]]), a), [[23.5, 31.5], [-0.5, -0.5]])
    r = get_affine(np.array([10.0, 20.0]), np.array([50.0, 50.0]), (64, 64), rotation=37, shear=(0.1, -0.2), flip=True)
    pts = np.random.default_rng(0).uniform(0, 100, (5, 2))
    np.testing.assert_allclose(apply_affine(apply_affine(pts, r), invert_affine(r)), pts, atol=1e-9)
    # a flip mirrors the crop about its centre column: x' = W - 1 - x
    plain = get_affine(np.array([10.0, 20.0]), np.array([50.0, 50.0]), (64, 64))
    mirrored = get_affine(np.array([10.0, 20.0]), np.array([50.0, 50.0]), (64, 64), flip=True)
    p, q = apply_affine(pts, plain), apply_affine(pts, mirrored)
    np.testing.assert_allclose(q[:, 0], 63 - p[:, 0])
    np.testing.assert_allclose(q[:, 1], p[:, 1])


def test_warp_and_keypoints_agree() -> None:
    image = np.zeros((200, 200), np.float32)
    image[75, 95] = 1.0
    a = get_affine(np.array([100.0, 80.0]), np.array([24.0, 32.0]), (64, 48), rotation=25, flip=True)
    crop = cv2.warpAffine(image, a, (48, 64), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(crop)
    w = crop[ys, xs]
    centroid = [(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()]
    np.testing.assert_allclose(centroid, apply_affine(np.array([[95.0, 75.0]]), a)[0], atol=0.01)


def test_box_size_fits_aspect_and_half_body() -> None:
    np.testing.assert_allclose(box_size(np.array([1.0, 1.0]), (256, 192), 1.25), [250.0, 250 * 256 / 192])
    kpts = np.zeros((16, 3))
    kpts[:, :2] = np.arange(32).reshape(16, 2)
    kpts[:, 2] = 2
    _, size = half_body_box(kpts, MPII.upper_body, np.random.default_rng(0), 1.0)
    assert size[0] == size[1] and size[0] > 0


def test_dataset_eval_mode_puts_keypoints_on_their_pixels(tmp_path: Path) -> None:
    records = _records(tmp_path)
    codec = CompositeCodec((64, 64), stride=16)
    ds = TopDownDataset(records, SYNTHETIC, codec, (64, 64), train=False, box_padding=1.25)
    sample = ds[0]
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["targets"]["heatmaps"].shape == (16, 4, 4) and sample["targets"]["offsets"].shape == (32, 4, 4)
    crop = denormalize(sample["image"]).astype(np.float64).mean(axis=2)
    for k in range(16):
        x, y = sample["keypoints"][k].tolist()
        if sample["targets"]["keypoint_weights"][k] > 0:
            patch = crop[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2]
            assert patch.max() > 60  # the white dot is there, blurred by the down-scaling warp
    assert sample["targets"]["keypoint_weights"][5] == 0
    inverse = invert_affine(sample["meta"]["affine"].numpy())
    back = apply_affine(sample["keypoints"].numpy(), inverse)
    np.testing.assert_allclose(
        back[records.keypoints[0, :, 2] > 0], records.keypoints[0, records.keypoints[0, :, 2] > 0, :2], atol=1e-4
    )


def test_training_augmentation_is_deterministic_and_flips_pairs(tmp_path: Path) -> None:
    records = _records(tmp_path)
    codec = HeatmapCodec((64, 64), stride=4)
    aug = AugmentConfig(flip_prob=1.0, rotation_prob=1.0, color_jitter=0.3, shear_factor=0.1)
    ds = TopDownDataset(records, SYNTHETIC, codec, (64, 64), train=True, augment=aug, seed=3)
    a, b = ds[1], ds[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["targets"]["heatmaps"], b["targets"]["heatmaps"])
    ds.set_epoch(1)
    c = ds[1]
    assert not torch.equal(a["image"], c["image"])
    assert a["meta"]["flipped"]
    # after a flip the channel of r-ankle (0) holds the l-ankle (5), which is unlabelled here
    assert a["targets"]["keypoint_weights"][0] == 0 or a["visible"][0] == 0
    inverse = invert_affine(a["meta"]["affine"].numpy())
    back = apply_affine(a["keypoints"].numpy(), inverse)[SYNTHETIC.flip_index]
    labelled = records.keypoints[1, :, 2] > 0
    np.testing.assert_allclose(back[labelled], records.keypoints[1, labelled, :2], atol=1e-4)


def test_dataset_errors(tmp_path: Path) -> None:
    records = _records(tmp_path)
    with pytest.raises(ClposeError, match="codec encodes"):
        TopDownDataset(records, SYNTHETIC, CompositeCodec((64, 48)), (64, 64))
    (tmp_path / "img" / "1.png").unlink()
    ds = TopDownDataset(records, SYNTHETIC, CompositeCodec((64, 64)), (64, 64), train=False)
    with pytest.raises(ClposeError, match=r"1\.png is missing or cannot be decoded"):
        ds[1]


def test_normalize_jitter_keeps_shape_and_range() -> None:
    crop = np.random.default_rng(0).integers(0, 255, (8, 6, 3), dtype=np.uint8)
    plain = normalize(crop)
    np.testing.assert_array_equal(denormalize(plain), crop)
    jittered = normalize(crop, (1.2, 0.8, 1.1))
    assert jittered.shape == (3, 8, 6) and not torch.equal(jittered, plain)


FORK_AFTER_OPENCV = """
import cv2, numpy as np, torch
from torch.utils.data import Dataset
from clpose.data.dataset import WorkerLoader, worker_init

class Blur(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.tensor(float(cv2.GaussianBlur(np.full((64, 64), i, np.float32), (5, 5), 1).mean()))

image = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
for _ in range(3):  # the parent uses OpenCV's thread pool, as `clpose demo` does when it renders the data
    cv2.GaussianBlur(image, (15, 15), 5)
threads = cv2.getNumThreads()
loader = WorkerLoader(Blur(), batch_size=2, num_workers=2, worker_init_fn=worker_init)
print(sorted(round(float(v), 3) for batch in loader for v in batch), cv2.getNumThreads() == threads)
"""


def test_workers_start_after_the_parent_used_opencv_threads() -> None:
    # cv2.setNumThreads inside a forked worker hangs once the parent has used OpenCV's pool (a real hang of
    # `clpose demo --fresh`); WorkerLoader sets one thread around the fork instead
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", FORK_AFTER_OPENCV], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0.0, 1.0, 2.0, 3.0] True"


def _jpeg(image: np.ndarray, mode: str = "RGB") -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _same_as_cv2(paths: list[Path]) -> None:
    from clpose.data.dataset import READ_FLAGS, load_image

    for path in paths:
        expected = cv2.imread(str(path), READ_FLAGS)
        got = load_image(path)
        if expected is None:
            assert got is None, path
        else:
            assert got.dtype == np.uint8 and got.shape == expected.shape and np.array_equal(got, expected), path


def test_load_image_gives_exactly_cv2_imread_pixels(tmp_path: Path) -> None:
    from clpose.data.dataset import load_image

    rng = np.random.default_rng(0)
    colour = cv2.GaussianBlur(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), (5, 5), 2)
    files = {
        "colour.jpg": _jpeg(colour),
        "grey.jpg": _jpeg(colour[:, :, 0], "L"),
        "cmyk.jpg": _jpeg(colour, "CMYK"),  # TurboJPEG refuses it: OpenCV decodes it
        "truncated.jpg": _jpeg(colour)[:400],
        "colour.png": cv2.imencode(".png", colour)[1].tobytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _same_as_cv2([tmp_path / n for n in files])
    assert load_image(tmp_path / "missing.jpg") is None
    (tmp_path / "text.jpg").write_text("not an image")
    assert load_image(tmp_path / "text.jpg") is None


def test_load_image_on_the_real_dataset_photos(realdata: Path) -> None:
    photos = sorted(realdata.rglob("*.jpg"))
    assert photos, f"no JPEGs under {realdata}"
    _same_as_cv2(photos)
