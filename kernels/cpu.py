"""Numba CPU kernels for the scoring stage; same definitions and conventions as `reference.py`.

Each kernel is compiled twice from one Python function: a serial version and a `parallel=True` one
(rows spread over Numba's threads). The serial one runs unless a batch has PARALLEL_MIN_ROWS rows:
at the engine's batch sizes (≤ 1024) a row costs ~0.3 µs, less than waking a thread team, and Numba's
OpenMP layer shares libgomp with torch — one parallel launch resets the process's OpenMP thread count
(`torch.get_num_threads()` went from 1 to 2 here), which on a loaded machine made the next torch
matmul 30× slower. `fastmath` is limited to re-association and contraction so that the L1 sums
vectorise; NaN and inf semantics are kept (no `nnan` / `ninf`).

Inputs must be C-contiguous float32 or float64 NumPy arrays (`dispatch.py` sees to it); outputs are
written into arrays the caller allocates, so no kernel allocates per call.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = ["PARALLEL_MIN_ROWS", "fuse_scores", "low_relevance_ratio", "nearest_l1", "threshold_flags", "top_abs"]

PARALLEL_MIN_ROWS = 8192  # offline batches only: see the module docstring
_FASTMATH = {"reassoc", "contract"}


@intrinsic
def _order_key(typingctx, x):  # type: ignore[no-untyped-def]
    """Float → int64 key with the same order as the float (−0.0 and +0.0 share a key; no NaN here)."""
    if x not in (types.float32, types.float64):
        return None
    width = x.bitwidth

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        value = builder.fadd(args[0], ir.Constant(args[0].type, 0.0))  # −0.0 + 0.0 = +0.0
        bits = builder.bitcast(value, ir.IntType(width))
        sign = builder.ashr(bits, ir.Constant(ir.IntType(width), width - 1))
        magnitude = builder.and_(sign, ir.Constant(ir.IntType(width), (1 << (width - 1)) - 1))
        key = builder.xor(bits, magnitude)  # negative floats: flip all but the sign bit
        return builder.sext(key, ir.IntType(64)) if width < 64 else key

    return types.int64(x), codegen


@intrinsic
def _key_value(typingctx, key, like):  # type: ignore[no-untyped-def]
    """Inverse of `_order_key`: an int64 key back to a float of `like`'s type."""
    if like not in (types.float32, types.float64):
        return None
    width = like.bitwidth

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        bits = builder.trunc(args[0], ir.IntType(width)) if width < 64 else args[0]
        sign = builder.ashr(bits, ir.Constant(ir.IntType(width), width - 1))
        magnitude = builder.and_(sign, ir.Constant(ir.IntType(width), (1 << (width - 1)) - 1))
        return builder.bitcast(builder.xor(bits, magnitude), context.get_value_type(like))

    return like(types.int64, like), codegen


@intrinsic
def _infinity(typingctx, like):  # type: ignore[no-untyped-def]
    """+inf in `like`'s float type (np.inf is float64 and would widen a float32 computation)."""
    if like not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return ir.Constant(context.get_value_type(like), float("inf"))

    return like(like), codegen


def _row_nearest_l1(sample, centroids):  # type: ignore[no-untyped-def]
    """(distance, index) of one row (P,) to its nearest centroid (K, P); (NaN, -1) for a NaN row."""
    best = np.inf
    best_k = -1
    for k in range(centroids.shape[0]):
        acc = abs(sample[0] - centroids[k, 0])  # typed like the input: float32 stays float32
        for p in range(1, sample.shape[0]):
            acc += abs(sample[p] - centroids[k, p])
        if acc != acc:  # NaN anywhere in the row: not scorable
            return np.nan, -1
        if best_k < 0 or acc < best:  # strict <: the first index wins a tie, as np.argmin
            best = acc
            best_k = k
    return best, best_k


def _nearest_l1(samples, centroids, distance, index):  # type: ignore[no-untyped-def]
    for b in prange(samples.shape[0]):
        distance[b], index[b] = _row_nearest_l1(samples[b], centroids)


