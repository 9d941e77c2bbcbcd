"""The patch-map family for explanation_run: one memory per (backbone, layers), its distance maps for
every masked frame and held-out ID frame computed once (cached under .cache/explanations), then the
cheap post-processing settings (smoothing σ, ID quantile offset) tried on top.

The memory is fitted on the ID TRAIN images of the committed split; the offsets come from the ID
VALIDATION images; the masks only measure (explanation_run chooses on the select part).
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np

from ..data.features import model_fingerprint
from ..data.images import read_image
from ..data.split import load_split
from ..explanations.patch import (
    PatchExplainer,
    PatchMapSettings,
    postprocess_distances,
)
from ..explanations.patch import (
    extract as _extract,
)
from ..preprocess import normalize_uint8, to_model_rgb
from ..site.patch_memory import PatchFeatureExtractor, PatchMemory, valid_region
from .explanation_data import Frame, MapFamily

__all__ = ["BACKBONES", "MEMORIES", "patch_families"]

# Only the shipped model's own blocks: their outputs come free with the engine's forward pass, while
# another backbone (e.g. ImageNet weights) would cost a second forward, far over the live budget.
BACKBONES = ("bundled",)
# (blocks, memory entries) that fit the live budget (≤ 10 % of the engine's ~20 ms per frame on this CPU:
# about 40 MFLOP of nearest-neighbour search per frame = grid cells × memory × channels × 2), chosen
# before any mask was looked at: 28×28 × 500 × 40 ch and 14×14 × 1000 × 80 ch.
MEMORIES = (("blocks.2", 500), ("blocks.3", 1000))
SIGMAS = (0.0, 1.0, 2.0)
QUANTILES = (None, 0.9, 0.99)
SPLIT = Path(__file__).resolve().parents[2] / "configs" / "splits" / "hyperkvasir-lgi.json"


def _id_frames(subset: str) -> tuple[np.ndarray, np.ndarray]:
    split = load_split(SPLIT)
    rgb = np.stack([to_model_rgb(read_image(p)) for p in split.paths(subset)])
    return normalize_uint8(rgb), rgb


def _distances(extractor: PatchFeatureExtractor, memory: PatchMemory, images: np.ndarray, rgb: np.ndarray):
    features = _extract(extractor, images)
    return memory.distances(features), valid_region(rgb, *features.shape[2:])


def patch_families(model, detector, frames: list[Frame], args) -> list[MapFamily]:
    """One MapFamily "patch map" whose candidates span backbone × layers × σ × quantile."""
    cache = Path(".cache") / "explanations"
    cache.mkdir(parents=True, exist_ok=True)
    train, train_rgb = _id_frames("train")
    val, val_rgb = _id_frames("val")
    masked = np.stack([f.image for f in frames])
    masked_rgb = np.stack([f.rgb for f in frames])
    names = hashlib.sha1(("|".join(f"{f.set_name}/{f.name}" for f in frames) + model_fingerprint(model)
                          + str(PatchMapSettings(max_patches=PatchMapSettings.max_patches))).encode()).hexdigest()[:10]
    tables: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    print("patch memories: fitting and measuring distances (cached)", flush=True)
    for backbone, (layer, coreset) in itertools.product(BACKBONES, MEMORIES):
        path = cache / f"{backbone}-{layer}-{coreset}-{names}.npz"
        if not path.exists():
            fitted = PatchExplainer.fit(model, train, val, PatchMapSettings(layer, coreset, sigma=0.0, quantile=None))
            extractor = PatchFeatureExtractor(model, layer=layer)
            d_val, v_val = _distances(extractor, fitted.memory, val, val_rgb)
            d_mask, v_mask = _distances(extractor, fitted.memory, masked, masked_rgb)
            np.savez(path, d_val=d_val, v_val=v_val, d_mask=d_mask, v_mask=v_mask)
            print(f"patch memory {backbone} {layer}: {fitted.memory.size} entries of {fitted.memory.channels} "
                  "channels", flush=True)
        tables[(backbone, layer)] = dict(np.load(path))
    index = {(f.set_name, f.name): i for i, f in enumerate(frames)}
    offsets: dict[tuple, float] = {}
    for (backbone, layer), table in tables.items():
        for sigma, quantile in itertools.product(SIGMAS, QUANTILES):
            smoothed = postprocess_distances(table["d_val"], table["v_val"], sigma, 0.0)
            offsets[(backbone, layer, sigma, quantile)] = (
                0.0 if quantile is None else float(np.quantile(smoothed[table["v_val"]], quantile)))

    def make(frame: Frame, backbone: str, layer: str, coreset: int, sigma: float, quantile: float | None) -> np.ndarray:
        table, i = tables[(backbone, layer)], index[(frame.set_name, frame.name)]
        offset = offsets[(backbone, layer, sigma, quantile)]
        return postprocess_distances(table["d_mask"][i:i + 1], table["v_mask"][i:i + 1], sigma, offset)[0]

    candidates = tuple({"backbone": b, "layer": lay, "coreset": m, "sigma": s, "quantile": q}
                       for b, (lay, m), s, q in itertools.product(BACKBONES, MEMORIES, SIGMAS, QUANTILES))
    return [MapFamily("patch map (ID patch memory, lit scope region)", make, candidates)]
