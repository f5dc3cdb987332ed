"""Pretrained weights by name: torchvision's ImageNet trunks and COCO person detectors, fetched once, verified,
cached, usable offline. The one place in clpose that touches the network.

Names are torchvision's: a weights enum member (`ResNet50_Weights.IMAGENET1K_V1`) or, for detectors, the builder
(`fasterrcnn_resnet50_fpn_v2`); `imagenet` is a trunk's reference ImageNet weights (IMAGENET1K_V1: the weights the
SimpleBaseline and HRNet configs start from) and `torchvision://resnet50` is MMPose's spelling of the same. Files go
where torchvision puts them (torch.hub.get_dir()/checkpoints, which honours TORCH_HOME), under torchvision's file
names, so a file a user already has from torchvision is used as it is.

- Every use checks the file's SHA-256 against the hash prefix in its name (as torch.hub's check_hash does on
  download): a file that fails, or that no longer loads, is named with the command to remove it; never used.
- A download goes to a temporary file beside the target and is renamed only after the hash check; a file lock
  makes one process (one torchrun rank, or one of two commands) download while the others wait and then use it.
- CLPOSE_OFFLINE=1 makes no network call at all; a missing file is then one line naming the URL, the exact cache
  path to put it at, and the local-file alternative. CLPOSE_WEIGHTS_MIRROR=URL fetches the same file names from
  another server (a cluster's mirror).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clpose.errors import ClposeError, first_line
from clpose.io import file_lock, sha256

OFFLINE_ENV = "CLPOSE_OFFLINE"
MIRROR_ENV = "CLPOSE_WEIGHTS_MIRROR"
_TORCHVISION_BASE = "https://download.pytorch.org/models/"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: resnet50-0676ba61.pth -> 0676ba61
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0

# trunk -> its reference ImageNet weights (`model.pretrained: imagenet`). IMAGENET1K_V1 everywhere: for the ResNets
# it is torchvision's original training, which SimpleBaseline's and HRNet's configs load (as resnet50-19c8e357.pth,
# the same weights that torchvision re-serialised as resnet50-0676ba61.pth: pytorch/vision#2068); the light trunks
# follow the same rule (their V2 weights are named in docs/training.md).
IMAGENET = {
    **{f"resnet{d}": f"ResNet{d}_Weights.IMAGENET1K_V1" for d in (18, 34, 50, 101, 152)},
    "regnet_x_400mf": "RegNet_X_400MF_Weights.IMAGENET1K_V1",
    "shufflenet_v2_x1_0": "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
}
# person detectors of `clpose infer --detector NAME`: builder -> its COCO weights; the CPU time per 1280x720 frame
# is measured in docs/inference.md
DETECTORS = {
    "fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
    "fasterrcnn_resnet50_fpn": "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
    "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
}
DETECTOR_ALIASES = {"torchvision-fasterrcnn": "fasterrcnn_resnet50_fpn"}  # the name clpose used before


@dataclass(frozen=True)
class WeightsFile:
    """A weights file that clpose can fetch by name.

    Attributes:
        name: torchvision's enum member, e.g. "ResNet50_Weights.IMAGENET1K_V1".
        builder: the torchvision model it belongs to, e.g. "resnet50", "fasterrcnn_resnet50_fpn_v2".
        url: where torchvision serves it; its file name carries the SHA-256 prefix.
        size_mb: the file's size in MB (torchvision's metadata), for listings.
        note: what it is, e.g. "ImageNet top-1 76.13".
    """

    name: str
    builder: str
    url: str
    size_mb: float = 0.0
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str | None:
        match = _HASH_IN_NAME.search(self.filename)
        return match.group(1) if match else None

    @property
    def kind(self) -> str:
        return "detector" if self.builder in DETECTORS else "trunk"

    def source(self) -> str:
        """The URL it is fetched from: torchvision's, or the same file name on CLPOSE_WEIGHTS_MIRROR."""
        mirror = os.environ.get(MIRROR_ENV, "").strip()
        if mirror and self.url.startswith(_TORCHVISION_BASE):
            return mirror.rstrip("/") + "/" + self.filename
        return self.url


@dataclass(frozen=True)
class Resolved:
    """Weights ready to load: the file and what it is (written into run folders and checkpoints)."""

    path: Path
    name: str  # the registry name, or the file's own name for a local file
    sha256: str
    source: str  # the URL, or "local file"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256, "source": self.source}

    def describe(self) -> str:
        return f"{self.name} ({self.path}, sha256 {self.sha256[:12]}...)"


