"""Zero-shot patch maps: how unlike the rest of its OWN frame each patch is, and that refined by the score.

No memory of normal footage and nothing fitted: a polyp differs from the mucosa around it, whatever the
hospital (after MuSc, Li et al., ICLR 2024, which scores each patch against the patches of other unlabelled
images; here the other patches of the same frame). Per frame, with descriptors x_l (the engine's
mid-level block outputs, 3×3-averaged as `patch.patch_descriptors`):

    dist(l)   = min over cells m outside l's (2r+1)² neighbourhood of ‖x_l − x_m‖          (h, w)
    scene(l)  = the lit scope region (`valid_region`: no black border, text or position box) minus
                cells touching very dark pixels (the lumen: dark, unlike everything, never a polyp's
                surface — without this the maximum sits on the lumen)
    map(l)    = ( n(smooth_σ(dist))(l) · n(up(c))(l) · e(l) )^power   on scene cells, 0 elsewhere
                (without the score: ( n(smooth_σ(dist))(l) · e(l) )^power)
    e(l)      = 1 − exp(−d(l) / τ), d(l) the distance (cells) from l to the nearest non-scene cell
                (`edge_weight`; τ = 0: e = 1) — a cell at the scene's edge sees the dark or the border in
                its receptive field, which makes it look unusual; most misses of the maximum sit there

where n(·) rescales to [0, 1] over the scene cells and c is the exact decomposition of the shipped score
over the 7×7 last-layer locations (`maps.residual_decomposition`, bilinearly resized): the product keeps
what is both unusual within the frame AND drives the alert. `power` sharpens the map for display; it
changes neither the maximum nor the ordering of cells.

Settings are chosen on the select half of the polyp masks (evaluation/explanation_distinct.py). When the
chosen edge-weighted product beats every baseline map there (docs/results/explanations), its settings
(`SceneMapSettings`) ship in the explanation artifact and `scene_maps` draws it live on the frames that
alert (explanations/assets.py).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..site.patch_memory import valid_region
from .maps import residual_decomposition
from .patch import parse_blocks

__all__ = ["SceneMapSettings", "combine", "dark_cells", "distinctiveness", "edge_weight", "rescale", "scene_cells",
           "scene_maps"]


@dataclass(frozen=True)
class SceneMapSettings:
    """The live map's settings (the module docstring's symbols; defaults: what the select part chose in
    round 5, docs/results/explanations/maps.json): descriptor blocks of the engine's own forward, grey level
    below which pixels count as dark lumen, smoothing σ and edge length τ in cells, display power."""

    layer: str = "blocks.2"
    dark: int = 50
    sigma: float = 1.0
    power: float = 1.0
    edge_tau: float = 3.0
    radius: int = 1

    @property
    def blocks(self) -> tuple[int, ...]:
        return parse_blocks(self.layer)

    def metadata(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict) -> "SceneMapSettings":
        try:
            settings = cls(**meta)
            settings.blocks  # noqa: B018 — a bad layer name fails here, at load, not on the first alert
        except (TypeError, ValueError, InputError) as exc:
            raise InputError(f"invalid scene-map settings {meta!r}: {exc}") from exc
        return settings


@functools.lru_cache(maxsize=8)
def _neighbourhood(h: int, w: int, radius: int) -> torch.Tensor:
    """(h·w, h·w) float32: +inf where two cells are within `radius` (Chebyshev), else 0 — built once per grid."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = torch.maximum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs()) <= radius
    return torch.zeros(near.shape).masked_fill_(near, float("inf"))


@torch.inference_mode()
def distinctiveness(descriptors: np.ndarray | torch.Tensor, radius: int = 1, cells: np.ndarray | None = None) -> np.ndarray:
    """(B, C, h, w) → (B, h, w) float32: each cell's L2 distance to the nearest cell of the same frame
    outside its (2·radius+1)² neighbourhood (a frame of one texture scores low everywhere). `cells`
    (B, h, w) bool: compute only those cells' distances (to every cell of the frame), 0 elsewhere — the
    live map reads only its scene cells, and skipping the rest saves a third of the search."""
    x = torch.as_tensor(descriptors, dtype=torch.float32)
    if x.ndim != 4:
        raise InputError(f"descriptors must be (B, C, h, w), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    if radius < 0 or (2 * radius + 1) >= max(h, w):
        raise InputError(f"radius {radius} leaves no cell outside the neighbourhood on a {h}×{w} grid")
    flat = x.reshape(b, c, h * w).transpose(1, 2)  # (B, L, C)
    sq = (flat ** 2).sum(-1)
    near = _neighbourhood(h, w, radius)
    if cells is None:
        # ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b; ‖a‖² is the same along a row, so it is added after the minimum
        d2 = torch.baddbmm(sq[:, None, :] + near, flat, flat.transpose(1, 2), alpha=-2.0)
        return (d2.amin(-1) + sq).clamp_min(0).sqrt().reshape(b, h, w).numpy()
    out = torch.zeros(b, h * w)
    for i, keep in enumerate(torch.from_numpy(np.asarray(cells, bool).reshape(b, h * w))):
        rows = keep.nonzero().squeeze(1)
        if len(rows):
            d2 = torch.addmm(sq[i][None] + near[rows], flat[i][rows], flat[i].T, alpha=-2.0)
            out[i, rows] = (d2.amin(-1) + sq[i][rows]).clamp_min(0).sqrt()
    return out.reshape(b, h, w).numpy()


def dark_cells(rgb: np.ndarray, h: int, w: int, dark: int, share: float = 0.05) -> np.ndarray:
    """(H, W, 3) uint8 → (h, w) bool: cells where more than `share` of the pixels are within 2 px of a pixel
    darker than `dark` (grey level); all False when dark is 0."""
    if dark <= 0:
        return np.zeros((h, w), dtype=bool)
    below = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) < dark).astype(np.float32)
    below = cv2.dilate(below, np.ones((5, 5), np.uint8))
    return cv2.resize(below, (w, h), interpolation=cv2.INTER_AREA) > share


