"""Detectors that reshape the penultimate activations, then score with Energy: ReAct, ASH-S, SCALE.

All three were designed for post-ReLU (non-negative) features such as ResNet's pooled `avgpool` output;
on signed features (e.g. a ViT's normed CLS token) they still compute, but the papers' reasoning does not
hold. Shaping is a pure function `(N, D) -> (N, D)`; the score is `energy_score` of the shaped logits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from stream_monitor.baselines._common import (
    Float64Array,
    HeadDetector,
    check_percentile,
    check_positive,
    linear_logits,
)
from stream_monitor.baselines.logit_based import energy_score
from stream_monitor.errors import InputError


def react_threshold(train_features: Float64Array, percentile: float = 90.0) -> float:
    """ReAct's clip value c: the `percentile`-th percentile of all ID train activations (Sun et al. 2021).

    Percentile over every entry of the (N, D) train matrix at once, linear interpolation, as
    `np.percentile(activations.flatten(), 90)` in the paper's code.
    """
    return float(np.percentile(train_features, check_percentile(percentile)))


def react_clip(features: Float64Array, threshold: float) -> Float64Array:
    """Rectify activations from above: `min(a, c)` element-wise. (N, D) -> (N, D)."""
    return np.minimum(features, threshold)


def react_energy_score(
    features: Float64Array, weight: Float64Array, bias: Float64Array, threshold: float, temperature: float = 1.0
) -> Float64Array:
    """Energy + ReAct (Sun, Guo & Li 2021).

    `score = -T * logsumexp((min(a, c) W^T + b) / T)`. features (N, D), weight (C, D), bias (C,) -> (N,).
    """
    return energy_score(linear_logits(react_clip(features, threshold), weight, bias), temperature)


def kept_count(n_features: int, percentile: float) -> int:
    """How many of D activations survive a top-(100 - percentile)% cut: `D - round(D * p / 100)`, >= 1.

    Same rounding as the ASH and SCALE code (`int(np.round(n * percentile / 100))`); at least one unit is
    kept, where the original would divide by a zero sum.
    """
    return max(1, n_features - int(np.round(n_features * check_percentile(percentile) / 100.0)))


def _top_k_indices(features: Float64Array, k: int) -> NDArray[np.intp]:
    """Column indices (N, k) of the k largest activations of each row (order within them arbitrary)."""
    return np.argpartition(features, features.shape[1] - k, axis=1)[:, features.shape[1] - k :]


def _exp_sum_ratio(total: Float64Array, kept: Float64Array) -> Float64Array:
    """`exp(total / kept)`, with factor 1 where the kept sum is 0 (an all-zero row: nothing to scale)."""
    ratio = np.divide(total, kept, out=np.zeros_like(total), where=kept != 0)
    return np.exp(ratio)


def ash_s(features: Float64Array, percentile: float = 90.0) -> Float64Array:
    """ASH-S activation shaping (Djurisic et al. 2023), on the (N, D) penultimate features.

    Keep each row's top `kept_count(D, percentile)` activations and zero the rest, then multiply the kept
    ones by `exp(s1 / s2)`, s1 = sum of the row before pruning, s2 = after. (N, D) -> (N, D) float64.
    """
    k = kept_count(features.shape[1], percentile)
    idx = _top_k_indices(features, k)
    top = np.take_along_axis(features, idx, axis=1)
    shaped = np.zeros_like(features)
    factor = _exp_sum_ratio(features.sum(axis=1), top.sum(axis=1))
    np.put_along_axis(shaped, idx, top * factor[:, None], axis=1)
    return shaped


def scale_shape(features: Float64Array, percentile: float = 85.0) -> Float64Array:
    """SCALE activation scaling (Xu et al. 2024), on the (N, D) penultimate features.

    Like ASH-S but without pruning: the whole row is multiplied by `exp(s1 / s2)`, s1 = row sum,
    s2 = sum of its top `kept_count(D, percentile)` activations. (N, D) -> (N, D) float64.
    """
    k = kept_count(features.shape[1], percentile)
    top_sum = np.take_along_axis(features, _top_k_indices(features, k), axis=1).sum(axis=1)
    return features * _exp_sum_ratio(features.sum(axis=1), top_sum)[:, None]


class ReAct(HeadDetector):
    """Energy on activations clipped at c (Sun, Guo & Li 2021); see `react_energy_score`.

    Original definition: c = the `percentile`-th percentile (default 90) of the ID train activations,
    measured at `fit`. The NERO reference code instead hard-codes c = 0.9 (ResNet) / 0.99 (DeiT) as an
    absolute value; pass `threshold=` to reproduce that (it then overrides the percentile).
    """

    name = "react"

    def __init__(self, percentile: float = 90.0, threshold: float | None = None, temperature: float = 1.0) -> None:
        super().__init__()
        self.percentile = check_percentile(percentile)
        if threshold is not None and not np.isfinite(threshold):
            raise InputError(f"threshold must be finite; got {threshold!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.temperature = check_positive(temperature, "temperature")

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.threshold_ = react_threshold(features, self.percentile) if self.threshold is None else self.threshold

    def _score(self, features: Float64Array) -> Float64Array:
        return react_energy_score(features, *self.head(), self.threshold_, self.temperature)


class ASH(HeadDetector):
    """ASH-S then Energy (Djurisic et al. 2023), percentile 90 by default; see `ash_s`."""

    name = "ash"

    def __init__(self, percentile: float = 90.0) -> None:
        super().__init__()
        self.percentile = check_percentile(percentile)

    def _score(self, features: Float64Array) -> Float64Array:
        return energy_score(linear_logits(ash_s(features, self.percentile), *self.head()))


class SCALE(HeadDetector):
    """SCALE then Energy (Xu et al. 2024), percentile 85 by default; see `scale_shape`."""

    name = "scale"

    def __init__(self, percentile: float = 85.0) -> None:
        super().__init__()
        self.percentile = check_percentile(percentile)

    def _score(self, features: Float64Array) -> Float64Array:
        return energy_score(linear_logits(scale_shape(features, self.percentile), *self.head()))
