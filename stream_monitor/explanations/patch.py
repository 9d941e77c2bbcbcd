"""The patch-level OOD map: how far each patch of a frame is from every patch of normal footage.

One map machinery for in-domain and site-enrolled monitors: the memory of normal patches is the
`PatchMemory` of stream_monitor/site/patch_memory.py, built here from the ID training images
(and, after enrollment, from a site's footage by the site model). Per frame:

    d(l)   = distance of patch l's mid-level descriptor to its nearest normal patch        (h, w)
    map(l) = max(smooth_σ(d)(l) − q, 0) on cells of the lit scope region, 0 elsewhere

where q is a quantile of the same distances on held-out ID frames (so 0 means "as close to normal as
most normal patches are") and the valid region (`valid_region`) drops the scope's black border, text in
it and the green position box, whose appearance differs between hospitals and otherwise dominates the
map. Settings (blocks, σ, quantile) are chosen on the select half of the polyp masks
(evaluation/explanation_run.py), never on the images they are reported on.

Live, the descriptors come out of the engine's own forward pass (`forward_with_blocks`: the blocks'
outputs are intermediate results of the backbone the monitor runs anyway), so the map costs only the
pooling, the nearest-neighbour search and the valid region (benchmarks/explanation_cost.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor

from .. import artifact
from ..errors import ArtifactError, InputError
from ..models.block_stats import forward_with_blocks
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..site.patch_memory import PatchFeatureExtractor, PatchMemory, valid_region

__all__ = ["ARTIFACT_KIND", "PatchExplainer", "PatchMapSettings", "denormalize", "forward_with_blocks",
           "patch_descriptors", "postprocess_distances"]

ARTIFACT_KIND = "patch-explainer"
_LOCAL_POOL = 3  # PatchCore's 3×3 neighbourhood average, as PatchFeatureExtractor


@dataclass(frozen=True)
class PatchMapSettings:
    """layer: blocks of the backbone whose outputs form the descriptor ('blocks.3', 'blocks.2+blocks.4');
    coreset: memory entries; sigma: Gaussian smoothing of the distance map, in grid cells (0 = none);
    quantile: of held-out ID patch distances subtracted from the map (None = no offset)."""

    layer: str = "blocks.3"
    coreset: int = 1000  # 14×14 cells × 1000 × 80 channels: within the live budget (benchmarks/explanation_cost.py)
    sigma: float = 1.0
    quantile: float | None = 0.99
    max_patches: int = 40_000  # seeded subsample of the training patches before the greedy coreset (cost N × coreset)


def parse_blocks(layer: str) -> tuple[int, ...]:
    try:
        blocks = tuple(sorted({int(p.strip().removeprefix("blocks.")) for p in layer.split("+")}))
    except ValueError as exc:
        raise InputError(f"layer {layer!r}: expected block indices such as 'blocks.3' or 'blocks.2+blocks.4'") from exc
    if not blocks or blocks[0] < 0:
        raise InputError(f"layer {layer!r}: expected block indices such as 'blocks.3'")
    return blocks


def patch_descriptors(block_outputs: list[Tensor]) -> Tensor:
    """Blocks' outputs → (B, C, h, w) descriptors exactly as `PatchFeatureExtractor` makes them: each
    3×3-averaged (stride 1), resized to the first (finest) grid, concatenated. Export-clean."""
    maps = [TF.avg_pool2d(x.float(), _LOCAL_POOL, stride=1, padding=_LOCAL_POOL // 2, count_include_pad=False)
            for x in block_outputs]
    size = maps[0].shape[-2:]
    # the later (coarser) maps resized without a shape test, which a trace (OpenVINO) would warn about
    resized = [TF.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
    return torch.cat([maps[0], *resized], dim=1)


def denormalize(images: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float32 ImageNet-normalised → (B, H, W, 3) uint8 RGB (the inverse of normalize_uint8),
    C-contiguous: OpenCV takes a strided image through a copy on every call."""
    rgb = np.moveaxis(np.asarray(images, np.float32), -3, -1) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8, order="C")