def _row_low_relevance_ratio(features, row, k):  # type: ignore[no-untyped-def]
    """ρ of one row: features (D,), relevance (D,), 1 ≤ k ≤ D → float64 (NaN for a NaN row)."""
    width = row.shape[0]
    total = 0.0
    finite = True
    for d in range(width):
        total += abs(features[d])
        if row[d] != row[d]:
            finite = False
    if not finite or total != total:
        return np.nan
    like = row[0]
    zero = like - like
    # Dead ReLU units have relevance exactly 0, so 0 is where ties gather: one pass settles
    # which side of 0 the k-th smallest lies on (or that it is 0 itself) before any bisection.
    negative = np.int32(0)
    not_positive = np.int32(0)
    for d in range(width):
        negative += np.int32(row[d] < zero)
        not_positive += np.int32(row[d] <= zero)
    # Bisection on the order key for the k-th smallest relevance t: each step is one vectorised
    # counting pass (≤ 31 steps for float32), cheaper than a quickselect's unpredictable branches.
    lo = _order_key(-_infinity(like))
    hi = _order_key(_infinity(like))
    exact = negative == k or not_positive == k  # the k smallest are exactly those ≤ 0, or < 0
    # Exact sets: r ≤ 0, or r < 0 = r ≤ the largest negative float (whose key is -2; -1 is -0.0).
    value = zero if not_positive == k else _key_value(_order_key(zero) - 2, like)
    if negative < k < not_positive:  # the k-th smallest is 0 and the tie at 0 straddles the k-th place
        lo = hi = _order_key(zero)
    elif not_positive < k:  # the k-th smallest is positive (keys of positive floats start at 1)
        lo = _order_key(zero) + 1
    elif k < negative:  # ... negative (keys of negative floats end at -2; -1 is -0.0)
        hi = _order_key(zero) - 2
    while not exact and lo < hi:
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        value = _key_value(mid, like)
        count = np.int32(0)  # int32 lanes: twice as many per vector as int64
        for d in range(width):
            count += np.int32(row[d] <= value)
        if count == k:  # exactly the k smallest lie at or below `value`: that set is all ρ needs
            exact = True
        elif count > k:
            hi = mid
        else:
            lo = mid + 1
    selected = 0.0
    if exact:  # the usual exit, typically half-way down (the gap at the k-th value is found)
        for d in range(width):
            if row[d] <= value:
                selected += abs(features[d])
    else:  # lo is the k-th smallest value's key, and ties at it straddle the k-th place
        threshold = _key_value(lo, like)
        below = 0
        for d in range(width):
            if row[d] < threshold:
                selected += abs(features[d])
                below += 1
        for d in range(width):  # the earliest tied neurons, as a stable sort takes them
            if below >= k:
                break
            if row[d] == threshold:
                selected += abs(features[d])
                below += 1
    return selected / total if total > 0 else 0.0


def _low_relevance_ratio(features, relevance, k, rho):  # type: ignore[no-untyped-def]
    for b in prange(relevance.shape[0]):
        rho[b] = _row_low_relevance_ratio(features[b], relevance[b], k)


def _row_fuse(distance, bias_term, rho, residual,  # type: ignore[no-untyped-def]
              use_distance, use_bias, use_rho, use_residual):
    """One score: (d + bias_term)·ρ·residual with switched-off terms left out (a sum of none is 1)."""
    total = 0.0 if (use_distance or use_bias) else 1.0
    if use_distance:
        total += distance
    if use_bias:
        total += bias_term
    if use_rho:
        total *= rho
    if use_residual:
        total *= residual
    return total


def _fuse_scores(distance, bias_relevance, rho, residual, lam, use_distance, use_bias,  # type: ignore[no-untyped-def]
                 use_rho, use_residual, score, bias_term):
    for b in range(distance.shape[0]):
        bias_term[b] = lam * abs(bias_relevance[b])
        score[b] = _row_fuse(distance[b], bias_term[b], rho[b], residual[b], use_distance, use_bias, use_rho,
                             use_residual)


