"""Pretrained weights by name: torchvision's ImageNet trunks and COCO person detectors, fetched once, verified,
cached, usable offline. The one place in clpose that touches the network.

Names are torchvision's: a weights enum member (`ResNet50_Weights.IMAGENET1K_V1`) or, for detectors, the builder
(`fasterrcnn_resnet50_fpn_v2`); `imagenet` is a trunk's reference ImageNet weights (IMAGENET1K_V1: the weights the
SimpleBaseline and HRNet configs start from) and `torchvision://resnet50` is MMPose's spelling of the same. Files go
where torchvision puts them (torch.hub.get_dir()/checkpoints, which honours TORCH_HOME), under torchvision's file
names, so a file a user already has from torchvision is used as it is.

- Every use checks the file's SHA-256 against the hash prefix in its name (as torch.hub's check_hash does on
  download): a file that fails, or that no longer loads, is named with the command to remove it; never used.
- A cached file is verified before anything else, so a read-only cache (a shared TORCH_HOME) serves it; only a
  download takes the file lock, which makes one process (one torchrun rank, or one of two commands) download while
  the others wait and then use it. A download goes to a temporary file beside the target and is renamed only after
  the hash check.
- A download ends: within CLPOSE_DOWNLOAD_TIMEOUT seconds (default 3600) and at no less than
  CLPOSE_DOWNLOAD_MIN_RATE kB/s over any 60 s (default 10; 0: no minimum), else one line naming the URL, the cache
  path and what to do.
- CLPOSE_OFFLINE=1 makes no network call at all; a missing file is then one line naming the URL, the exact cache
  path to put it at, and the local-file alternative. CLPOSE_WEIGHTS_MIRROR fetches the same file names from another
  server (a cluster's mirror: an http(s):// URL) or reads them from a folder (a path or file:// URL: used in place,
  verified in the same way, offline too). Environment values are read here only, each in one function.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clpose.download import download, env_flag
from clpose.errors import ClposeError, first_line
from clpose.io import file_lock, sha256

OFFLINE_ENV = "CLPOSE_OFFLINE"
MIRROR_ENV = "CLPOSE_WEIGHTS_MIRROR"
_TORCHVISION_BASE = "https://download.pytorch.org/models/"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: resnet50-0676ba61.pth -> 0676ba61
_MIRROR_FORM = (
    "expected an http(s):// URL of a folder of torchvision's file names (https://mirror.example/models/) or a folder "
    "holding them (/shared/weights or file:///shared/weights)"
)

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
# person detectors of `clpose infer --detector NAME`: builder -> its COCO weights (URL and hash from torchvision's
# enum); the CPU time per 1280x720 frame is measured in docs/inference.md ("Person detectors")
DETECTORS = {
    "fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
    "fasterrcnn_resnet50_fpn": "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
    "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1",
    "ssdlite320_mobilenet_v3_large": "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
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

    def origin(self) -> str | Path:
        """Where it comes from: torchvision's URL, the same file name under CLPOSE_WEIGHTS_MIRROR's URL, or the file
        in the mirror folder (a Path)."""
        base = mirror()
        if base is None or not self.url.startswith(_TORCHVISION_BASE):
            return self.url
        return base / self.filename if isinstance(base, Path) else base + self.filename

    def source(self) -> str:
        return str(self.origin())


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
    return env_flag(OFFLINE_ENV)


def mirror() -> str | Path | None:
    """CLPOSE_WEIGHTS_MIRROR, checked: None (unset), a base URL ending in "/", or an existing folder."""
    value = os.environ.get(MIRROR_ENV, "")
    text = value.strip()
    if not text:
        return None
    if "://" not in text:  # a path (C:\\ on Windows has a colon too, never "://")
        folder = Path(text).expanduser()
    else:
        try:
            parts = urllib.parse.urlsplit(text)
            parts.port  # noqa: B018 (a port out of range raises only when read)
        except ValueError as e:
            raise ClposeError(f"{MIRROR_ENV}={value!r}: not a URL ({e}); {_MIRROR_FORM}") from None
        if parts.scheme.lower() in ("http", "https"):
            if not parts.hostname:
                raise ClposeError(f"{MIRROR_ENV}={value!r}: the URL names no server; {_MIRROR_FORM}")
            return text.rstrip("/") + "/"
        if parts.scheme.lower() != "file":
            raise ClposeError(f"{MIRROR_ENV}={value!r}: {parts.scheme}:// is not fetched; {_MIRROR_FORM}")
        folder = Path(urllib.request.url2pathname(parts.path))
    if not folder.is_dir():
        raise ClposeError(f"{MIRROR_ENV}={value!r}: not a URL, and no folder {folder} exists; {_MIRROR_FORM}")
    return folder.absolute()


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


def cached(entry: WeightsFile) -> tuple[Path | None, str]:
    """The cached file of `entry` and its state: "no" (absent), "verified", "damaged" (its hash does not match its
    name) or "unchecked" (no hash in its name). Hashed, never fetched (hashing is cheap next to a download)."""
    path = cache_dir() / entry.filename
    if not path.is_file():
        return None, "no"
    if not entry.hash_prefix:
        return path, "unchecked"
    return path, "verified" if sha256(path).startswith(entry.hash_prefix) else "damaged"


def fetch(entry: WeightsFile, alternative: str = "a local file", progress: bool = True) -> Resolved:
    """The verified file of `entry`: from the cache, from a mirror folder, else downloaded (unless offline) under a
    file lock. A cached file is checked first and needs no lock: a read-only cache serves it."""
    path = cache_dir() / entry.filename
    origin, is_offline = entry.origin(), offline()  # both checked whatever happens next: a typo shows at once
    if path.is_file():  # complete: a download is renamed into place only once verified
        return Resolved(path, entry.name, _verify(entry, path), str(origin))
    if isinstance(origin, Path):
        if not origin.is_file():
            raise ClposeError(
                f"{entry.name} is not in the mirror folder {origin.parent} ({MIRROR_ENV}): put {entry.filename} "
                f"there, or use {alternative}"
            )
        return Resolved(origin, entry.name, _verify(entry, origin, "replace it with a good copy"), str(origin))
    if is_offline:
        raise ClposeError(
            f"{entry.name} is not in the cache and {OFFLINE_ENV}=1: download {origin} to {path} "
            f"(e.g. `clpose weights fetch {entry.name}` on a machine with a network), or use {alternative}"
        )
    with _download_lock(entry, path, alternative):
        if not path.is_file():  # another process may have fetched it while this one waited
            where = f"put the file at {path} yourself, or use {alternative} ({OFFLINE_ENV}=1: never try the network)"
            download(entry.source(), path, entry.hash_prefix, entry.name, entry.size_mb, where, progress)
        digest = _verify(entry, path)
    return Resolved(path, entry.name, digest, str(origin))


def _verify(entry: WeightsFile, path: Path, advice: str = "") -> str:
    digest = sha256(path)
    expected = entry.hash_prefix
    if expected and not digest.startswith(expected):
        advice = advice or f"remove it (rm {path}) and run again to download {entry.name} afresh"
        raise ClposeError(
            f"{path} does not match its name's hash (sha256 {digest[: len(expected)]}..., expected {expected}...): "
            f"a damaged or replaced file; {advice}"
        )
    return digest


@contextlib.contextmanager
def _download_lock(entry: WeightsFile, path: Path, alternative: str) -> Iterator[None]:
    """The file lock of a download; a cache where it cannot be made (read-only) is one line naming the folder."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path))
        except OSError as e:
            why = f"{e.strerror or first_line(e)}{f': {e.filename}' if e.filename else ''}"
            raise ClposeError(
                f"cannot download {entry.name} into {path.parent}: the folder is not writable ({why}); set TORCH_HOME "
                f"to a writable folder, or put the file there ({path}), or use {alternative}"
            ) from None
        yield


def status() -> list[dict[str, Any]]:
    """Every known weights file with what clpose uses it for and its cached file's state (for `clpose weights`)."""
    uses: dict[str, list[str]] = {}
    for trunk, name in IMAGENET.items():
        uses.setdefault(name, []).append(f"imagenet of the {trunk} trunk")
    for builder, name in DETECTORS.items():
        uses.setdefault(name, []).append(f"--detector {builder}")
    rows = []
    for name, entry in catalog().items():
        path, state = cached(entry)
        rows.append(
            {
                "name": name,
                "kind": entry.kind,
                "builder": entry.builder,
                "size_mb": entry.size_mb,
                "note": entry.note,
                "used_as": uses.get(name, []),
                "cached": str(path) if path else None,
                "state": state,
                "source": entry.source(),
            }
        )
    return rows