_EXTRA: dict[str, WeightsFile] = {}


def register(entry: WeightsFile, imagenet_for: str | None = None) -> None:
    """Add a weights file to the catalogue (a mirror's own file, or a test's): `imagenet_for` makes it the
    `imagenet` weights of that trunk."""
    _EXTRA[entry.name] = entry
    if imagenet_for is not None:
        IMAGENET[imagenet_for] = entry.name


@functools.cache
def _torchvision_catalog() -> dict[str, WeightsFile]:
    """Every weights enum member of the trunks and detectors clpose builds, from torchvision itself."""
    from torchvision.models import get_model_weights

    out = {}
    for builder in [*IMAGENET, *DETECTORS]:
        try:
            enum = get_model_weights(builder)
        except (ValueError, KeyError):  # an older torchvision without this model
            continue
        for member in enum:
            meta = member.meta
            metrics = next(iter(meta.get("_metrics", {}).values()), {})
            note = (
                f"ImageNet top-1 {metrics['acc@1']:g}"
                if "acc@1" in metrics
                else (f"COCO box AP {metrics['box_map']:g}" if "box_map" in metrics else "")
            )
            name = f"{enum.__name__}.{member.name}"
            out[name] = WeightsFile(name, builder, member.url, float(meta.get("_file_size", 0.0)), note)
    return out


def catalog() -> dict[str, WeightsFile]:
    """Every known weights file by name: torchvision's, then registered ones (which win)."""
    return {**_torchvision_catalog(), **_EXTRA}


def lookup(name: str) -> WeightsFile:
    """A weights file by its name, a detector's name, a trunk's name (its `imagenet` weights) or MMPose's
    torchvision://NAME."""
    name = name.removeprefix("torchvision://")
    known = catalog()
    name = {**IMAGENET, **DETECTORS}.get(DETECTOR_ALIASES.get(name, name), name)
    if name in known:
        return known[name]
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return known[by_lower[name.lower()]]
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ClposeError(f"unknown weights {name!r}{hint}; `clpose weights` lists the known names")


def is_name(spec: str) -> bool:
    """Whether a model.pretrained value names registered weights (rather than a local file)."""
    spec = str(spec)
    if spec == "imagenet" or spec.startswith("torchvision://"):
        return True
    return "_Weights." in spec and not Path(spec).exists()


def cache_dir() -> Path:
    """torchvision's cache: torch.hub.get_dir()/checkpoints (TORCH_HOME, else ~/.cache/torch)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


# ---------------------------------------------------------------------------------------------------------------


def resolve_pretrained(spec: str, builder: str) -> Resolved:
    """The file behind a model.pretrained value for a trunk built from torchvision's `builder` (e.g. "resnet50"):
    `imagenet`, a weights name, torchvision://NAME, or a local file path."""
    spec = str(spec)
    if not is_name(spec):
        return local_file(Path(spec), "pretrained weights")
    if spec == "imagenet":
        if builder not in IMAGENET:
            raise ClposeError(
                f"model.pretrained imagenet: torchvision has no ImageNet weights for the {builder} trunk; train it "
                "from scratch (model.pretrained: null) or give a local file"
            )
        entry = lookup(IMAGENET[builder])
    else:
        entry = lookup(spec)
        if entry.builder != builder:
            raise ClposeError(
                f"model.pretrained {spec}: {entry.name} are weights of {entry.builder}, the model's trunk is {builder}"
            )
    return fetch(entry, alternative="--set model.pretrained=FILE")


def detector_builder(name: str) -> str:
    """The torchvision builder of `--detector NAME` (a ClposeError listing the valid names for another)."""
    builder = DETECTOR_ALIASES.get(name, name)
    if builder not in DETECTORS:
        valid = ", ".join([*DETECTORS, *DETECTOR_ALIASES])
        raise ClposeError(f"--detector {name!r}: unknown detector; valid: {valid}")
    return builder


def resolve_detector(name: str, weights_file: Path | None = None) -> tuple[str, Resolved]:
    """(torchvision builder, its weights) of `clpose infer --detector NAME`; `weights_file` is a local copy."""
    builder = detector_builder(name)
    if weights_file is not None:
        return builder, local_file(Path(weights_file), "detector weights")
    return builder, fetch(lookup(DETECTORS[builder]), alternative="--detector-weights FILE")


