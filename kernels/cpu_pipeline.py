"""The CPU scoring stage in one Numba call per batch: ρ, nearest centroid, score, flags, explanation.

On a CPU the live path scores batches of 1–8 frames, where ~20 separate kernel and tensor calls
(~10 µs each) would cost more than the arithmetic. `score_rows` runs the same per-row functions as
the single kernels in `cpu.py` (so the definitions cannot drift), row after row, in one call.
Its parts are tested through those kernels against `reference.py`; the whole through the engine's
parity tests against the reference scorer.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu import PARALLEL_MIN_ROWS, _FASTMATH, _row_fuse, _row_low_relevance_ratio, _row_nearest_l1, _row_top_abs

__all__ = ["score_rows"]


def _row_nearest_raw(relevance, bias_relevance, raw_means):  # type: ignore[no-untyped-def]
    """Nearest raw class mean to [relevance, R_bias] (D+1) by L1, without building the row; -1 if NaN."""
    width = relevance.shape[0]
    best = np.inf
    best_c = -1
    for c in range(raw_means.shape[0]):
        acc = abs(bias_relevance - raw_means[c, width])
        for d in range(width):
            acc += abs(relevance[d] - raw_means[c, d])
        if acc != acc:
            return -1
        if best_c < 0 or acc < best:
            best = acc
            best_c = c
    return best_c


def _row_heatmap(feature_map, index, deviation, heat):  # type: ignore[no-untyped-def]
    """Σ_i |dev_i| · map[index_i], ReLU, / max (explain.deviation_heatmap) into heat (h, w)."""
    heat[:, :] = 0.0
    for i in range(index.shape[0]):
        weight = abs(deviation[i])
        heat += weight * feature_map[index[i]]
    peak = 0.0
    for y in range(heat.shape[0]):
        for x in range(heat.shape[1]):
            if heat[y, x] < 0:
                heat[y, x] = 0.0
            peak = max(peak, heat[y, x])
    if peak > 0:
        heat /= peak


_row_nearest_raw = njit(cache=True, fastmath=_FASTMATH)(_row_nearest_raw)
_row_heatmap = njit(cache=True)(_row_heatmap)


def _score_rows(features, relevance, bias_relevance, projected, residual, centroids,  # type: ignore[no-untyped-def]
                raw_means, k, lam, use_distance, use_bias, use_rho, use_residual, threshold, feature_map, with_map,
                rho, distance, score, bias_term, flags, top_index, top_deviation, heat):
    width = relevance.shape[1]
    for b in prange(relevance.shape[0]):
        rho[b] = _row_low_relevance_ratio(features[b], relevance[b], k)
        distance[b], _ = _row_nearest_l1(projected[b], centroids)
        bias_term[b] = lam * abs(bias_relevance[b])
        score[b] = _row_fuse(distance[b], bias_term[b], rho[b], residual[b], use_distance, use_bias, use_rho,
                             use_residual)
        flag = 0
        if score[b] > threshold:
            flag |= 1
        if not np.isfinite(score[b]):
            flag |= 2
        flags[b] = flag
        reference = max(_row_nearest_raw(relevance[b], bias_relevance[b], raw_means), 0)  # NaN row: any class
        _row_top_abs(relevance[b], raw_means[reference, :width], top_index.shape[1], top_index[b], top_deviation[b])
        if with_map:
            _row_heatmap(feature_map[b], top_index[b], top_deviation[b], heat[b])


_SERIAL = njit(cache=True, fastmath=_FASTMATH)(_score_rows)
_PARALLEL = njit(cache=True, parallel=True, fastmath=_FASTMATH)(_score_rows)


def score_rows(features: np.ndarray, relevance: np.ndarray, bias_relevance: np.ndarray, projected: np.ndarray,
               residual: np.ndarray | None, centroids: np.ndarray, raw_means: np.ndarray, k: int, lam: float,
               switches: tuple[bool, bool, bool], threshold: float, top_n: int,
               feature_map: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """One batch's scoring stage on the host.

    features, relevance (B, D), bias_relevance (B,), projected (B, P), residual (B,) or None (the
    robust relevance-residual factor), centroids (K, P), raw_means (C, D+1), all float32
    C-contiguous; switches = (use_distance, use_bias, use_rho); feature_map (B, D, h, w) float32 or None →
    rho, distance, score, bias_term (B,) float64; flags (B,) uint8; top_index (B, n) int64 and
    top_deviation (B, n) float32 against the nearest raw class mean; heat (B, h, w) float32 or None.
    """
    rows = relevance.shape[0]
    with_map = feature_map is not None
    fmap = feature_map if with_map else np.zeros((rows, 1, 1, 1), dtype=np.float32)
    out = {name: np.empty(rows, dtype=np.float64) for name in ("rho", "distance", "score", "bias_term")}
    out["flags"] = np.empty(rows, dtype=np.uint8)
    out["top_index"] = np.empty((rows, top_n), dtype=np.int64)
    out["top_deviation"] = np.empty((rows, top_n), dtype=np.float32)
    heat = np.empty((rows, fmap.shape[2], fmap.shape[3]), dtype=np.float32)
    kernel = _PARALLEL if rows >= PARALLEL_MIN_ROWS else _SERIAL
    use_residual = residual is not None
    kernel(features, relevance, bias_relevance, projected, residual if use_residual else bias_relevance, centroids,
           raw_means, int(k), float(lam), *map(bool, switches), use_residual, float(threshold), fmap, with_map,
           out["rho"], out["distance"], out["score"], out["bias_term"], out["flags"], out["top_index"],
           out["top_deviation"], heat)
    return {**out, "heat": heat if with_map else None}
