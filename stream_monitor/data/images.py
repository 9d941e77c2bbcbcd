"""Image and frame reading shared by the live capture path, the demo and offline evaluation.

Kept apart from the split module so that a capture process never imports the offline study code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "FrameRecord", "iter_frames", "list_images", "read_image"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class FrameRecord(NamedTuple):
    """One evaluation frame: where it came from, its index in the source, BGR uint8 pixels (H, W, 3)."""

    name: str
    index: int
    image: np.ndarray


def read_image(path: str | Path, expected_sha1: str | None = None) -> np.ndarray:
    """Decode an image file with OpenCV into (H, W, 3) BGR uint8.

    Raises:
        InputError: missing or undecodable file, or sha1 mismatch; the message names the file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc.strerror}") from exc
    if expected_sha1 is not None and hashlib.sha1(data).hexdigest() != expected_sha1:
        raise InputError(f"image {path} does not match the sha1 recorded in the split file")
    # imdecode from bytes (not imread) so that non-ASCII paths work on every platform.
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot decode image {path}: not an image format OpenCV reads, or corrupt")
    return image


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive) in `folder`, sorted by their relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {folder} does not exist")
    candidates = _walk_following_links(folder) if recursive else folder.glob("*")
    files = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _walk_following_links(folder: Path) -> Iterator[Path]:
    """Every file below `folder`, symlinked folders included (a site's recordings are often links into
    an archive; Path.glob("**") does not enter them), each real folder visited once (no link loops)."""
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        yield from (Path(root) / name for name in names)


def _iter_video(path: Path, stride: int) -> Iterator[FrameRecord]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"cannot open video {path} with OpenCV")
    try:
        index = 0
        while True:
            # grab() skips decoding of the frames the stride drops; retrieve() decodes the kept ones.
            if not capture.grab():
                return
            if index % stride == 0:
                ok, frame = capture.retrieve()
                if not ok:
                    raise InputError(f"cannot decode frame {index} of video {path}")
                yield FrameRecord(path.name, index, frame)
            index += 1
    finally:
        capture.release()


def iter_frames(source: str | Path, stride: int = 1) -> Iterator[FrameRecord]:
    """Frames of an evaluation set: a folder of images (recursive, sorted) or a video file.

    Args:
        source: folder or video path (anything `cv2.VideoCapture` opens).
        stride: keep every `stride`-th frame / image (≥ 1).

    Yields:
        FrameRecord(name, index, image (H, W, 3) BGR uint8); for folders the name is the file's path
        relative to the folder, for videos the file name, and the index counts all frames of the source.
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    source = Path(source)
    if source.is_dir():
        files = list_images(source, recursive=True)
        for index in range(0, len(files), stride):
            yield FrameRecord(files[index].relative_to(source).as_posix(), index, read_image(files[index]))
    elif source.is_file():
        yield from _iter_video(source, stride)
    else:
        raise InputError(f"evaluation source {source} is neither a folder nor a file")
