"""Spatial explanation maps from the last feature map: the shipped score decomposed over locations,
Grad-CAM of the predicted class, and a centre prior (the floor any map must beat).

All take one frame's last feature map `m` (D, h, w) float (features = its spatial mean, the adapter
contract of models/base.py) and return (h, w) float64 maps, higher = "explains more here". How well
each points at the unknown is measured by evaluation/explanation_metrics.py.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..nero import NeroDetector
from ..nero import functional as F

__all__ = ["block_stats_decomposition", "centre_prior", "gradcam_map", "residual_decomposition"]


def residual_decomposition(feature_map: np.ndarray, detector: NeroDetector) -> np.ndarray:
    """The relevance-residual score split exactly over feature-map locations: (D, h, w) → (h, w).

    The shipped detector scores s = ‖r‖ / ‖x̃‖ with x̃ = R − μ (relevance minus the PCA mean of the
    training relevances) and r = (I − VᵀV) x̃ its part outside the PCA subspace. The relevance is
    R = a ⊙ g with g = G·W fixed by the frame's logits (docs/NERO.md §1), and a = mean_l m_l, so
    x̃ = Σ_l x_l with x_l = (m_l ⊙ g − μ) / L over the L = h·w locations. Then

        c_l = ⟨x_l, r⟩ / (‖r‖ · ‖x̃‖)      and      Σ_l c_l = ‖r‖² / (‖r‖ · ‖x̃‖) = s   exactly,

    because ⟨x̃, r⟩ = ‖r‖² (r is the orthogonal projection of x̃). c_l is signed: a location whose
    relevance lies along the training subspace pulls the score down. A frame at the mean (x̃ = 0) or
    with no residual (r = 0) scores 0 and gets an all-zero map. float64 throughout.
    """
    if not detector.config.use_residual:
        raise InputError("residual_decomposition explains detectors that score the relevance residual "
                         "(use_residual=True); this detector does not use it")
    arrays = detector.fitted_arrays()
    maps = np.asarray(feature_map, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != detector.feature_dim:
        raise InputError(f"feature map must be (D={detector.feature_dim}, h, w), got {maps.shape}")
    channels, height, width = maps.shape
    locations = maps.reshape(channels, -1).T  # (L, D)
    features = locations.mean(axis=0, keepdims=True)
    cfg = detector.config
    rel = F.head_relevance(features, arrays["weight"], arrays["bias"], cfg.stabilizer, cfg.epsilon)
    gain = (rel.probs / F.stabilize_logits(rel.logits, cfg.stabilizer, cfg.epsilon)[0]) @ arrays["weight"]
    centred = rel.neurons[0] - arrays["pca_mean"]
    components = arrays["pca_components"]
    outside = centred - (components @ centred) @ components
    total, residual_norm = np.linalg.norm(centred), np.linalg.norm(outside)
    if total == 0 or residual_norm == 0:
        return np.zeros((height, width))
    parts = ((locations * gain[0]) @ outside - arrays["pca_mean"] @ outside) / len(locations)
    return (parts / (residual_norm * total)).reshape(height, width)


def block_stats_decomposition(block_output: np.ndarray, detector) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The block-statistics Mahalanobis distance split exactly over the block's locations: (C, h, w) → (h, w).

    `detector` is a fitted `BlockStatsMahalanobis` (baselines/block_stats.py): d = Δᵀ P Δ with
    Δ = (s − center) / scale − ν_c for the nearest class c, and s = [μ | σ] the block's per-channel spatial mean
    and population std over its L = h·w locations. Both are sums over locations: μ = Σ_l b_l / L, and
    σ = Σ_l (b_l − μ)² / (L σ) (σ² = Σ_l (b_l − μ)² / L; a channel with σ = 0 contributes 0). So
    Δ = Σ_l δ_l with δ_l = [b_l / L | (b_l − μ)² / (L σ)] / scale − (center / scale + ν_c) / L, and

        c_l = ⟨δ_l, P Δ⟩      with      Σ_l c_l = Δᵀ P Δ = d   exactly.

    c_l is signed: a location that pulls the statistics back towards the class lowers the distance. In the
    shipped fusion the statistics' component is (d − mean) / std, so its spatial parts are c_l / std − mean /
    (std · L). float64 throughout.
    """
    block = np.asarray(block_output, dtype=np.float64)
    channels = block.shape[0]
    if block.ndim != 3 or 2 * channels != detector.center_.shape[0]:
        raise InputError(f"block output must be (C={detector.center_.shape[0] // 2}, h, w), got {block.shape}")
    height, width = block.shape[1:]
    locations = block.reshape(channels, -1).T  # (L, C)
    count = len(locations)
    mean = locations.mean(axis=0)
    std = np.sqrt(((locations - mean) ** 2).mean(axis=0))
    safe = np.where(std > 0, std, 1.0)
    spread = np.where(std > 0, (locations - mean) ** 2 / (count * safe), 0.0)
    stats_parts = np.concatenate([locations / count, spread], axis=1)  # (L, 2C), sums to [μ | σ]
    z = (np.concatenate([mean, std]) - detector.center_) / detector.scale_
    nearest = int(np.argmin([(z - m) @ detector.precision_ @ (z - m) for m in detector.class_means_]))
    delta = z - detector.class_means_[nearest]
    parts = stats_parts / detector.scale_ - (detector.center_ / detector.scale_ + detector.class_means_[nearest]) / count
    return (parts @ (detector.precision_ @ delta)).reshape(height, width)


def gradcam_map(feature_map: np.ndarray, weight: np.ndarray, predicted: int) -> np.ndarray:
    """Grad-CAM of class `predicted` at the last feature map: ReLU(Σ_k α_k m_k), (D, h, w) → (h, w).

    With a linear head over the global average pool, ∂logit_c/∂m_k(l) = W_ck / L at every location, so
    Grad-CAM's channel weights α_k (the spatial mean of that gradient) are exactly W_ck / L: the map is
    computed in closed form, no backward pass (CAM and Grad-CAM coincide for this architecture).
    """
    maps = np.asarray(feature_map, dtype=np.float64)
    alpha = np.asarray(weight, dtype=np.float64)[predicted] / (maps.shape[1] * maps.shape[2])
    return np.maximum(np.tensordot(alpha, maps, axes=1), 0.0)


def centre_prior(height: int, width: int, sigma: float) -> np.ndarray:
    """A Gaussian at the image centre, `sigma` as a fraction of the side → (height, width) in (0, 1]."""
    if sigma <= 0:
        raise InputError(f"centre prior sigma must be > 0, got {sigma}")
    ys = (np.arange(height) + 0.5) / height - 0.5
    xs = (np.arange(width) + 0.5) / width - 0.5
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
