"""One pass over enrollment footage, as the live path sees it: everything enrollment needs per frame.

Each frame is scope-cropped (ScopeMasker, `auto`) and resized to 224 × 224 exactly like the capture
process does, then one batch at a time: the classifier's pooled features (for NERO) and the patch
descriptor maps and valid region (for the site model). Frames are reduced to 224 × 224 at once, so five
minutes of 1080p footage never sit in memory at full size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..capture.scope_mask import ScopeMasker
from ..errors import InputError
from ..models.base import ClassifierAdapter
from ..models.block_stats import forward_with_stats, supports_block_stats
from ..preprocess import normalize_uint8, to_model_rgb
from .patch_memory import PatchFeatureExtractor, scored_cells

__all__ = ["FootageArrays", "analyse_footage", "block_groups"]


@dataclass(frozen=True)
class FootageArrays:
    """names (N,), features (N, D) float32 (classifier), maps (N, C, h, w) float32 and valid (N, h, w);
    block_stats (N, S) float32 where the classifier gives them (models/block_stats.py), else None."""

    names: tuple[str, ...]
    features: np.ndarray
    maps: np.ndarray
    valid: np.ndarray
    block_stats: np.ndarray | None = None

    def alert_input(self, needs_block_stats: bool) -> np.ndarray:
        """What a served alert detector reads: the features, or `[features | block statistics]`."""
        if not needs_block_stats:
            return self.features
        if self.block_stats is None:
            raise InputError("the served alert detector needs block statistics, which this classifier does not give")
        return np.concatenate([self.features, self.block_stats], axis=1)


def _batches(frames: Iterable[tuple[str, np.ndarray]], size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    masker = ScopeMasker(mode="auto")
    names, rgb = [], []
    for name, frame in frames:
        names.append(name)
        rgb.append(to_model_rgb(masker.apply(frame)))
        if len(names) == size:
            yield names, np.stack(rgb)
            names, rgb = [], []
    if names:
        yield names, np.stack(rgb)


@torch.inference_mode()
def analyse_footage(frames: Iterable[tuple[str, np.ndarray]], model: ClassifierAdapter,
                    extractor: PatchFeatureExtractor, total: int | None = None, batch_size: int = 8,
                    progress: bool = True, specular_cover: float | None = None) -> FootageArrays:
    """Features, patch maps and valid regions (patch_memory.scored_cells with `specular_cover`) of
    (name, BGR frame) pairs (see the module docstring)."""
    names: list[str] = []
    features, maps, valid, stats = [], [], [], []
    with_stats = supports_block_stats(model)
    bar = tqdm(total=total, desc="site footage", unit="frame", disable=not progress)
    for batch_names, rgb in _batches(frames, batch_size):
        images = torch.from_numpy(normalize_uint8(rgb))
        if with_stats:  # the served alert detector may read them; same pass, same pooled features
            pooled, _, block_stats = forward_with_stats(model, images)
            stats.append(block_stats.float().numpy())
        else:
            pooled, _ = model.forward_features(images)
        patch = extractor(images)
        features.append(pooled.float().numpy())
        maps.append(patch.numpy())
        valid.append(scored_cells(rgb, *patch.shape[-2:], specular_cover))
        names.extend(batch_names)
        bar.update(len(batch_names))
    bar.close()
    if not names:
        raise InputError("the enrollment footage holds no frames")
    return FootageArrays(tuple(names), np.concatenate(features), np.concatenate(maps), np.concatenate(valid),
                         np.concatenate(stats) if with_stats else None)


def block_groups(n_frames: int, blocks: int = 5) -> np.ndarray:
    """(n,) int group of each frame when the footage is one recording: `blocks` contiguous blocks, so
    near-identical neighbouring frames sit in the same group and cross-fitting scores each block against
    the other parts of the procedure."""
    if n_frames < 2:
        raise InputError(f"need at least 2 frames to enroll, got {n_frames}")
    blocks = max(2, min(blocks, n_frames))
    return np.minimum((np.arange(n_frames) * blocks) // n_frames, blocks - 1)
