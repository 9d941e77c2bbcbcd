"""Per-frame arrays for the site-enrollment evaluation, computed once and cached on disk.

For every frame of the development footage, as the live path sees it (scope crop in `auto` mode, then
224 × 224): the patch descriptor maps of both candidate backbones (the bundled fine-tuned
EfficientNet-Lite0 and the ImageNet one), the valid-region grid, and the bundled NERO score. Groups:
PolypGen centres' normal sequences (`A/seq01` …), their polyp frames (`A/polyp` …), and HyperKvasir's
ID subsets and polyps of the committed split (`hk/id-test`, `hk/polyp` …).

Cache: `.cache/site-enrollment/<backbone>/<group>.npz`, keyed by the file list, the layers and
CACHE_VERSION (maps stored as float16: 152 × 28 × 28 per frame).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import bundled
from ..capture.scope_mask import ScopeMasker
from ..data.images import list_images, read_image
from ..data.split import load_split
from ..models.registry import load_classifier
from ..nero import NeroDetector
from ..preprocess import normalize_uint8, to_model_rgb
from ..site.patch_memory import PatchFeatureExtractor, valid_region
from .datasets import DEFAULT_SPLIT, SHARED_DATA

__all__ = ["BACKBONES", "CENTRES", "FrameArrays", "cached_model_rgb", "frame_groups", "load_group", "model_rgb"]

CACHE_VERSION = 1
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "site-enrollment"
BACKBONES = ("imagenet", "bundled")
# PolypGen centres of the no-polyp sequences (../shared/data/README.md)
CENTRES = {"A": ("seq01", "seq03", "seq05", "seq07"), "B": ("seq09", "seq11", "seq15"),
           "C": ("seq19", "seq21", "seq23")}


@dataclass(frozen=True)
class FrameArrays:
    """maps (N, C, h, w) float16, valid (N, h, w) bool, nero (N,) float64 bundled NERO score, names."""

    maps: np.ndarray
    valid: np.ndarray
    nero: np.ndarray
    names: tuple[str, ...]


def frame_groups(shared_data: Path = SHARED_DATA) -> dict[str, list[Path]]:
    """Group name → image files, in temporal (file-name) order."""
    groups: dict[str, list[Path]] = {}
    negative = shared_data / "sequences" / "polypgen-negative"
    for centre, sequences in CENTRES.items():
        for seq in sequences:
            groups[f"{centre}/{seq}"] = list_images(negative / f"{seq}_neg")
        groups[f"{centre}/polyp"] = list_images(shared_data / "polypgen-positive" / f"centre_{centre}")
    split = load_split(DEFAULT_SPLIT, shared_data / "hyperkvasir-lgi")
    for subset in ("train", "val", "test"):
        groups[f"hk/id-{subset}"] = split.paths(subset)
    groups["hk/polyp"] = sorted(split.root / item.file for item in split.subsets["ood"] if item.class_name == "polyp")
    return groups


def model_rgb(frame: np.ndarray) -> np.ndarray:
    """(224, 224, 3) uint8 RGB as the live capture path makes it: scope crop (auto), then resize."""
    return to_model_rgb(ScopeMasker(mode="auto").apply(frame))


def cached_model_rgb(group: str, files: list[Path]) -> np.ndarray:
    """(N, 224, 224, 3) uint8 as the live path makes it, cached (decoding 1080p JPEGs is the slow part)."""
    path = CACHE_DIR / "rgb" / f"{group.replace('/', '__')}.npz"
    if path.is_file():
        with np.load(path) as data:
            if data["names"].tolist() == [str(f) for f in files]:
                return data["rgb"]
    rgb = np.stack([model_rgb(read_image(f)) for f in files])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, rgb=rgb, names=np.array([str(f) for f in files]))
    return rgb


def _key(files: list[Path], layer: str) -> str:
    payload = json.dumps({"v": CACHE_VERSION, "layer": layer, "files": [str(f.resolve()) for f in files]})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Extractors:
    def __init__(self) -> None:
        self.model, _ = load_classifier(bundled.MODEL)
        self.detector = NeroDetector.load(bundled.DETECTOR, *self.model.head_arrays())
        self.patch = {"bundled": PatchFeatureExtractor(self.model), "imagenet": PatchFeatureExtractor(None)}


def _compute(files: list[Path], ex: _Extractors, batch: int = 16) -> dict[str, FrameArrays]:
    out: dict[str, list] = {name: [] for name in BACKBONES}
    valid, nero = [], []
    for start in range(0, len(files), batch):
        rgb = np.stack([model_rgb(read_image(f)) for f in files[start:start + batch]])
        images = torch.from_numpy(normalize_uint8(rgb))
        with torch.inference_mode():
            _, features, _ = ex.model(images)
        nero.append(ex.detector.score(features.numpy().astype(np.float64)))
        for name in BACKBONES:
            maps = ex.patch[name](images)
            out[name].append(maps.numpy().astype(np.float16))
        valid.append(valid_region(rgb, *out[BACKBONES[0]][-1].shape[-2:]))
    names = tuple(str(f) for f in files)
    v, s = np.concatenate(valid), np.concatenate(nero)
    return {name: FrameArrays(np.concatenate(out[name]), v, s, names) for name in BACKBONES}


_EXTRACTORS: _Extractors | None = None


def load_group(group: str, backbone: str, files: list[Path]) -> FrameArrays:
    """The cached arrays of a group for one backbone, computing (both backbones at once) when missing."""
    global _EXTRACTORS
    key = _key(files, "blocks.2+blocks.4")
    path = CACHE_DIR / backbone / f"{group.replace('/', '__')}-{key}.npz"
    if not path.is_file():
        if _EXTRACTORS is None:
            _EXTRACTORS = _Extractors()
        for name, arrays in _compute(files, _EXTRACTORS).items():
            target = CACHE_DIR / name / f"{group.replace('/', '__')}-{key}.npz"
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez(target, maps=arrays.maps, valid=arrays.valid, nero=arrays.nero, names=np.array(arrays.names))
    with np.load(path, allow_pickle=False) as data:
        return FrameArrays(data["maps"], data["valid"], data["nero"], tuple(data["names"].tolist()))


if __name__ == "__main__":  # fill the cache: python -m stream_monitor.evaluation.site_features
    torch.set_num_threads(1)
    import time

    for group_name, group_files in frame_groups().items():
        t0 = time.time()
        arrays = load_group(group_name, "bundled", group_files)
        print(f"{group_name}: {len(arrays.names)} frames, {time.time() - t0:.1f} s", flush=True)
