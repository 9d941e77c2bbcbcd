"""Numba CUDA kernels for the scoring stage; same definitions and conventions as `reference.py`.

Importing this module does not import `numba.cuda`: the kernels are built on first use, so that a
machine without CUDA (or without numba-cuda) can import the package. Under `NUMBA_ENABLE_CUDASIM=1`
(set before numba is first imported) the same kernels run in Numba's CUDA simulator, which is how CI
tests them without a GPU.

Every function takes device arrays — Numba device arrays or anything exporting
`__cuda_array_interface__`, such as CUDA torch tensors wrapped by `dispatch.py` — and launches on the
given stream, so the data never leaves the GPU and the work is ordered after the torch kernels that
produced it. Outputs are written into arrays the caller allocates.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

__all__ = ["MAX_CENTROIDS", "available", "fuse_scores", "nearest_l1", "score_rows", "threshold_flags"]

MAX_CENTROIDS = 1024  # one thread per centroid in a block; a block holds at most 1024 threads
_ELEMENTWISE_THREADS = 128


def available() -> tuple[bool, str]:
    """(True, "") when Numba can launch CUDA kernels here (a GPU, or the simulator), else (False, why)."""
    try:
        from numba import cuda
    except Exception as exc:  # numba built without CUDA support, or a broken driver install
        return False, f"numba.cuda cannot be imported ({exc})"
    try:
        if cuda.is_available():
            return True, ""
    except Exception as exc:
        return False, f"numba.cuda found no usable GPU ({exc})"
    return False, "numba.cuda found no usable GPU"


# The kernels are plain module-level functions over the global name `cuda`, bound on first use: the
# simulator swaps a kernel's `cuda` global for its fake module, which it cannot do inside a closure.
cuda: Any = None
float64: Any = None
row_l1_sums_device: Any = None
nan_aware_argmin_device: Any = None
fused_value_device: Any = None
flag_value_device: Any = None


# Device functions shared by the single kernels and the fused one, so each rule is written once.
def row_l1_sums(samples, row, centroids, sums, column_limit):  # type: ignore[no-untyped-def]
    # Thread-strided over centroids: every thread reads the same sample element at each step (a
    # broadcast). Only the first `column_limit` columns of the centroids count.
    k = cuda.threadIdx.x
    while k < centroids.shape[0]:
        acc = 0.0  # float64 accumulation: exact enough that fp32 and fp64 inputs rank alike
        for p in range(column_limit):
            acc += abs(samples[row, p] - centroids[k, p])
        sums[k] = acc
        k += cuda.blockDim.x


def nan_aware_argmin(sums, n):  # type: ignore[no-untyped-def]
    best = sums[0]
    best_k = 0
    for j in range(n):
        if sums[j] != sums[j]:  # NaN in the row: not scorable
            return math.nan, -1
        if sums[j] < best:  # strict <: the first index wins a tie, as np.argmin
            best = sums[j]
            best_k = j
    return best, best_k


def fused_value(distance, bias_relevance, rho, residual, lam, use_distance, use_bias,  # type: ignore[no-untyped-def]
                use_rho, use_residual):
    term = lam * abs(bias_relevance)
    total = 0.0 if (use_distance or use_bias) else 1.0  # a sum of no terms is 1, as fuse_score
    if use_distance:
        total += distance
    if use_bias:
        total += term
    if use_rho:
        total *= rho
    if use_residual:
        total *= residual
    return total, term


def flag_value(value, threshold):  # type: ignore[no-untyped-def]
    flag = 0
    if value > threshold:
        flag |= 1
    if math.isnan(value) or math.isinf(value):
        flag |= 2
    return flag


def nearest_l1_kernel(samples, centroids, distance, index):  # type: ignore[no-untyped-def]
    # One block per row, one thread per centroid; the K sums need one barrier before the min / argmin.
    row = cuda.blockIdx.x
    sums = cuda.shared.array(MAX_CENTROIDS, dtype=float64)
    row_l1_sums_device(samples, row, centroids, sums, centroids.shape[1])
    cuda.syncthreads()
    if cuda.threadIdx.x == 0:
        best, best_k = nan_aware_argmin_device(sums, centroids.shape[0])
        distance[row] = best
        index[row] = best_k


def fuse_kernel(distance, bias_relevance, rho, residual, lam, use_distance, use_bias,  # type: ignore[no-untyped-def]
                use_rho, use_residual, score, bias_term):
    b = cuda.grid(1)
    if b < distance.shape[0]:
        value, term = fused_value_device(distance[b], bias_relevance[b], rho[b], residual[b], lam, use_distance,
                                         use_bias, use_rho, use_residual)
        score[b] = value
        bias_term[b] = term


def flags_kernel(score, threshold, flags):  # type: ignore[no-untyped-def]
    b = cuda.grid(1)
    if b < score.shape[0]:
        flags[b] = flag_value_device(score[b], threshold)


def score_rows_kernel(projected, centroids, relevance, raw_means, bias_relevance, rho, residual,  # type: ignore[no-untyped-def]
                      lam, use_distance, use_bias, use_rho, use_residual, threshold,
                      distance, index, reference, score, bias_term, flags):
    # The engine's whole GPU scoring stage in one launch (one block per row): nearest PCA centroid,
    # fused score, flags, and the explanation's nearest raw class mean over [relevance, R_bias].
    # Launch overhead, not arithmetic, is what these small kernels cost at live batch sizes.
    row = cuda.blockIdx.x
    sums = cuda.shared.array(MAX_CENTROIDS, dtype=float64)
    raw_sums = cuda.shared.array(MAX_CENTROIDS, dtype=float64)
    row_l1_sums_device(projected, row, centroids, sums, centroids.shape[1])
    width = relevance.shape[1]
    row_l1_sums_device(relevance, row, raw_means, raw_sums, width)  # the bias column is added below
    cuda.syncthreads()
    if cuda.threadIdx.x == 0:
        for c in range(raw_means.shape[0]):
            raw_sums[c] += abs(bias_relevance[row] - raw_means[c, width])
        best, best_k = nan_aware_argmin_device(sums, centroids.shape[0])
        distance[row] = best
        index[row] = best_k
        _, nearest_mean = nan_aware_argmin_device(raw_sums, raw_means.shape[0])
        reference[row] = nearest_mean
        value, term = fused_value_device(best, bias_relevance[row], rho[row], residual[row], lam, use_distance,
                                         use_bias, use_rho, use_residual)
        score[row] = value
        bias_term[row] = term
        flags[row] = flag_value_device(score[row], threshold)  # the stored (maybe float32) score, as reported


@lru_cache(maxsize=1)
def _kernels() -> dict[str, Any]:
    global cuda, float64
    from numba import cuda as numba_cuda
    from numba import float64 as numba_float64

    cuda, float64 = numba_cuda, numba_float64
    # The kernels call the device versions through these module globals (bound before compiling).
    module = globals()
    for name in ("row_l1_sums", "nan_aware_argmin", "fused_value", "flag_value"):
        module[f"{name}_device"] = cuda.jit(device=True)(module[name])
    return {"nearest": cuda.jit(nearest_l1_kernel), "fuse": cuda.jit(fuse_kernel), "flags": cuda.jit(flags_kernel),
            "score_rows": cuda.jit(score_rows_kernel)}


def _blocks(n: int) -> int:
    return max(1, (n + _ELEMENTWISE_THREADS - 1) // _ELEMENTWISE_THREADS)


def nearest_l1(samples: Any, centroids: Any, distance: Any, index: Any, stream: Any = 0) -> None:
    """samples (B, P), centroids (K ≤ 1024, P) on the device → writes distance (B,), index (B,) int64."""
    n_rows, n_centroids = samples.shape[0], centroids.shape[0]
    if not 1 <= n_centroids <= MAX_CENTROIDS:
        raise ValueError(f"the CUDA kernel takes 1 ≤ K ≤ {MAX_CENTROIDS} centroids, got {n_centroids}")
    if n_rows == 0:
        return
    threads = min(MAX_CENTROIDS, 32 * math.ceil(n_centroids / 32))  # whole warps
    _kernels()["nearest"][n_rows, threads, stream](samples, centroids, distance, index)


def fuse_scores(distance: Any, bias_relevance: Any, rho: Any, residual: Any, lam: float, use_distance: bool,
                use_bias: bool, use_rho: bool, score: Any, bias_term: Any, stream: Any = 0) -> None:
    """(B,) device arrays (residual may be None) → writes score (B,) and bias_term (B,) = λ·|R_bias|."""
    n_rows = distance.shape[0]
    if n_rows:
        use_residual = residual is not None
        _kernels()["fuse"][_blocks(n_rows), _ELEMENTWISE_THREADS, stream](
            distance, bias_relevance, rho, residual if use_residual else rho, float(lam), bool(use_distance),
            bool(use_bias), bool(use_rho), use_residual, score, bias_term)


def threshold_flags(score: Any, threshold: float, flags: Any, stream: Any = 0) -> None:
    """score (B,) device array → writes flags (B,) uint8: bit 0 over threshold, bit 1 not finite."""
    n_rows = score.shape[0]
    if n_rows:
        _kernels()["flags"][_blocks(n_rows), _ELEMENTWISE_THREADS, stream](score, float(threshold), flags)


def score_rows(projected: Any, centroids: Any, relevance: Any, raw_means: Any, bias_relevance: Any, rho: Any,
               residual: Any, lam: float, switches: tuple[bool, bool, bool], threshold: float,
               outputs: tuple[Any, Any, Any, Any, Any, Any], stream: Any = 0) -> None:
    """The fused scoring stage: projected (B, P), centroids (K, P), relevance (B, D), raw_means (C, D+1),
    bias_relevance, rho, residual (B,) (residual may be None) → writes outputs = (distance, index,
    reference, score, bias_term, flags), each (B,): as nearest_l1 + fuse_scores + threshold_flags, plus
    `reference`, the index of the nearest raw class mean (L1 over [relevance, R_bias])."""
    n_rows = projected.shape[0]
    widest = max(centroids.shape[0], raw_means.shape[0])
    if not 1 <= widest <= MAX_CENTROIDS or min(centroids.shape[0], raw_means.shape[0]) < 1:
        raise ValueError(f"the CUDA kernel takes 1 ≤ K ≤ {MAX_CENTROIDS} centroids and class means, got "
                         f"{centroids.shape[0]} and {raw_means.shape[0]}")
    if n_rows == 0:
        return
    use_residual = residual is not None
    threads = min(MAX_CENTROIDS, 32 * math.ceil(widest / 32))
    _kernels()["score_rows"][n_rows, threads, stream](
        projected, centroids, relevance, raw_means, bias_relevance, rho, residual if use_residual else rho,
        float(lam), *(bool(s) for s in switches), use_residual, float(threshold), *outputs)
