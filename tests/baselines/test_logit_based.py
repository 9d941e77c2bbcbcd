"""Logit-based baselines against per-sample restatements written with plain Python floats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stream_monitor.baselines import GEN, MSP, Energy, Entropy, MaxLogit
from stream_monitor.baselines.logit_based import (
    energy_score,
    entropy_score,
    gen_score,
    max_logit_score,
    msp_score,
)

RTOL = 1e-9  # float64 vectorised vs scalar maths: only summation order differs


def _probs(row: np.ndarray, temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def msp_ref(row: np.ndarray) -> float:
    return -max(_probs(row))


def energy_ref(row: np.ndarray, temperature: float) -> float:
    return -temperature * math.log(sum(math.exp(v / temperature) for v in row))


def entropy_ref(row: np.ndarray) -> float:
    return -sum(p * math.log(p) for p in (min(max(q, 1e-6), 1.0) for q in _probs(row)))


def gen_ref(row: np.ndarray, gamma: float, top_m: int) -> float:
    top = sorted(_probs(row), reverse=True)[:top_m]
    return sum(p**gamma * (1 - p) ** gamma for p in top)


@pytest.fixture(params=[(1, 2), (40, 3), (25, 12)], ids=lambda p: f"N{p[0]}-C{p[1]}")
def logits(request) -> np.ndarray:
    n, c = request.param
    return np.random.default_rng(n * 100 + c).normal(0.0, 4.0, (n, c))


def _per_row(fn, logits: np.ndarray) -> np.ndarray:
    return np.array([fn(row) for row in logits])


def test_msp_matches_restatement(logits: np.ndarray) -> None:
    np.testing.assert_allclose(msp_score(logits), _per_row(msp_ref, logits), rtol=RTOL)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 1000.0])
def test_energy_matches_restatement(logits: np.ndarray, temperature: float) -> None:
    expected = _per_row(lambda r: energy_ref(r, temperature), logits)
    np.testing.assert_allclose(energy_score(logits, temperature), expected, rtol=RTOL)


def test_entropy_matches_restatement(logits: np.ndarray) -> None:
    np.testing.assert_allclose(entropy_score(logits), _per_row(entropy_ref, logits), rtol=RTOL)


def test_max_logit_matches_restatement(logits: np.ndarray) -> None:
    np.testing.assert_allclose(max_logit_score(logits), _per_row(lambda r: -max(r), logits), rtol=RTOL)


@pytest.mark.parametrize(("gamma", "top_m"), [(0.1, 10), (0.5, 2), (0.1, 1)])
def test_gen_matches_restatement_with_m_clipped_to_c(logits: np.ndarray, gamma: float, top_m: int) -> None:
    expected = _per_row(lambda r: gen_ref(r, gamma, min(top_m, len(r))), logits)
    np.testing.assert_allclose(gen_score(logits, gamma, top_m), expected, rtol=RTOL)


def test_classes_compute_logits_as_features_times_weight_plus_bias() -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(9, 6)), rng.normal(size=(4, 6)), rng.normal(size=4)
    f = x @ w.T + b
    labels = np.arange(9) % 4
    cases = [
        (MSP(), msp_score(f)),
        (Energy(temperature=2.0), energy_score(f, 2.0)),
        (Entropy(), entropy_score(f)),
        (MaxLogit(), max_logit_score(f)),
        (GEN(gamma=0.2, top_m=3), gen_score(f, 0.2, 3)),
    ]
    for det, expected in cases:
        np.testing.assert_allclose(det.fit(x, labels, w, b).score(x), expected, rtol=1e-13, err_msg=det.name)


def test_energy_is_stable_for_huge_logits() -> None:
    """The reference code's naive exp overflows at logits ~710; the shifted logsumexp must not."""
    logits = np.array([[1000.0, 999.0, -5.0], [-1000.0, -1001.0, -1002.0]])
    expected = -(logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)))
    np.testing.assert_allclose(energy_score(logits), expected, rtol=1e-14)
    assert np.all(np.isfinite(msp_score(logits))) and np.all(np.isfinite(entropy_score(logits)))


@settings(max_examples=60, deadline=None, database=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 8)), elements=st.floats(-50, 50)))
def test_logit_scores_respect_their_bounds(logits: np.ndarray) -> None:
    n_classes = logits.shape[1]
    msp = msp_score(logits)
    assert np.all(msp <= -1.0 / n_classes + 1e-12) and np.all(msp >= -1.0)
    # -max f - log C <= energy <= -max f
    energy, top = energy_score(logits), -max_logit_score(logits)
    assert np.all(energy <= -top + 1e-9) and np.all(energy >= -top - math.log(n_classes) - 1e-9)
    entropy = entropy_score(logits)
    assert np.all(entropy >= 0.0) and np.all(entropy <= math.log(n_classes) + 1e-9)
    assert np.all(gen_score(logits) >= 0.0)
