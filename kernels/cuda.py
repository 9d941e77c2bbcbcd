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

__all__ = ["MAX_CENTROIDS", "available", "fuse_scores", "nearest_l1", "threshold_flags"]

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


def nearest_l1_kernel(samples, centroids, distance, index):  # type: ignore[no-untyped-def]
    # One block per row, one thread per centroid: every thread reads the same sample element at
    # each step (a broadcast), and the K sums need a single barrier before the min / argmin.
    row = cuda.blockIdx.x
    sums = cuda.shared.array(MAX_CENTROIDS, dtype=float64)
    n_centroids, width = centroids.shape
    k = cuda.threadIdx.x
    while k < n_centroids:
        acc = 0.0  # float64 accumulation: exact enough that fp32 and fp64 inputs rank alike
        for p in range(width):
            acc += abs(samples[row, p] - centroids[k, p])
        sums[k] = acc
        k += cuda.blockDim.x
    cuda.syncthreads()
    if cuda.threadIdx.x == 0:
        best = sums[0]
        best_k = 0
        for j in range(n_centroids):
            if sums[j] != sums[j]:  # NaN in the row: not scorable
                best = math.nan
                best_k = -1
                break
            if sums[j] < best:  # strict <: the first index wins a tie, as np.argmin
                best = sums[j]
                best_k = j
        distance[row] = best
        index[row] = best_k


def fuse_kernel(distance, bias_relevance, rho, residual, lam, use_distance, use_bias,  # type: ignore[no-untyped-def]
                use_rho, use_residual, score, bias_term):
    b = cuda.grid(1)
    if b < distance.shape[0]:
        term = lam * abs(bias_relevance[b])
        total = 0.0 if (use_distance or use_bias) else 1.0  # a sum of no terms is 1, as fuse_score
        if use_distance:
            total += distance[b]
        if use_bias:
            total += term
        if use_rho:
            total *= rho[b]
        if use_residual:
            total *= residual[b]
        score[b] = total
        bias_term[b] = term


def flags_kernel(score, threshold, flags):  # type: ignore[no-untyped-def]
    b = cuda.grid(1)
    if b < score.shape[0]:
        value = score[b]
        flag = 0
        if value > threshold:
            flag |= 1
        if math.isnan(value) or math.isinf(value):
            flag |= 2
        flags[b] = flag


@lru_cache(maxsize=1)
def _kernels() -> dict[str, Any]:
    global cuda, float64
    from numba import cuda as numba_cuda
    from numba import float64 as numba_float64

    cuda, float64 = numba_cuda, numba_float64
    return {"nearest": cuda.jit(nearest_l1_kernel), "fuse": cuda.jit(fuse_kernel), "flags": cuda.jit(flags_kernel)}


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
