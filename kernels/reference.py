"""NumPy reference for the scoring kernels: the definition every Numba CPU / CUDA kernel is tested against.

Plain, readable NumPy in float64, whatever dtype comes in. Shapes: B rows (frames), P columns (PCA
components, or D+1 raw relevances), K centroids, D features. Conventions shared by every implementation:

- ties: the nearest centroid is the *first* index of the minimum (what `np.argmin` returns);
- NaN: a row with any NaN input has distance NaN and index -1, rho NaN, score NaN and the INVALID flag;
  it is never silently scored as in- or out-of-distribution;
- a feature row whose L1 norm is 0 has rho = 0 (no norm to share), as `NeroDetector` defines it.
"""

from __future__ import annotations

import numpy as np

FLAG_OVER = np.uint8(1)  # score > threshold: the frame is flagged out-of-distribution
FLAG_INVALID = np.uint8(2)  # score is NaN or ±inf: the frame could not be scored

__all__ = ["FLAG_INVALID", "FLAG_OVER", "fuse_scores", "low_relevance_ratio", "nearest_l1", "threshold_flags",
           "top_abs"]


def nearest_l1(samples: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L1 distance from each row to its nearest centroid, and that centroid's index.

    samples (B, P) float, centroids (K, P) float, K ≥ 1 → distance (B,) float64, index (B,) int64.
    """
    samples = np.asarray(samples, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if centroids.ndim != 2 or centroids.shape[0] < 1 or samples.shape[1:] != centroids.shape[1:]:
        raise ValueError(f"samples (B, P) and centroids (K ≥ 1, P) disagree: {samples.shape}, {centroids.shape}")
    all_distances = np.abs(samples[:, None, :] - centroids[None, :, :]).sum(axis=2)
    index = all_distances.argmin(axis=1) if len(samples) else np.zeros(0, dtype=np.int64)
    distance = all_distances[np.arange(len(samples)), index]
    bad = np.isnan(all_distances).any(axis=1)
    return np.where(bad, np.nan, distance), np.where(bad, -1, index).astype(np.int64)


def fuse_scores(
    distance: np.ndarray,
    bias_relevance: np.ndarray,
    rho: np.ndarray,
    lam: float,
    use_distance: bool = True,
    use_bias: bool = True,
    use_rho: bool = True,
    residual: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NERO(x) = (d + λ·|R_bias|) · ρ [· residual], each term switchable (docs/NERO.md §6; the residual
    is robust mode's optional term). With distance and bias both off the sum is 1, as in
    `nero.functional.fuse_score`.

    distance, bias_relevance, rho, residual (B,) float, lam ≥ 0 → score (B,) float64,
    bias_term (B,) = λ·|R_bias|.
    """
    bias_term = lam * np.abs(np.asarray(bias_relevance, dtype=np.float64))
    total = np.zeros_like(bias_term) if (use_distance or use_bias) else np.ones_like(bias_term)
    if use_distance:
        total = total + np.asarray(distance, dtype=np.float64)
    if use_bias:
        total = total + bias_term
    if use_rho:
        total = total * np.asarray(rho, dtype=np.float64)
    if residual is not None:
        total = total * np.asarray(residual, dtype=np.float64)
    return total, bias_term


def threshold_flags(score: np.ndarray, threshold: float) -> np.ndarray:
    """(B,) uint8 bit flags: FLAG_OVER where score > threshold, FLAG_INVALID where score is not finite."""
    score = np.asarray(score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        over = np.where(score > threshold, FLAG_OVER, np.uint8(0))
    return (over | np.where(np.isfinite(score), np.uint8(0), FLAG_INVALID)).astype(np.uint8)


def low_relevance_ratio(features: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """ρ: share of each row's feature L1 norm held by its k least-relevant neurons (NERO.md §2).

    features (B, D), relevance (B, D), 1 ≤ k ≤ D → (B,) float64. Uses a stable full sort: where tied
    relevances straddle the k-th place the earlier neurons are taken (ties carry |a| = 0 in practice —
    dead units — so the choice does not change ρ).
    """
    features = np.asarray(features, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if not 1 <= k <= features.shape[1]:
        raise ValueError(f"k must be in [1, D={features.shape[1]}], got {k}")
    magnitude = np.abs(features)
    lowest = np.argsort(relevance, axis=1, kind="stable")[:, :k]
    selected = np.take_along_axis(magnitude, lowest, axis=1).sum(axis=1)
    total = magnitude.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(total > 0, selected / np.where(total > 0, total, 1.0), 0.0)
    bad = np.isnan(features).any(axis=1) | np.isnan(relevance).any(axis=1)
    return np.where(bad, np.nan, rho)


def top_abs(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n entries of largest |value| in each row, largest first, earlier index first on ties.

    values (B, D), 1 ≤ n ≤ D → index (B, n) int64, value (B, n) (signed, in values' dtype). This is
    `NeroDetector.explain`'s ordering: `argsort(-|v|, kind="stable")[:, :n]`.
    """
    values = np.asarray(values)
    index = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :n].astype(np.int64)
    return index, np.take_along_axis(values, index, axis=1)
