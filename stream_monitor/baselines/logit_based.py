"""Detectors that look only at the logits `f = a @ W.T + b`: MSP, Energy, Entropy, MaxLogit, GEN.

Each method is a pure function `(N, C) float64 logits -> (N,) float64 score`, higher = more OOD; the
classes only store the head at `fit` and call the function. Other families reuse `energy_score`
(ReAct, ASH, SCALE, ViM).
"""

from __future__ import annotations

import numpy as np

from stream_monitor.baselines._common import (
    Float64Array,
    HeadDetector,
    check_positive,
    logsumexp,
    softmax,
)
from stream_monitor.errors import InputError


def msp_score(logits: Float64Array) -> Float64Array:
    """Maximum softmax probability, negated (Hendrycks & Gimpel 2017).

    `score = -max_c softmax(f)_c`. logits (N, C) float64 -> (N,) float64 in [-1, -1/C].
    """
    return -np.max(softmax(logits, axis=1), axis=1)


def energy_score(logits: Float64Array, temperature: float = 1.0) -> Float64Array:
    """Free energy (Liu et al. 2020).

    `score = E(x) = -T * logsumexp(f / T)`; the paper already orients it higher = more OOD.
    Computed with a max-shifted logsumexp, so large logits do not overflow (the NERO reference code
    exponentiates naively). logits (N, C) float64 -> (N,) float64.
    """
    t = check_positive(temperature, "temperature")
    return -t * logsumexp(logits / t, axis=1)


def entropy_score(logits: Float64Array, min_prob: float = 1e-6) -> Float64Array:
    """Predictive entropy of the softmax.

    `score = H(p) = -sum_c p_c log p_c` with `p` clipped to `[min_prob, 1]` (as the NERO reference does,
    so that `0 * log 0` never appears). logits (N, C) float64 -> (N,) float64.
    """
    p = np.clip(softmax(logits, axis=1), check_positive(min_prob, "min_prob"), 1.0)
    return -np.sum(p * np.log(p), axis=1)


def max_logit_score(logits: Float64Array) -> Float64Array:
    """Maximum logit, negated (Hendrycks et al. 2022): `score = -max_c f_c`. (N, C) -> (N,) float64."""
    return -np.max(logits, axis=1)


def gen_score(logits: Float64Array, gamma: float = 0.1, top_m: int = 10) -> Float64Array:
    """Generalized entropy GEN (Liu, Lochman & Zach 2023).

    `score = sum_{c in top-M of p} p_c^gamma * (1 - p_c)^gamma`, with `M = min(top_m, C)`. The paper's
    ID score is the negation of this sum; the sum itself is larger for flat (OOD-like) softmaxes.
    logits (N, C) float64 -> (N,) float64.
    """
    g = check_positive(gamma, "gamma")
    if int(top_m) < 1:
        raise InputError(f"top_m must be >= 1; got {top_m!r}")
    p = softmax(logits, axis=1)
    m = min(int(top_m), p.shape[1])
    # Partial selection: only the set of the M largest matters, not their order.
    top = np.partition(p, p.shape[1] - m, axis=1)[:, p.shape[1] - m :]
    return np.sum(top**g * (1.0 - top) ** g, axis=1)


class MSP(HeadDetector):
    """Maximum softmax probability (Hendrycks & Gimpel 2017); see `msp_score`."""

    name = "msp"

    def _score(self, features: Float64Array) -> Float64Array:
        return msp_score(self.logits(features))


class Energy(HeadDetector):
    """Energy score (Liu et al. 2020): `-T * logsumexp(f / T)`; see `energy_score`."""

    name = "energy"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")

    def _score(self, features: Float64Array) -> Float64Array:
        return energy_score(self.logits(features), self.temperature)


class Entropy(HeadDetector):
    """Predictive entropy with probabilities clipped at `min_prob`; see `entropy_score`."""

    name = "entropy"

    def __init__(self, min_prob: float = 1e-6) -> None:
        super().__init__()
        self.min_prob = check_positive(min_prob, "min_prob")

    def _score(self, features: Float64Array) -> Float64Array:
        return entropy_score(self.logits(features), self.min_prob)


class MaxLogit(HeadDetector):
    """Maximum logit (Hendrycks et al. 2022); see `max_logit_score`."""

    name = "max_logit"

    def _score(self, features: Float64Array) -> Float64Array:
        return max_logit_score(self.logits(features))


class GEN(HeadDetector):
    """Generalized entropy (Liu, Lochman & Zach 2023), gamma=0.1 and M=10 by default; see `gen_score`."""

    name = "gen"

    def __init__(self, gamma: float = 0.1, top_m: int = 10) -> None:
        super().__init__()
        self.gamma = check_positive(gamma, "gamma")
        if int(top_m) < 1:
            raise InputError(f"top_m must be >= 1; got {top_m!r}")
        self.top_m = int(top_m)

    def _score(self, features: Float64Array) -> Float64Array:
        return gen_score(self.logits(features), self.gamma, self.top_m)
