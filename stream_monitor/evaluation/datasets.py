"""Which images an evaluation uses: the committed split's ID sets, HyperKvasir OOD classes divided into
validation and test parts, and external evaluation sources (folders or videos).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import iter_frames, list_images, read_image
from ..data.split import Split
from ..errors import InputError

OOD_VALIDATION_FRACTION = 0.3
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DEFAULT_SPLIT = Path(__file__).resolve().parents[2] / "configs" / "splits" / "hyperkvasir-lgi.json"


@dataclass(frozen=True)
class Source:
    """An evaluation set: image files, or a video read every `stride` frames. `kind` says which."""

    name: str
    kind: str  # "files" | "video"
    files: tuple[Path, ...] = ()
    video: Path | None = None
    stride: int = 1
    note: str = ""

    def frames(self):
        """(name, BGR uint8 frame) pairs."""
        if self.kind == "video":
            for record in iter_frames(self.video, self.stride):
                yield f"{record.name}#{record.index}", record.image
        else:
            for path in self.files:
                yield str(path), read_image(path)

    def __len__(self) -> int:
        return len(self.files) if self.kind == "files" else 0


def source_from_path(name: str, path: str | Path, stride: int = 1, note: str = "") -> Source:
    """A folder of images (recursive) or a video file as an evaluation set."""
    path = Path(path)
    if path.is_dir():
        files = tuple(list_images(path, recursive=True)[::stride])
        if not files:
            raise InputError(f"evaluation set {name!r}: no images found in {path}")
        return Source(name, "files", files=files, note=note)
    if path.is_file():
        return Source(name, "video", video=path, stride=stride, note=note)
    raise InputError(f"evaluation set {name!r}: {path} is neither a folder of images nor a video file")


def parse_named_source(text: str, stride: int = 1) -> Source:
    """`NAME=PATH` (as given to `--ood`) → Source."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise InputError(f"expected NAME=PATH, got {text!r} (e.g. --ood polyps=/data/polyps)")
    return source_from_path(name, path, stride)


def ood_validation_split(split: Split, fraction: float = OOD_VALIDATION_FRACTION) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Divide each OOD class of a split into (validation, test) parts, per class, deterministically.

    The validation part is only ever used to choose among detector configurations; the test part only to
    report. Seeded by the split's own seed, on sorted file names.
    """
    rng = np.random.default_rng(10_000 + split.seed)
    validation: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for class_name in split.ood_classes:
        files = sorted(item.file for item in split.subsets["ood"] if item.class_name == class_name)
        order = rng.permutation(len(files))
        n_val = math.floor(fraction * len(files))
        validation[class_name] = [split.root / files[i] for i in sorted(order[:n_val])]
        test[class_name] = [split.root / files[i] for i in sorted(order[n_val:])]
    return validation, test


def external_sources(shared_data: Path = SHARED_DATA) -> list[Source]:
    """Real footage from other hospitals, never used to choose anything (see ../shared/data/README.md)."""
    sequences = shared_data / "sequences"
    clip = shared_data / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"
    return [
        source_from_path("cvc-clinicdb-polyps", sequences / "cvc-clinicdb", note="polyp in every frame; other hospital"),
        source_from_path("gastric-ulcer-clip", clip, stride=3, note="gastroscopy, far OOD for a colon model"),
        source_from_path(
            "polypgen-normal (shift)", sequences / "polypgen-negative",
            note="normal colon from other hospitals: covariate shift, NOT pathology — a high AUROC here means "
            "false alerts on normal footage",
        ),
    ]
