"""The zero-shot map families for explanation_run (explanations/distinct.py): intra-image
distinctiveness, alone, multiplied by the exact score decomposition, and that weighted away from the scene's edge.

Descriptor sources: the shipped model's own blocks at the engine's 224 input (free with its forward pass:
the live candidates), and, to learn whether finer or generic features would point better, a second
forward at 448 input or with packaged ImageNet weights — EfficientNet-Lite0, and Lite2, the largest
backbone whose weights ship in a package (not live-feasible at ≈ 1–6× the engine's whole forward; measured,
never shipped). Distinctiveness maps are cached under
.cache/explanations; the masks only measure (explanation_run chooses on the select part).
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import torch

from ..data.features import model_fingerprint
from ..data.images import read_image
from ..explanations.assets import SCENE_FAMILY
from ..explanations.distinct import combine, distinctiveness, rescale, scene_cells
from ..explanations.maps import residual_decomposition
from ..explanations.patch import forward_with_blocks, parse_blocks, patch_descriptors
from ..preprocess import normalize_uint8, to_model_rgb
from .explanation_data import MASKED_SETS, Frame, MapFamily, load_masked_set, split_parts

__all__ = ["LIVE_SOURCES", "OFFLINE_SOURCES", "distinct_families"]

# (weights, input side, blocks): the first two come out of the engine's own forward pass
LIVE_SOURCES = (("bundled", 224, "blocks.2"), ("bundled", 224, "blocks.2+blocks.3"))
OFFLINE_SOURCES = (("bundled", 448, "blocks.3"), ("imagenet", 224, "blocks.2"), ("imagenet", 448, "blocks.4"),
                   ("imagenet-lite2", 448, "blocks.4"))
DARKS = (0, 50, 70, 90)
SIGMAS = (0.0, 1.0)
POWERS = (1.0, 4.0)
EDGE_TAUS = (1.0, 2.0, 3.0)  # cells; round 5: the maximum's misses sit mostly at the scene's edge
RADIUS = 1


def _network(weights: str, model):
    if weights == "bundled":
        return model
    from ..models.efficientnet_lite import build_efficientnet_lite

    arch = {"imagenet": "efficientnet_lite0", "imagenet-lite2": "efficientnet_lite2"}[weights]
    return build_efficientnet_lite(arch, 1000, pretrained=True).eval()


def _source_maps(source: tuple[str, int, str], model, frames: list[Frame], data_root: Path, cache: Path) -> np.ndarray:
    """(N, h, w) distinctiveness of every frame from one descriptor source (cached)."""
    weights, side, layer = source
    key = hashlib.sha1(("|".join(f"{f.set_name}/{f.name}" for f in frames) + model_fingerprint(model)
                        + f"{source}{RADIUS}").encode()).hexdigest()[:10]
    path = cache / f"distinct-{weights}-{side}-{layer}-{key}.npz"
    if path.exists():
        return np.load(path)["maps"]
    net, blocks = _network(weights, model), parse_blocks(layer)
    paths = _image_paths(frames, data_root) if side != 224 else None
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), 8):
            chunk = frames[start:start + 8]
            rgb = (np.stack([f.rgb for f in chunk]) if paths is None
                   else np.stack([to_model_rgb(read_image(paths[start + i]), size=side) for i in range(len(chunk))]))
            _, _, kept = forward_with_blocks(net, torch.from_numpy(normalize_uint8(rgb)), blocks)
            out.append(distinctiveness(patch_descriptors(kept), RADIUS))
    maps = np.concatenate(out)
    np.savez(path, maps=maps)
    return maps


def _image_paths(frames: list[Frame], data_root: Path) -> list[Path]:
    by_name = {(s, i.name): i.image_path for s in MASKED_SETS
               for items in split_parts(load_masked_set(s, data_root)).values() for i in items}
    return [by_name[(f.set_name, f.name)] for f in frames]


def distinct_families(model, detector, frames: list[Frame], args, memory_map=None) -> list[MapFamily]:
    """The zero-shot families; with `memory_map(frame) -> (28, 28)` (the ID patch memory's nearest-patch
    distance on the lit region, explanation_patch) also memory distance × distinctiveness."""
    cache = Path(".cache") / "explanations"
    cache.mkdir(parents=True, exist_ok=True)
    print("distinctiveness maps (cached)", flush=True)
    sources = {s: _source_maps(s, model, frames, args.data_root, cache) for s in LIVE_SOURCES + OFFLINE_SOURCES}
    index = {(f.set_name, f.name): i for i, f in enumerate(frames)}
    scenes: dict[tuple[int, int], np.ndarray] = {}
    decomposition: dict[int, np.ndarray] = {}

    def scene(i: int, dark: int, frame: Frame, h: int) -> np.ndarray:
        if (i, dark) not in scenes:
            scenes[(i, dark)] = scene_cells(frame.rgb[None], h, h, dark)[0]
        return scenes[(i, dark)]

    def make(frame: Frame, source: str, dark: int, sigma: float, power: float, with_score: bool,
             edge_tau: float = 0.0) -> np.ndarray:
        i = index[(frame.set_name, frame.name)]
        weights, side, layer = source.split(":")
        dist = sources[(weights, int(side), layer)][i]
        score = None
        if with_score:
            if i not in decomposition:
                decomposition[i] = residual_decomposition(frame.feature_map, detector)
            score = decomposition[i]
        return combine(dist, scene(i, dark, frame, dist.shape[0]), sigma, power, score, edge_tau)

    def candidates(source_list, with_score):
        return tuple({"source": ":".join(map(str, s)), "dark": d, "sigma": sg, "power": p, "with_score": with_score}
                     for s, d, sg, p in itertools.product(source_list, DARKS, SIGMAS, POWERS))

    def decomposition_on_scene(frame: Frame, dark: int, power: float) -> np.ndarray:
        i = index[(frame.set_name, frame.name)]
        if i not in decomposition:
            decomposition[i] = residual_decomposition(frame.feature_map, detector)
        return combine(None, scene(i, dark, frame, 28), 0.0, power, decomposition[i])

    def times_memory(frame: Frame, dark: int, sigma: float, power: float) -> np.ndarray:
        i = index[(frame.set_name, frame.name)]
        dist = sources[LIVE_SOURCES[0]][i]
        cells = scene(i, dark, frame, dist.shape[0])
        unusual = combine(dist, cells, sigma, 1.0)
        return np.where(cells, (unusual * rescale(memory_map(frame), cells)) ** power + 1e-6, 0.0).astype(np.float32)

    memory_family = [] if memory_map is None else [MapFamily(
        "ID patch-memory distance x distinctiveness (engine's blocks.2, scene cells)", times_memory,
        tuple({"dark": d, "sigma": sg, "power": p} for d, sg, p in itertools.product(DARKS, SIGMAS, POWERS)))]
    return memory_family + [
        MapFamily("intra-image distinctiveness (engine's blocks, scene cells)", make, candidates(LIVE_SOURCES, False)),
        MapFamily("distinctiveness x score decomposition (engine's blocks, scene cells)", make,
                  candidates(LIVE_SOURCES, True)),
        MapFamily(f"{SCENE_FAMILY} (engine's blocks, scene cells)", make,
                  tuple(dict(c, edge_tau=t) for c in candidates(LIVE_SOURCES, True) for t in EDGE_TAUS)),
        MapFamily("score decomposition on scene cells (ablation: no distinctiveness)", decomposition_on_scene,
                  tuple({"dark": d, "power": p} for d, p in itertools.product(DARKS, POWERS))),
        MapFamily("distinctiveness x score decomposition (second forward: 448 input or ImageNet weights; not live)",
                  make, candidates(OFFLINE_SOURCES, True)),
    ]
