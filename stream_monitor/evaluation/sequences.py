"""Per-sequence features of the ordered real footage in ../shared/data/sequences, for stream-level
measurements (drift signal timing, enrollment by sequence).

Sequences stay whole: anything that splits footage into "enroll" and "evaluate" must split by sequence,
never by frame, because consecutive frames of one sequence are near-duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.features import Extracted, extract_paths, model_fingerprint
from ..data.images import list_images
from ..models.base import ClassifierAdapter
from .datasets import SHARED_DATA

POLYPGEN = "polypgen-negative"
CVC = "cvc-clinicdb"


@dataclass(frozen=True)
class Sequence:
    """One ordered sequence: its dataset folder, name, frame paths in order and extracted features."""

    dataset: str
    name: str
    paths: tuple[Path, ...]
    extracted: Extracted

    @property
    def features(self) -> np.ndarray:
        return self.extracted.features

    @property
    def logits(self) -> np.ndarray:
        return self.extracted.logits


def sequence_folders(dataset: str, shared_data: Path = SHARED_DATA) -> list[Path]:
    """The sequence folders of one dataset (`polypgen-negative` or `cvc-clinicdb`), sorted by name."""
    root = (shared_data / "sequences" / dataset).resolve()
    return sorted(p for p in root.iterdir() if p.is_dir())


def load_sequences(model: ClassifierAdapter, dataset: str, cache_dir: Path | None,
                   shared_data: Path = SHARED_DATA, fingerprint: str | None = None,
                   names: list[str] | None = None) -> list[Sequence]:
    """Extract (or read from the cache) every sequence of a dataset, one cache entry per sequence."""
    fingerprint = fingerprint or model_fingerprint(model)
    out = []
    for folder in sequence_folders(dataset, shared_data):
        if names is not None and folder.name not in names:
            continue
        paths = tuple(list_images(folder))
        ex = extract_paths(model, list(paths), f"{dataset}/{folder.name}", cache_dir, fingerprint)
        out.append(Sequence(dataset, folder.name, paths, ex))
    return out
