"""The fused NERO module: backbone → features → head → relevance (→ PCA projection, → ρ) in one forward.

For a linear head NERO's relevance is two small matrix products on the features (docs/NERO.md §1), so
it belongs in the same graph as the backbone: one compiled program (TensorRT, a CUDA graph, OpenVINO)
returns everything the scoring kernels need. The module is `torch.export`-clean — the options are
Python attributes fixed at construction, never branches on tensor values — because torch-tensorrt
compiles what `torch.export` produces.

Precision: the backbone may run in float16 / bfloat16, but the head always runs in float32. The
relevance divides by the logits (ε = 0 in parity mode), so a half-precision head would amplify rounding
exactly where NERO is most sensitive; the head is ~0.1% of the FLOPs, so keeping it in float32 is free.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError
from ..models.base import ClassifierAdapter
from ..models.block_stats import block_statistics, forward_with_blocks, require_block_stats
from ..nero import NeroDetector

__all__ = ["FusedNero", "NeroHead", "OUTPUT_NAMES"]

# Everything a FusedNero can return, in this order; `FusedNero.output_names` says which it does.
OUTPUT_NAMES = ("logits", "probs", "features", "relevance", "bias_relevance", "projected", "rho", "residual",
                "feature_map", "patch_features")


class NeroHead(nn.Module):
    """NERO's per-frame math on pooled features, as float32 torch ops.

    features (B, D) → logits (B, C), probs (B, C), relevance (B, D), bias_relevance (B,), and when
    enabled projected (B, P) = (relevance − pca_mean) · componentsᵀ, rho (B,) (k least-relevant
    neurons by `topk`) and, for detectors with `use_residual`, residual (B,) — the share of the centred
    relevance outside the PCA subspace. Distances to the centroids and the score are left to the kernels.
    """

    def __init__(self, detector: NeroDetector, project: bool = True, rho: bool = True) -> None:
        super().__init__()
        arrays = detector.fitted_arrays()
        cfg = detector.config
        self.stabilizer = cfg.stabilizer
        self.epsilon = float(cfg.epsilon)
        self.k = int(detector.k_)
        # The robust relevance-residual term needs the projection (it is what lies outside it).
        self.with_residual = bool(getattr(cfg, "use_residual", False))
        self.project = project or self.with_residual
        self.with_rho = rho
        as32 = lambda name: torch.from_numpy(np.ascontiguousarray(arrays[name], dtype=np.float32))  # noqa: E731
        self.register_buffer("weight", as32("weight"))
        self.register_buffer("bias", as32("bias"))
        # Stored transposed (D, P) so the projection is one plain matmul with no transpose in the graph,
        # and the centring folded into its bias: (R − μ)·Vᵀ = R·Vᵀ − μ·Vᵀ, one addmm instead of a
        # (B, D) subtraction first (computed in float64, then rounded once).
        self.register_buffer("components_t", as32("pca_components").t().contiguous())
        mean, components = (np.asarray(arrays[name], np.float64) for name in ("pca_mean", "pca_components"))
        offset = -mean @ components.T
        self.register_buffer("projection_offset", torch.from_numpy(offset.astype(np.float32)))
        if self.with_residual:
            self.register_buffer("pca_mean", as32("pca_mean"))
            self.register_buffer("components", as32("pca_components"))

    def output_names(self) -> tuple[str, ...]:
        names = ["logits", "probs", "relevance", "bias_relevance"]
        return tuple(names + (["projected"] if self.project else []) + (["rho"] if self.with_rho else [])
                     + (["residual"] if self.with_residual else []))

    def _denominators(self, logits: Tensor) -> Tensor:
        if self.stabilizer == "none":
            return logits
        sign = torch.where(logits >= 0, 1.0, -1.0)
        if self.stabilizer == "sign":
            return logits + self.epsilon * sign
        return sign * torch.clamp(logits.abs(), min=self.epsilon)  # "clamp"

    def forward(self, features: Tensor) -> tuple[Tensor, ...]:
        features = features.float()
        logits = torch.nn.functional.linear(features, self.weight, self.bias)
        probs = torch.softmax(logits, dim=1)
        gain = probs / self._denominators(logits)  # (B, C)
        relevance = features * (gain @ self.weight)  # (B, D): [A,1] ⊙ (G·W'), neuron part
        bias_relevance = gain @ self.bias  # (B,): the bias column
        out = [logits, probs, relevance, bias_relevance]
        if self.project:
            out.append(torch.addmm(self.projection_offset, relevance, self.components_t))
        if self.with_rho:
            out.append(self._rho(features, relevance))
        if self.with_residual:
            out.append(self._residual(relevance, out[4]))
        return tuple(out)

    def _residual(self, relevance: Tensor, projected: Tensor) -> Tensor:
        """‖x̃ − Vᵀ(V x̃)‖₂ / ‖x̃‖₂ with x̃ = R − μ (nero.functional.residual_ratio), 0 at the mean.

        The reconstruction is subtracted explicitly rather than using ‖x̃‖² − ‖Vx̃‖²: that difference
        cancels badly in float32 when the residual is small, and costs only one more (B, P, D) product.
        """
        centred = relevance - self.pca_mean
        outside = centred - projected @ self.components
        total = torch.linalg.vector_norm(centred, dim=1)
        positive = total > 0
        return torch.where(positive, torch.linalg.vector_norm(outside, dim=1)
                           / torch.where(positive, total, torch.ones_like(total)), 0.0)

    def _rho(self, features: Tensor, relevance: Tensor) -> Tensor:
        magnitude = features.abs()
        total = magnitude.sum(dim=1)
        if self.k == features.shape[1]:
            selected = total
        else:
            lowest = torch.topk(relevance, self.k, dim=1, largest=False, sorted=False).indices
            selected = torch.gather(magnitude, 1, lowest).sum(dim=1)
        positive = total > 0
        return torch.where(positive, selected / torch.where(positive, total, torch.ones_like(total)), 0.0)


class FusedNero(nn.Module):
    """Backbone and NERO head in one forward: images (B, 3, H, W) float32 → a tuple named by `output_names`.

    backbone_dtype: run the backbone in this dtype (its weights are cast on a private copy of the
    model, the input inside forward) — the export-clean way to get fp16 / bf16 that TensorRT's
    explicit typing respects. The model is deep-copied, so back-ends may cast it. autocast_dtype:
    instead wrap the backbone in `torch.autocast` (eager CPU / CUDA back-ends: keeps numerically
    delicate layers in float32). Features, feature map and all
    head outputs are float32 either way.
    """

    def __init__(self, model: ClassifierAdapter, detector: NeroDetector, *, project: bool = True,
                 rho: bool = True, feature_map: bool = True, backbone_dtype: torch.dtype | None = None,
                 autocast_dtype: torch.dtype | None = None, patch_blocks: tuple[int, ...] = (),
                 stats_block: int | None = None) -> None:
        super().__init__()
        weight, bias = model.head_arrays()
        detector.check_head(weight, bias)
        if backbone_dtype is not None and autocast_dtype is not None:
            raise InputError("pass backbone_dtype or autocast_dtype, not both")
        # A private copy: back-ends cast, move and re-layout it, and the caller's model must not change.
        model = copy.deepcopy(model)
        if backbone_dtype not in (None, torch.float32):
            model = model.to(backbone_dtype)
        self.model = model.eval()
        self.head = NeroHead(detector, project=project, rho=rho)
        self.backbone_dtype = backbone_dtype
        self.autocast_dtype = autocast_dtype
        # The adapter says whether it has a map (CNNs, token grids that pool to the feature) or None.
        self.with_feature_map = feature_map and bool(model.has_feature_map)
        # The patch explanation map's descriptors (explanations/patch.py): these blocks' outputs, taken from
        # this same forward pass, so the map costs no second backbone run.
        self.patch_blocks = tuple(patch_blocks)
        # The served alert detector's block statistics (models/block_stats.py), from the same pass too.
        if stats_block is not None:
            require_block_stats(model)
        self.stats_block = stats_block

    @property
    def output_names(self) -> tuple[str, ...]:
        head = self.head.output_names()
        names = head[:2] + ("features",) + head[2:]
        return (names + (("feature_map",) if self.with_feature_map else ())
                + (("patch_features",) if self.patch_blocks else ())
                + (("block_stats",) if self.stats_block is not None else ()))

    def _backbone(self, images: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        return backbone_outputs(self.model, images, self.patch_blocks, self.stats_block)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if self.backbone_dtype is not None:
            images = images.to(self.backbone_dtype)
        if self.autocast_dtype is not None:
            with torch.autocast(images.device.type, dtype=self.autocast_dtype):
                features, feature_map, patches, stats = self._backbone(images)
        else:
            features, feature_map, patches, stats = self._backbone(images)
        features = features.float()
        head = self.head(features)
        out = head[:2] + (features,) + head[2:]
        if self.with_feature_map:
            out = out + (feature_map.float(),)
        if patches is not None:
            out = out + (patches.float(),)
        if stats is not None:
            out = out + (stats.float(),)
        return out

    def named_outputs(self, outputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Pair a forward's (or a compiled copy's) outputs with their names."""
        return dict(zip(self.output_names, outputs, strict=True))


def backbone_outputs(model: ClassifierAdapter, images: Tensor, patch_blocks: tuple[int, ...] = (),
                     stats_block: int | None = None) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """(features, feature map, patch descriptors or None, block statistics or None) from one backbone pass:
    the blocks the patch map and the alert detector read are taken on the way (no hooks, no second run)."""
    if not patch_blocks and stats_block is None:
        return (*model.forward_features(images), None, None)
    from ..explanations.patch import patch_descriptors

    wanted = tuple(sorted(set(patch_blocks) | ({stats_block} if stats_block is not None else set())))
    features, feature_map, kept = forward_with_blocks(model, images, wanted)
    by_block = dict(zip(wanted, kept))
    patches = patch_descriptors([by_block[b] for b in sorted(set(patch_blocks))]) if patch_blocks else None
    stats = block_statistics(by_block[stats_block]) if stats_block is not None else None
    return features, feature_map, patches, stats
