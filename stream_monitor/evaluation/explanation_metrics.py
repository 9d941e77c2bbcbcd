"""Does an explanation map point at the unknown? Three measures against a ground-truth mask.

Every map and mask is compared on one evaluation grid (`GRID` × `GRID`, half the model input side): the
map (h, w) is resized bilinearly, the mask by area and thresholded at half, so that a 7×7 map, a 28×28
map and a 224×224 prior are judged alike. The mask marks the unknown (a polyp); it is used to measure
maps, never to fit or choose anything that is then reported on the same images.

- pointing game: the map's maximum lies inside the mask (first maximum in row-major order, so a
  constant map points at the top-left corner and misses — an empty explanation earns nothing);
- mass inside: the share of the map's positive mass inside the mask, against the mask's share of the
  image (what a flat map would get);
- AUROC inside vs outside: the probability that a pixel inside the mask has a higher map value than
  one outside (ties count half), the mask being the positive class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from .ood_metrics import auroc

__all__ = ["GRID", "MapScores", "auroc_inside", "mass_inside", "pointing_hit", "score_map", "summarise",
           "to_grid_mask", "to_grid_map"]

GRID = 112  # half the model input side: masks and maps are smooth at this scale, and 4× cheaper


def to_grid_map(heat: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(h, w) float map → (grid, grid) float64, bilinear; NaN is an error (a map must say something)."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise InputError(f"an explanation map must be a non-empty (h, w) array, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise InputError("the explanation map contains NaN or inf")
    if heat.shape == (grid, grid):
        return heat.astype(np.float64)
    return cv2.resize(heat, (grid, grid), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def to_grid_mask(mask: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(H, W) bool mask → (grid, grid) bool: area-resized share of mask pixels ≥ 0.5."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise InputError(f"a mask must be a 2-D bool array, got shape {mask.shape} dtype {mask.dtype}")
    share = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return share >= 0.5


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """True when the first maximum of `heat` (grid) lies inside `mask` (grid, bool)."""
    return bool(mask.reshape(-1)[int(np.argmax(heat))])


def mass_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive mass inside the mask; 0 for a map with no positive mass."""
    positive = np.maximum(heat, 0.0)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def auroc_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of map values, mask (inside) positive, outside negative; needs pixels of both kinds."""
    inside, outside = heat[mask], heat[~mask]
    if len(inside) == 0 or len(outside) == 0:
        raise InputError("the mask covers none or all of the image: AUROC inside vs outside is undefined")
    return auroc(outside, inside)


@dataclass(frozen=True)
class MapScores:
    """One map against one mask: hit (pointing game), mass inside, mask share, AUROC inside vs outside."""

    hit: bool
    mass: float
    mask_share: float
    auroc: float


def score_map(heat: np.ndarray, mask: np.ndarray, grid: int = GRID) -> MapScores:
    """All three measures of one (h, w) map against one (H, W) bool mask, on the evaluation grid."""
    heat_grid, mask_grid = to_grid_map(heat, grid), to_grid_mask(mask, grid)
    return MapScores(pointing_hit(heat_grid, mask_grid), mass_inside(heat_grid, mask_grid),
                     float(mask_grid.mean()), auroc_inside(heat_grid, mask_grid))


def summarise(scores: list[MapScores]) -> dict[str, float]:
    """Means over images: pointing game (share of hits), mass inside, mask share, mass lift (mass inside
    over mask share, per image then averaged; 1 = no better than a flat map), AUROC; and n."""
    if not scores:
        raise InputError("no map scores to summarise")
    hits = np.array([s.hit for s in scores], dtype=float)
    mass = np.array([s.mass for s in scores])
    share = np.array([s.mask_share for s in scores])
    return {
        "n": len(scores),
        "pointing_game": float(hits.mean()),
        "mass_inside": float(mass.mean()),
        "mask_share": float(share.mean()),
        "mass_lift": float((mass / share).mean()),
        "auroc_inside": float(np.mean([s.auroc for s in scores])),
    }
