"""Image data: reading, the fixed-seed stratified ID split (NERO.md §9) and evaluation frame sources.

A split file is JSON with every image path RELATIVE to the data root, and the data root itself relative
to the split file's folder (`data_root`), so the data stays outside the repository and the file works in
any checkout that has the data beside it. Regenerating a split is deterministic: file names are sorted,
classes are visited in ID order and one `numpy.random.Generator(seed)` draws every permutation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from stream_monitor.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "SPLIT_FORMAT", "FrameRecord", "Split", "SplitItem", "iter_frames",
           "list_images", "load_split", "make_split", "read_image", "read_manifest", "resplit",
           "split_to_dict", "write_split"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SPLIT_FORMAT = "stream-monitor/split/v1"
SUBSETS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitItem:
    """One image: `file` relative to the data root, `label` its ID class index (-1 for OOD)."""

    file: str
    class_name: str
    label: int
    sha1: str | None = None


@dataclass(frozen=True)
class Split:
    """ID train / val / test and evaluation-only OOD images of one data root."""

    root: Path
    id_classes: tuple[str, ...]
    ood_classes: tuple[str, ...]
    seed: int
    fractions: tuple[float, float, float]
    subsets: dict[str, list[SplitItem]] = field(default_factory=dict)  # train, val, test, ood

    def paths(self, subset: str) -> list[Path]:
        """Absolute paths of one subset, in split order."""
        return [self.root / item.file for item in self.subsets[subset]]

    def labels(self, subset: str) -> np.ndarray:
        """(N,) int64 class indices of one subset (-1 for OOD)."""
        return np.array([item.label for item in self.subsets[subset]], dtype=np.int64)


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


def read_manifest(root: str | Path) -> dict[str, str]:
    """`class/file` → sha1 from the data's MANIFEST.tsv; empty if there is none."""
    manifest = Path(root) / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {f"{row['class']}/{row['file']}": row["sha1"] for row in rows}


def _counts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    # Round half up (not Python's banker's rounding) so counts do not depend on parity.
    n_train = int(np.floor(fractions[0] * n + 0.5))
    n_val = int(np.floor(fractions[1] * n + 0.5))
    return n_train, min(n_val, n - n_train)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _class_files(root: Path, class_name: str) -> list[str]:
    files = list_images(root / class_name)
    if not files:
        raise InputError(f"class folder {root / class_name} holds no images")
    return [f"{class_name}/{p.name}" for p in files]


def make_split(root: str | Path, id_classes: Sequence[str], seed: int,
               fractions: Sequence[float] = (0.5, 0.2, 0.3),
               ood_classes: Sequence[str] = ()) -> Split:
    """Stratified, deterministic train / val / test split of the ID classes; OOD classes listed whole.

    Args:
        root: data root with one folder per class.
        id_classes: ID class folder names; their order defines the labels 0..C-1.
        seed: seed of the one `numpy.random.Generator` that permutes every class in ID order.
        fractions: (train, val, test), summing to 1; per class, counts round half up, test takes the rest.
        ood_classes: evaluation-only class folders (never split, never used for fitting).
    """
    root = Path(root)
    fractions = _check_fractions(fractions)
    if len(set(id_classes) | set(ood_classes)) != len(id_classes) + len(ood_classes):
        raise InputError(f"class names repeat or overlap: ID {list(id_classes)}, OOD {list(ood_classes)}")
    sha1 = read_manifest(root)
    rng = np.random.Generator(np.random.PCG64(seed))
    subsets: dict[str, list[SplitItem]] = {name: [] for name in (*SUBSETS, "ood")}
    for label, class_name in enumerate(id_classes):
        files = _class_files(root, class_name)
        order = rng.permutation(len(files))
        n_train, n_val = _counts(len(files), fractions)
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
                  "test": (n_train + n_val, len(files))}
        for subset, (start, stop) in bounds.items():
            chosen = sorted(files[i] for i in order[start:stop])
            subsets[subset] += [SplitItem(f, class_name, label, sha1.get(f)) for f in chosen]
    for class_name in ood_classes:
        subsets["ood"] += [SplitItem(f, class_name, -1, sha1.get(f)) for f in _class_files(root, class_name)]
    return Split(root.resolve(), tuple(id_classes), tuple(ood_classes), seed, fractions, subsets)


def split_to_dict(split: Split, split_dir: str | Path) -> dict:
    """The JSON form of `split`, with `data_root` relative to `split_dir` (the split file's folder)."""
    def items(subset: str) -> list[dict]:
        return [{"file": i.file, "class": i.class_name, "label": i.label, "sha1": i.sha1}
                for i in split.subsets[subset]]

    return {
        "format": SPLIT_FORMAT,
        "data_root": Path(os.path.relpath(split.root, Path(split_dir).resolve())).as_posix(),
        "data_root_note": "relative to this file's folder; image paths are relative to data_root",
        "seed": split.seed,
        "fractions": list(split.fractions),
        "id_classes": list(split.id_classes),
        "ood_classes": list(split.ood_classes),
        "counts": {name: len(split.subsets[name]) for name in (*SUBSETS, "ood")},
        **{name: items(name) for name in (*SUBSETS, "ood")},
    }


def write_split(split: Split, path: str | Path) -> Path:
    """Write `split` as JSON to `path` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(split_to_dict(split, path.parent)))
    return path


def _dumps(record: dict) -> str:
    # One image per line: the file stays readable and a changed split shows as a short diff.
    def value(v: object) -> str:
        if isinstance(v, list) and v and isinstance(v[0], dict):
            return "[\n" + ",\n".join("  " + json.dumps(x) for x in v) + "\n ]"
        return json.dumps(v)

    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in record.items()) + "\n}\n"


def load_split(path: str | Path, data_root: str | Path | None = None) -> Split:
    """Read a split file; `data_root` overrides the recorded (file-relative) data root.

    Raises:
        InputError: unreadable or wrong-format file, or a data root that does not exist.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read split file {path}: {exc}") from exc
    if raw.get("format") != SPLIT_FORMAT:
        raise InputError(f"split file {path} has format {raw.get('format')!r}, expected {SPLIT_FORMAT!r}")
    root = Path(data_root) if data_root is not None else path.parent / raw["data_root"]
    if not root.is_dir():
        raise InputError(f"data root {root} of split file {path} does not exist; pass data_root")
    subsets = {name: [SplitItem(i["file"], i["class"], i["label"], i.get("sha1")) for i in raw[name]]
               for name in (*SUBSETS, "ood")}
    return Split(root.resolve(), tuple(raw["id_classes"]), tuple(raw["ood_classes"]), int(raw["seed"]),
                 _check_fractions(raw["fractions"]), subsets)


def resplit(split: Split, seed: int) -> Split:
    """The same classes and fractions split again with another seed (for mean ± std over seeds)."""
    return make_split(split.root, split.id_classes, seed, split.fractions, split.ood_classes)


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
