"""Mahalanobis distance on a mid-level block's pooled statistics (models/block_stats.py).

Input is the *extended* feature vector `[a | s]`: the penultimate feature a (D, what the head consumes)
followed by the block statistics s (2 · C_B). D is the head's input width, so the split is known at fit
time from the head weight (C, D) and needs no extra configuration. Per dimension standardised on the ID
train set, then

    score(x) = min_c (z(s) − μ_c)ᵀ Σ̂⁻¹ (z(s) − μ_c),      Σ̂ = (1 − λ) Σ + λ · tr(Σ)/p · I

with μ_c the class means and Σ the pooled within-class covariance of the standardised train statistics
(Lee et al. 2018's class-conditional Gaussian with one shared covariance). The shrinkage λ keeps Σ̂
invertible: p = 384 statistics from a few hundred training frames leave Σ ill-conditioned.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["BlockStatsMahalanobis", "split_extended"]


def split_extended(extended: np.ndarray, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D + S) extended features → (penultimate (N, D), block statistics (N, S)); S must be > 0."""
    extended = np.asarray(extended, np.float64)
    if extended.ndim != 2 or extended.shape[1] <= feature_dim:
        raise InputError(f"this detector needs the block statistics beside the {feature_dim} penultimate "
                         f"features; got features of shape {extended.shape}. Extract them with a model that "
                         "supports block statistics (EfficientNet adapters)")
    return extended[:, :feature_dim], extended[:, feature_dim:]


class BlockStatsMahalanobis:
    """Min class-conditional Mahalanobis distance of the standardised block statistics (shared, shrunk
    covariance). Needs extended features (`uses_block_stats`)."""

    uses_block_stats = True

    def __init__(self, shrinkage: float = 0.1) -> None:
        if not 0.0 < float(shrinkage) <= 1.0:
            raise InputError(f"shrinkage must be in (0, 1]; got {shrinkage!r}")
        self.shrinkage = float(shrinkage)

    def fit(self, features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> "BlockStatsMahalanobis":
        self.feature_dim_ = int(np.shape(weight)[1])
        _, stats = split_extended(features, self.feature_dim_)
        labels = np.asarray(labels)
        self.center_ = stats.mean(axis=0)
        self.scale_ = stats.std(axis=0) + 1e-6  # a constant statistic must not divide by zero
        z = (stats - self.center_) / self.scale_
        classes = np.unique(labels)
        self.class_means_ = np.stack([z[labels == c].mean(axis=0) for c in classes])
        centred = np.concatenate([z[labels == c] - z[labels == c].mean(axis=0) for c in classes])
        covariance = centred.T @ centred / len(centred)
        p = covariance.shape[0]
        shrunk = (1.0 - self.shrinkage) * covariance + self.shrinkage * np.trace(covariance) / p * np.eye(p)
        self.precision_ = np.linalg.inv(shrunk)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        _, stats = split_extended(features, self.feature_dim_)
        z = (stats - self.center_) / self.scale_
        diff = z[:, None, :] - self.class_means_[None, :, :]
        return np.einsum("ncd,de,nce->nc", diff, self.precision_, diff).min(axis=1)
