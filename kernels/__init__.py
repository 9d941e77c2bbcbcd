"""Scoring kernels (NumPy reference, Numba CPU, Numba CUDA); installed as `stream_monitor.kernels`.

    >>> from stream_monitor.kernels import nearest_l1, fuse_scores, threshold_flags
    >>> distance, index = nearest_l1(projected, centroids)        # (B, P), (K, P) → (B,), (B,) int64
    >>> score, bias_term = fuse_scores(distance, bias_relevance, rho, lam)
    >>> flags = threshold_flags(score, threshold)                   # uint8: FLAG_OVER | FLAG_INVALID

Each call runs where its input lives (see `dispatch.py`); `reference.py` is the definition.
`score_stage` is the whole stage after the graph (one fused launch on CUDA tensors);
`cpu_pipeline.score_rows` chains the CPU kernels' per-row functions in one call per batch (what the
engine's CPU path runs); the CUDA kernels (`cuda.py`) are built on first use, never at import.
"""

from .dispatch import (
    FLAG_INVALID,
    FLAG_OVER,
    fuse_scores,
    implementation_for,
    low_relevance_ratio,
    nearest_l1,
    score_stage,
    threshold_flags,
    top_abs,
)

__all__ = ["FLAG_INVALID", "FLAG_OVER", "fuse_scores", "implementation_for", "low_relevance_ratio", "nearest_l1",
           "score_stage", "threshold_flags", "top_abs"]
