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

__all__ = ["centre_prior", "gradcam_map", "residual_decomposition"]


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
