"""NumPy reference for the scoring kernels: the definition every Numba CPU / CUDA kernel is tested against.

It is NERO's own math (`stream_monitor.nero.functional`, the one definition, with its tie and NaN rule)
in float64 whatever dtype comes in, in the kernels' calling convention; only the threshold flags are the
kernels' own. Shapes: B rows (frames), P columns (PCA components, or D+1 raw relevances), K centroids,
D features. The rule every implementation follows (stated in `nero.functional`):

- ties: the nearest centroid is the *first* index of the minimum; ρ and top-n take earlier indices first;
- NaN: a row with any NaN input has distance NaN and index -1, rho NaN, score NaN and the INVALID flag;
  it is never silently scored as in- or out-of-distribution;
- a feature row whose L1 norm is 0 has rho = 0 (no norm to share), as `NeroDetector` defines it.
"""

from __future__ import annotations

import numpy as np

from stream_monitor.nero import functional as F

FLAG_OVER = np.uint8(1)  # score > threshold: the frame is flagged out-of-distribution
FLAG_INVALID = np.uint8(2)  # score is NaN or ±inf: the frame could not be scored

__all__ = ["FLAG_INVALID", "FLAG_OVER", "fuse_scores", "low_relevance_ratio", "nearest_l1", "threshold_flags",
           "top_abs"]


def nearest_l1(samples: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L1 distance from each row to its nearest centroid, and that centroid's index.

    samples (B, P) float, centroids (K, P) float, K ≥ 1 → distance (B,) float64, index (B,) int64.
    """
    return F.nearest_centroid(np.asarray(samples, dtype=np.float64), np.asarray(centroids, dtype=np.float64))


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
    """NERO(x) = (d + λ·|R_bias|) · ρ [· residual], each term switchable: `nero.functional.fuse_score`
    with the bias term λ·|R_bias| formed here, as the kernels receive raw bias relevance.

    distance, bias_relevance, rho, residual (B,) float, lam ≥ 0 → score (B,) float64,
    bias_term (B,) = λ·|R_bias|.
    """
    bias_term = lam * np.abs(np.asarray(bias_relevance, dtype=np.float64))
    score = F.fuse_score(np.asarray(distance, dtype=np.float64), bias_term, np.asarray(rho, dtype=np.float64),
                         use_distance, use_bias, use_rho,
                         None if residual is None else np.asarray(residual, dtype=np.float64))
    return score, bias_term


def threshold_flags(score: np.ndarray, threshold: float) -> np.ndarray:
    """(B,) uint8 bit flags: FLAG_OVER where score > threshold, FLAG_INVALID where score is not finite."""
    score = np.asarray(score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        over = np.where(score > threshold, FLAG_OVER, np.uint8(0))
    return (over | np.where(np.isfinite(score), np.uint8(0), FLAG_INVALID)).astype(np.uint8)


def low_relevance_ratio(features: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """ρ: share of each row's feature L1 norm held by its k least-relevant neurons (NERO.md §2).

    features (B, D), relevance (B, D), 1 ≤ k ≤ D → (B,) float64 (`nero.functional.low_relevance_norm_ratio`).
    """
    return F.low_relevance_norm_ratio(np.asarray(features, dtype=np.float64),
                                      np.asarray(relevance, dtype=np.float64), k)


def top_abs(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n entries of largest |value| in each row, largest first, earlier index first on ties
    (`nero.functional.top_abs`, which `NeroDetector.explain` uses).

    values (B, D), 1 ≤ n ≤ D → index (B, n) int64, value (B, n) (signed, in values' dtype).
    """
    return F.top_abs(np.asarray(values), n)
