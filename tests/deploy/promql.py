"""Prometheus 2.x's `rate()` and `histogram_quantile()` written out in Python (promql/functions.go:
extrapolatedRate; promql/quantile.go: bucketQuantile), so that a test can compute from the results a
monitor published what a real Prometheus must answer, instead of trusting the server to check itself."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def extrapolated_rate(samples: Sequence[tuple[float, float]], range_start: float, range_end: float,
                      range_s: float) -> float:
    """rate() of one counter over the raw (time s, value) samples inside [range_start, range_end]."""
    if len(samples) < 2:
        return math.nan
    (t_first, v_first), (t_last, v_last) = samples[0], samples[-1]
    result, previous = v_last - v_first, 0.0
    for _, value in samples:  # counter resets add back what was lost
        if value < previous:
            result += previous
        previous = value
    to_start, to_end = t_first - range_start, range_end - t_last
    sampled = t_last - t_first
    average = sampled / (len(samples) - 1)
    if result > 0 and v_first >= 0:  # a counter does not extrapolate below zero
        to_start = min(to_start, sampled * (v_first / result))
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2)
    interval += to_end if to_end < threshold else average / 2
    return result * (interval / sampled) / range_s


def bucket_quantile(q: float, buckets: dict[float, float]) -> float:
    """histogram_quantile(q, …) of one series' cumulative bucket values keyed by upper bound (le)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return math.nan
    counts, running = [], 0.0
    for bound in bounds:  # ensureMonotonic
        running = max(running, buckets[bound])
        counts.append(running)
    if len(counts) < 2 or counts[-1] == 0:
        return math.nan
    rank = q * counts[-1]
    b = bisect.bisect_left(counts[:-1], rank)  # first bucket whose count >= rank
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start, count, rank = bounds[b - 1], count - counts[b - 1], rank - counts[b - 1]
    return start + (end - start) * (rank / count)