def postprocess_distances(distances: np.ndarray, valid: np.ndarray, sigma: float, offset: float) -> np.ndarray:
    """(B, h, w) nearest-patch distances → maps: smoothed, minus `offset`, clipped at 0, invalid cells 0.

    Smoothing runs with the invalid cells filled by the frame's valid median, so the border's large
    distances do not bleed into the valid region."""
    distances = np.asarray(distances, dtype=np.float32)
    out = np.zeros_like(distances)
    for i, (d, ok) in enumerate(zip(distances, valid)):
        if not ok.any():
            continue
        filled = np.where(ok, d, np.float32(np.median(d[ok])))
        if sigma > 0:
            filled = cv2.GaussianBlur(filled, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
        out[i] = np.where(ok, np.maximum(filled - offset, 0.0), 0.0)
    return out


class PatchExplainer:
    """A fitted patch map: blocks + memory + ID offset + smoothing.

    `maps_from_descriptors(descriptors, images)` is the live call (descriptors from the engine's forward);
    `heatmaps(...)` the same scaled to [0, 1] for display: full colour where a patch is twice the ID
    offset away from normal (`display_scale` = offset), so a normal frame shows no heat at all.
    """

    def __init__(self, layer: str, memory: PatchMemory, offset: float, sigma: float, info: dict | None = None) -> None:
        self.layer, self.blocks = layer, parse_blocks(layer)
        self.memory, self.offset, self.sigma = memory, float(offset), float(sigma)
        self.info = dict(info or {})

    @classmethod
    def fit(cls, adapter, train_images: np.ndarray, held_out_images: np.ndarray, settings: PatchMapSettings,
            seed: int = 0) -> "PatchExplainer":
        """Memory from the valid patches of ID training frames, offset from held-out ID frames.

        images (N, 3, 224, 224) float32 ImageNet-normalised; `adapter` the monitor's own classifier."""
        extractor = PatchFeatureExtractor(adapter, layer=settings.layer)
        features = extract(extractor, train_images)
        valid = valid_region(denormalize(train_images), *features.shape[2:])
        patches = features.transpose(0, 2, 3, 1)[valid]
        if len(patches) == 0:
            raise InputError("no valid patch in the training frames: is the scope region found?")
        keep = np.random.default_rng(seed).permutation(len(patches))[:settings.max_patches]
        patches = patches[np.sort(keep)]
        memory = PatchMemory.fit(patches, settings.coreset, seed=seed)
        offset = 0.0
        if settings.quantile is not None:
            held = extract(extractor, held_out_images)
            held_valid = valid_region(denormalize(held_out_images), *held.shape[2:])
            smoothed = postprocess_distances(memory.distances(held), held_valid, settings.sigma, 0.0)
            offset = float(np.quantile(smoothed[held_valid], settings.quantile))
        info = {"n_train": int(len(train_images)), "n_held_out": int(len(held_out_images)),
                "quantile": settings.quantile, "coreset": settings.coreset, "max_patches": settings.max_patches, "seed": seed}
        return cls(settings.layer, memory, offset, settings.sigma, info)

    def maps_from_descriptors(self, descriptors: Tensor | np.ndarray, images: np.ndarray) -> np.ndarray:
        """(B, C, h, w) descriptors + the (B, 3, 224, 224) normalised frames → (B, h, w) float32 maps."""
        descriptors = torch.as_tensor(descriptors, dtype=torch.float32)
        valid = valid_region(denormalize(images), *descriptors.shape[2:])
        return postprocess_distances(self.memory.distances(descriptors), valid, self.sigma, self.offset)

    def maps(self, adapter, images: np.ndarray) -> np.ndarray:
        """Offline: run the adapter's blocks for (B, 3, 224, 224) normalised frames → (B, h, w)."""
        with torch.inference_mode():
            _, _, kept = forward_with_blocks(adapter, torch.from_numpy(np.ascontiguousarray(images)), self.blocks)
            return self.maps_from_descriptors(patch_descriptors(kept), images)

    def heatmaps(self, maps: np.ndarray) -> np.ndarray:
        """Maps → (B, h, w) float32 in [0, 1] for display (see the class docstring)."""
        scale = self.offset if self.offset > 0 else float(np.max(maps)) or 1.0
        return np.clip(maps / scale, 0.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        return self.memory.to_arrays()

    def metadata(self) -> dict:
        return {"layer": self.layer, "offset": self.offset, "sigma": self.sigma, "info": self.info}

    def save(self, path: str | os.PathLike) -> None:
        artifact.write_artifact(path, self.arrays(), {"kind": ARTIFACT_KIND, **self.metadata(),
                                                      "versions": artifact.library_versions()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchExplainer":
        arrays, meta = artifact.read_artifact(path)
        if meta.get("kind") != ARTIFACT_KIND:
            raise ArtifactError(f"{path} holds a {meta.get('kind')!r} artifact, not a patch explainer")
        return cls.from_parts(arrays, meta, str(path))

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], meta: dict, source: str = "artifact") -> "PatchExplainer":
        try:
            return cls(meta["layer"], PatchMemory.from_arrays(arrays), meta["offset"], meta["sigma"], meta.get("info"))
        except (KeyError, InputError) as exc:
            raise ArtifactError(f"{source}: invalid patch explainer ({exc})") from exc


def extract(extractor: PatchFeatureExtractor, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """Descriptors (N, C, h, w) float32 of (N, 3, 224, 224) normalised frames, in batches."""
    chunks = [extractor(torch.from_numpy(np.ascontiguousarray(images[i:i + batch]))).numpy()
              for i in range(0, len(images), batch)]
    return np.concatenate(chunks)