def _threshold_flags(score, threshold, flags):  # type: ignore[no-untyped-def]
    for b in range(score.shape[0]):
        value = score[b]
        flag = 0
        if value > threshold:
            flag |= 1
        if not np.isfinite(value):
            flag |= 2
        flags[b] = flag


def _row_top_abs(values, offset, n, index, top):  # type: ignore[no-untyped-def]
    """The n largest |values[d] − offset[d]| of one row into index (n,) and top (n,), largest first."""
    filled = 0
    for d in range(values.shape[0]):  # insertion into a sorted top-n; strict > keeps the earlier index first
        value = values[d] - offset[d]
        magnitude = abs(value)
        if filled == n and not magnitude > abs(top[n - 1]):
            continue
        slot = filled if filled < n else n - 1
        while slot > 0 and magnitude > abs(top[slot - 1]):
            index[slot] = index[slot - 1]
            top[slot] = top[slot - 1]
            slot -= 1
        index[slot] = d
        top[slot] = value
        if filled < n:
            filled += 1


def _top_abs(values, n, index, top):  # type: ignore[no-untyped-def]
    zeros = np.zeros(values.shape[1], dtype=values.dtype)
    for b in prange(values.shape[0]):
        _row_top_abs(values[b], zeros, n, index[b], top[b])


def _pair(func: Callable, fastmath: object = False) -> tuple[Callable, Callable]:
    return (njit(cache=True, fastmath=fastmath)(func), njit(cache=True, parallel=True, fastmath=fastmath)(func))


# Row helpers are shared with the fused CPU pipeline (cpu_pipeline.py); Numba inlines them into callers.
_row_nearest_l1 = njit(cache=True, fastmath=_FASTMATH)(_row_nearest_l1)
_row_low_relevance_ratio = njit(cache=True, fastmath=_FASTMATH)(_row_low_relevance_ratio)
_row_top_abs = njit(cache=True)(_row_top_abs)
_row_fuse = njit(cache=True)(_row_fuse)
_NEAREST = _pair(_nearest_l1, _FASTMATH)
_RHO = _pair(_low_relevance_ratio, _FASTMATH)
_TOP = _pair(_top_abs)
_fuse = njit(cache=True)(_fuse_scores)
_flags = njit(cache=True)(_threshold_flags)


def _pick(pair: tuple[Callable, Callable], rows: int) -> Callable:
    return pair[1] if rows >= PARALLEL_MIN_ROWS else pair[0]


def nearest_l1(samples: np.ndarray, centroids: np.ndarray, distance: np.ndarray, index: np.ndarray) -> None:
    """samples (B, P), centroids (K, P) same float dtype → writes distance (B,) that dtype, index (B,) int64."""
    _pick(_NEAREST, len(samples))(samples, centroids, distance, index)


def low_relevance_ratio(features: np.ndarray, relevance: np.ndarray, k: int, rho: np.ndarray) -> None:
    """features, relevance (B, D) same float dtype, 1 ≤ k ≤ D → writes rho (B,)."""
    _pick(_RHO, len(relevance))(features, relevance, k, rho)


def fuse_scores(distance: np.ndarray, bias_relevance: np.ndarray, rho: np.ndarray, residual: np.ndarray | None,
                lam: float, use_distance: bool, use_bias: bool, use_rho: bool, score: np.ndarray,
                bias_term: np.ndarray) -> None:
    """(B,) inputs → writes score (B,) and bias_term (B,) = λ·|R_bias| (serial: B ≤ 1024 is ~1 µs)."""
    use_residual = residual is not None
    _fuse(distance, bias_relevance, rho, residual if use_residual else rho, lam, use_distance, use_bias, use_rho,
          use_residual, score, bias_term)


def threshold_flags(score: np.ndarray, threshold: float, flags: np.ndarray) -> None:
    """score (B,) → writes flags (B,) uint8: bit 0 over threshold, bit 1 not finite."""
    _flags(score, threshold, flags)


def top_abs(values: np.ndarray, n: int, index: np.ndarray, top: np.ndarray) -> None:
    """values (B, D), 1 ≤ n ≤ D → writes index (B, n) int64 and top (B, n), largest |value| first."""
    _pick(_TOP, len(values))(values, n, index, top)
