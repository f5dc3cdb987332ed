"""Photos as people see them: the images `clpose infer` reads are turned upright by their EXIF Orientation tag, as
every photo viewer, browser and phone gallery shows them, so keypoints, boxes and the annotated output are all in the
frame the user sees. (Training and evaluation read stored pixels: the datasets' annotations refer to those.)

Also the listing of a folder's images, where an entry that cannot be read as a file is skipped and named."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from clpose.data.dataset import decode_image
from clpose.errors import ClposeError, first_line

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
ORIENTATION = 0x0112  # the EXIF tag: 1 upright; 2-8 the mirrorings and quarter turns of TIFF 6.0 / EXIF 2.3

# Stored pixels -> displayed pixels for each Orientation value, as Pillow's ImageOps.exif_transpose does them
# (tests/test_infer_trust.py checks all eight against it). Axis 0 is y, axis 1 is x.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],  # turned 90 degrees clockwise (a phone held upright)
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # mirrored along the other diagonal
    8: lambda a: a.transpose(1, 0, 2)[::-1],  # turned 90 degrees counter-clockwise
}


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1-8) of an encoded image; 1 when it has none, or a value outside 1-8 (which viewers
    show as stored too)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        # metadata Pillow cannot parse: viewers fall back to the stored pixels, and so do we (the pixels themselves
        # were decoded, or the image is reported unreadable, elsewhere)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels (H, W, C) of a stored image as displayed under its EXIF `orientation` (1-8)."""
    turn = _UPRIGHT.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))


def load_photo(path: Path) -> tuple[np.ndarray | None, int]:
    """BGR pixels (H, W, 3) of an image file as displayed (its EXIF orientation applied) and the orientation applied
    (1 = none); (None, 1) when the file cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None, 1
    orientation = exif_orientation(data)
    if data[:4] in _TIFF_MAGIC:
        # a TIFF's Orientation is part of the TIFF: OpenCV's decoder turns the pixels by it (even with
        # IMREAD_IGNORE_ORIENTATION), and so does a recent Pillow; turning them again showed portraits on their
        # side. Pillow decodes it here and says whether it turned them (it drops the tag once it has)
        image, turned = _decode_tiff(data)
        return (None, 1) if image is None else (image if turned else upright(image, orientation), orientation)
    image = decode_image(data)
    if image is None:
        return None, 1
    return upright(image, orientation), orientation


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _decode_tiff(data: bytes) -> tuple[np.ndarray | None, bool]:
    """BGR pixels of a TIFF, and whether Pillow turned them by the Orientation tag while decoding."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            tagged = ORIENTATION in getattr(image, "tag_v2", {})
            image.load()
            turned = tagged and ORIENTATION not in getattr(image, "tag_v2", {})
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None, False
    return np.ascontiguousarray(rgb[:, :, ::-1]), turned


def list_images(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Every image-named entry of `folder` in sorted order (their positions are the images' 0-based indices), and
    those that are not readable files (name -> why: a symlink loop, a broken link, a folder, a pipe), to be skipped
    and named rather than opened: a pipe would block forever, a loop ends path resolution with an error."""
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as e:
        raise ClposeError(f"folder {folder} cannot be listed ({first_line(e)})") from None
    unreadable = {p.name: why for p in entries if (why := _not_a_file(p)) is not None}
    return entries, unreadable


def _not_a_file(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        if e.errno == errno.ENOENT:
            return "a broken symlink"
        return first_line(e)
    if stat.S_ISDIR(mode):
        return "a folder"
    return None if stat.S_ISREG(mode) else "not a regular file"