def local_file(path: Path, what: str) -> Resolved:
    if not path.is_file():
        raise ClposeError(f"{what} {path} do not exist")
    return Resolved(path, path.name, sha256(path), "local file")


def cached(entry: WeightsFile) -> Path | None:
    """The cached file of `entry`, or None where it is not there (not checked)."""
    path = cache_dir() / entry.filename
    return path if path.is_file() else None


def fetch(entry: WeightsFile, alternative: str = "a local file", progress: bool = True) -> Resolved:
    """The verified file of `entry`: from the cache, else downloaded (unless offline) under a file lock."""
    path = cache_dir() / entry.filename
    with file_lock(path):
        if not path.is_file():
            if offline():
                raise ClposeError(
                    f"{entry.name} is not in the cache and {OFFLINE_ENV}=1: download {entry.source()} to {path} "
                    f"(e.g. `clpose weights fetch {entry.name}` on a machine with a network), or use {alternative}"
                )
            _download(entry, path, alternative, progress)
        digest = _verify(entry, path)
    return Resolved(path, entry.name, digest, entry.source())


def _verify(entry: WeightsFile, path: Path) -> str:
    digest = sha256(path)
    expected = entry.hash_prefix
    if expected and not digest.startswith(expected):
        raise ClposeError(
            f"{path} does not match its name's hash (sha256 {digest[: len(expected)]}..., expected {expected}...): "
            f"a damaged or replaced file; remove it (rm {path}) and run again to download {entry.name} afresh"
        )
    return digest


def _download(entry: WeightsFile, path: Path, alternative: str, progress: bool) -> None:
    """Download into a temporary file beside `path`; it is renamed into place only when complete and its hash fits."""
    from clpose.io import atomic_path
    from clpose.progress import ProgressBar

    url = entry.source()
    where = f"put the file at {path} yourself, or use {alternative} ({OFFLINE_ENV}=1: never try the network)"
    try:
        with atomic_path(path) as tmp:
            request = urllib.request.Request(url, headers={"User-Agent": "clpose"})
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0)
                digest, received = hashlib.sha256(), 0
                bar = ProgressBar(f"downloading {entry.filename}", max(1, total // _CHUNK) if total else None, "")
                with open(tmp, "wb") as f, bar:
                    bar.log(f"downloading {entry.name} from {url} to {path}")
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        f.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(1)
            if total and received != total:
                raise ClposeError(f"cannot download {url}: the server sent {received} of {total} bytes; {where}")
            expected = entry.hash_prefix
            if expected and not digest.hexdigest().startswith(expected):
                raise ClposeError(
                    f"the download of {url} does not match its name's hash (sha256 {digest.hexdigest()[:12]}..., "
                    f"expected {expected}...: a proxy that rewrote it?): nothing was kept; {where}"
                )
    except ClposeError:
        raise
    except urllib.error.HTTPError as e:
        raise ClposeError(f"cannot download {url} (HTTP {e.code} {e.reason}): {where}") from None
    except urllib.error.URLError as e:
        reason = " ".join(str(e.reason or e).split())
        raise ClposeError(f"cannot download {url} ({reason}): {where}") from None
    except (TimeoutError, http.client.HTTPException, ConnectionError) as e:
        raise ClposeError(f"cannot download {url} ({type(e).__name__}: {first_line(e)}): {where}") from None


def status() -> list[dict[str, Any]]:
    """Every known weights file with what clpose uses it for and whether it is in the cache (for `clpose weights`)."""
    uses: dict[str, list[str]] = {}
    for trunk, name in IMAGENET.items():
        uses.setdefault(name, []).append(f"imagenet of the {trunk} trunk")
    for builder, name in DETECTORS.items():
        uses.setdefault(name, []).append(f"--detector {builder}")
    rows = []
    for name, entry in catalog().items():
        path = cached(entry)
        rows.append(
            {
                "name": name,
                "kind": entry.kind,
                "builder": entry.builder,
                "size_mb": entry.size_mb,
                "note": entry.note,
                "used_as": uses.get(name, []),
                "cached": str(path) if path else None,
                "source": entry.source(),
            }
        )
    return rows