def scene_cells(rgb: np.ndarray, h: int, w: int, dark: int) -> np.ndarray:
    """(B, H, W, 3) uint8 → (B, h, w) bool: the lit scope region without overlays (`valid_region`, its
    border erosion scaled to the image size) minus the dark cells."""
    rgb = np.ascontiguousarray(rgb)  # OpenCV copies a strided image on every call
    edge = max(1, round(10 * rgb.shape[1] / 224))
    valid = valid_region(rgb, h, w, edge_px=edge)
    return np.stack([v & ~dark_cells(image, h, w, dark) for v, image in zip(valid, rgb)])


def rescale(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Values rescaled to [0, 1] over `cells` (min → 0, max → 1), 0 off them; a flat map → all 0."""
    lo, hi = float(values[cells].min()), float(values[cells].max())
    return np.where(cells, (values - lo) / (hi - lo) if hi > lo else 0.0, 0.0)


def edge_weight(scene: np.ndarray, tau: float) -> np.ndarray:
    """(h, w) bool scene → (h, w) float32 e(l) = 1 − exp(−d(l)/τ), d the Euclidean distance in cells to the
    nearest non-scene cell (the grid's outside counts as non-scene); all 1 when τ is 0."""
    if tau <= 0:
        return np.ones(scene.shape, np.float32)
    padded = np.pad(scene, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return (1.0 - np.exp(-distance / tau)).astype(np.float32)


def combine(dist: np.ndarray | None, scene: np.ndarray, sigma: float, power: float,
            score_map: np.ndarray | None = None, edge_tau: float = 0.0) -> np.ndarray:
    """One frame: (h, w) distinctiveness (None: leave it out), (h, w) scene cells, optional (h', w') score
    decomposition, edge length τ (0: no edge weight) → the (h, w) float32 map of the module docstring.
    No scene cell: an all-zero map."""
    if dist is None and score_map is None:
        raise InputError("combine needs the distinctiveness, the score decomposition or both")
    if not scene.any():
        return np.zeros(scene.shape, np.float32)
    out = np.where(scene, 1.0, 0.0)
    if dist is not None:
        # smooth with the non-scene cells filled by the scene's median, so the border does not bleed in
        filled = np.where(scene, dist, np.float32(np.median(dist[scene]))).astype(np.float32)
        if sigma > 0:
            filled = cv2.GaussianBlur(filled, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
        out = rescale(filled, scene)
    if score_map is not None:
        up = cv2.resize(np.asarray(score_map, np.float32), scene.shape[::-1], interpolation=cv2.INTER_LINEAR)
        out = out * rescale(up, scene)
    out = out * edge_weight(scene, edge_tau)
    # + a tiny floor on scene cells: off-scene cells rank below every scene cell
    return np.where(scene, out ** power + 1e-6, 0.0).astype(np.float32)


def scene_maps(settings: SceneMapSettings, descriptors: np.ndarray | torch.Tensor, rgb: np.ndarray,
               feature_maps: np.ndarray, detector) -> np.ndarray:
    """The module docstring's map for a batch: (B, C, h, w) descriptors of `settings.blocks`, (B, H, W, 3)
    uint8 RGB as the model saw it, (B, D, h', w') last feature maps → (B, h, w) float32 in [0, 1], each frame's
    map divided by its maximum for display, as the deviation heatmap is (the measures are scale-free)."""
    h, w = descriptors.shape[-2:]
    scenes = scene_cells(np.asarray(rgb), h, w, settings.dark)
    dist = distinctiveness(descriptors, settings.radius, scenes)  # `combine` reads it on scene cells only
    maps = np.stack([combine(dist[i], scenes[i], settings.sigma, settings.power,
                             residual_decomposition(feature_maps[i], detector), settings.edge_tau)
                     for i in range(len(dist))])
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)
