"""The drift statistic on synthetic streams: its false-raise rate under H0 is the one its design states,
and it raises on a known shift about as fast as the exact chain says."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.site.drift import DriftMonitor, arl0, design, run_length


def _run_lengths(p: float, d, n_streams: int, rng: np.random.Generator, cap: int = 100_000) -> np.ndarray:
    lengths = []
    for _ in range(n_streams):
        bits = rng.random(cap) < p
        lengths.append(run_length(bits, d) or cap)
    return np.asarray(lengths, float)


def test_design_meets_its_arl0_target_with_the_smallest_threshold():
    d = design(0.05, 0.25, 1000.0)
    assert d.arl0_decisions >= 1000.0
    assert arl0(0.05, d.up_over, d.up_under, d.h - 1) < 1000.0  # one grid step lower misses the target
    assert d.false_raises_per_hour(1.0) == pytest.approx(3600 / d.arl0_decisions)


def test_h0_false_raise_rate_matches_the_exact_arl0_over_many_simulated_streams():
    # H0: i.i.d. Bernoulli(p0). A short target keeps the test fast; the chain is the same one the live
    # design (ARL0 = 28 800) uses. 600 geometric-like run lengths: standard error of the mean ≈ 4 %.
    d = design(0.05, 0.25, 300.0)
    lengths = _run_lengths(0.05, d, 600, np.random.default_rng(1))
    assert lengths.mean() == pytest.approx(d.arl0_decisions, rel=0.15)


def test_h0_raises_per_hour_with_clearing_stay_near_the_design_rate():
    d = design(0.05, 0.25, 300.0)
    rng = np.random.default_rng(2)
    monitor, raises, n = DriftMonitor(d), 0, 120_000
    for bit in rng.random(n) < 0.05:
        raises += monitor.decide(bool(bit)) == "raise"
    # While raised the signal must first clear before it can raise again, so the count is at most the
    # design rate; it must not be far below it either (that would mean the signal sticks).
    expected = n / d.arl0_decisions
    assert 0.6 * expected <= raises <= 1.15 * expected


@pytest.mark.parametrize("p", [0.3, 0.6])
def test_a_known_shift_is_raised_as_fast_as_the_chain_predicts(p):
    d = design(0.05, 0.25, 28_800.0)
    lengths = _run_lengths(p, d, 300, np.random.default_rng(3), cap=2_000)
    assert (lengths < 2_000).all()
    assert lengths.mean() == pytest.approx(arl0(p, d.up_over, d.up_under, d.h), rel=0.15)


def test_signal_clears_after_in_distribution_footage_returns():
    d = design(0.05, 0.25, 28_800.0)
    monitor = DriftMonitor(d, sample_interval_s=1.0)
    events = [monitor.update(True, float(t))[1] for t in range(30)]
    assert "raise" in events and monitor.raised
    events = [monitor.update(False, 30.0 + t)[1] for t in range(200)]
    assert events.count("clear") == 1 and not monitor.raised


def test_sampling_takes_one_decision_per_interval_and_skips_unscored_frames():
    monitor = DriftMonitor(design(0.05, 0.25, 28_800.0), sample_interval_s=1.0)
    for i in range(100):  # 10 s of 10 fps video
        monitor.update(True, i * 0.1)
    assert monitor.decisions == 10
    monitor.update(None, 20.0)
    assert monitor.decisions == 10
