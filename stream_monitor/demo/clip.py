"""The demo's source: a real ID → OOD → ID clip assembled on the fly from ../shared/data.

ID frames are HyperKvasir test images of the committed split (never seen in training or calibration),
OOD frames a real polyp video (CVC-ClinicDB sequences, in temporal order), HyperKvasir polyp images, or a
real gastroscopy clip; the second ID segment uses other test images than the first. Each image is held
for `hold` frames so the clip plays like slow video. Every frame is resized to one canvas, aspect ratio
not kept — the model resizes to 224 × 224 without keeping it anyway, so this changes its input least.

The MP4 is written with OpenCV into the output folder (never into the repository); the segments' frame
ranges and times are returned and saved beside it, so alert timing can be measured against them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.images import iter_frames, list_images, read_image
from ..data.split import load_split
from ..errors import InputError
from ..evaluation.datasets import DEFAULT_SPLIT, SHARED_DATA

__all__ = ["ClipInfo", "OOD_SOURCES", "Segment", "assemble_demo_clip"]

CANVAS = (640, 540)  # (width, height): HyperKvasir's ~1.19 aspect ratio
OOD_SOURCES = {
    "cvc-clinicdb": "sequences/cvc-clinicdb",
    "hyperkvasir-polyp": "hyperkvasir-lgi/polyp",
    "gastric-ulcer": "clips/ulcer_detection_Endoscopy_0_gastric_ulcer.mp4",
}


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of the clip (0-based; the monitor's seq is frame + 1) and their times in s."""

    label: str  # "ID" | "OOD"
    source: str
    start: int
    stop: int
    start_s: float
    stop_s: float


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    fps: float
    frames: int
    size: tuple[int, int]
    segments: list[Segment]

    def segment_of(self, frame: int) -> Segment:
        """The segment that holds 0-based frame index `frame`."""
        return next(s for s in self.segments if s.start <= frame < s.stop)

    def save(self, path: Path) -> None:
        record = {**asdict(self), "path": str(self.path)}
        path.write_text(json.dumps(record, indent=1) + "\n")


def _ood_images(name: str, data_root: Path, count: int) -> list[np.ndarray]:
    if name not in OOD_SOURCES:
        raise InputError(f"unknown OOD source {name!r}; choose one of {', '.join(OOD_SOURCES)}")
    source = data_root / OOD_SOURCES[name]
    if source.is_file():  # a real clip: take frames evenly over its length
        frames = [record.image for record in iter_frames(source)]
        picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
        return [frames[i] for i in picks]
    files = list_images(source, recursive=True)
    if not files:
        raise InputError(f"no images in {source}")
    return [read_image(p) for p in files[:count]]


def assemble_demo_clip(out: Path, fps: float = 10.0, hold: int = 2, id_images: int = 60, ood_images: int = 60,
                       ood: str = "cvc-clinicdb", data_root: Path = SHARED_DATA, split: Path = DEFAULT_SPLIT) -> ClipInfo:
    """Write the ID → OOD → ID clip to `out` (.mp4) and return where each segment is.

    Args:
        out: MP4 path; its folder is created.
        fps: the clip's frame rate, frames/s.
        hold: frames each image is shown for (≥ 1).
        id_images: images per ID segment (two segments, disjoint, from the split's test set).
        ood_images: images (or clip frames) in the OOD segment.
        ood: one of `OOD_SOURCES`.
        data_root: ../shared/data.
        split: the split file whose test set gives the ID images.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise InputError(f"the development data is not at {data_root}; pass --source with your own video or folder")
    test = load_split(split, data_root / "hyperkvasir-lgi").paths("test")
    rng = np.random.default_rng(0)  # a mix of the three ID classes, the same clip every run
    order = rng.permutation(len(test))
    if len(test) < 2 * id_images:
        raise InputError(f"the split's test set has {len(test)} images; {2 * id_images} needed")
    first = [read_image(test[i]) for i in order[:id_images]]
    second = [read_image(test[i]) for i in order[id_images:2 * id_images]]
    parts = [("ID", "hyperkvasir-lgi test", first), ("OOD", ood, _ood_images(ood, data_root, ood_images)),
             ("ID", "hyperkvasir-lgi test", second)]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, CANVAS)
    if not writer.isOpened():
        raise InputError(f"cannot write {out} with OpenCV")
    segments, frame = [], 0
    try:
        for label, source, images in parts:
            start = frame
            for image in images:
                resized = cv2.resize(image, CANVAS, interpolation=cv2.INTER_AREA)
                for _ in range(hold):
                    writer.write(resized)
                    frame += 1
            segments.append(Segment(label, source, start, frame, start / fps, frame / fps))
    finally:
        writer.release()
    return ClipInfo(out, fps, frame, CANVAS, segments)
