"""Shared test cases for every kernel implementation: shapes from the issue and the edge cases.

Widths: the PCA space of D = 384, 512, 1280 (P = floor(2D/3) = 256, 341, 853) and the raw relevance
space (D + 1), where the explanation measures its nearest class. Used by the CPU tests in this folder
and, in a subprocess under NUMBA_ENABLE_CUDASIM=1, by `cuda_sim_check.py`.
"""

from __future__ import annotations

import numpy as np

FEATURE_DIMS = (384, 512, 1280)
PCA_WIDTHS = tuple(2 * d // 3 for d in FEATURE_DIMS)
RAW_WIDTHS = tuple(d + 1 for d in FEATURE_DIMS)
BATCHES = (1, 7, 256, 1024)
CENTROIDS = (1, 3, 11, 50)


def relevance_problem(batch: int, dim: int, dtype: type, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Post-ReLU features with ~30% dead units (|a| = 0, relevance ±0 — the ties ρ must not care about)
    and relevances of both signs: features (B, D), relevance (B, D) of `dtype`."""
    rng = np.random.default_rng(seed)
    features = np.maximum(rng.normal(0.3, 1.0, size=(batch, dim)), 0)
    relevance = features * rng.normal(size=(batch, dim)) * 1e-2
    return features.astype(dtype), relevance.astype(dtype)


def distance_problem(batch: int, width: int, n_centroids: int, dtype: type,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """samples (B, P) and centroids (K, P) of `dtype`, samples near random centroids so minima are clear."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(n_centroids, width))
    samples = centroids[rng.integers(n_centroids, size=batch)] + rng.normal(scale=0.5, size=(batch, width))
    return samples.astype(dtype), centroids.astype(dtype)


# Relative tolerance of a float32 kernel against the float64 reference: L1 sums of ≤ 1281 terms
# accumulated in float32 with re-association (pairwise-like), ≈ 1e-6 typical; 1e-5 leaves margin.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
