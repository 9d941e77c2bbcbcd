"""Stream-level drift: "is this footage from the distribution the detector was validated on?"

The detector's threshold was calibrated so that a share p0 (5 %) of validation frames score above it.
On footage like the validation footage, frames over the threshold stay near that share; on footage from
another site, scope or preparation they do not (PolypGen's other centres: 44–94 % by detector). This
module tests that, per stream, with a Bernoulli CUSUM on the over-threshold indicator:

    S ← max(0, S + x·a + (1 − x)·b),   a = log(p1/p0) > 0,   b = log((1 − p1)/(1 − p0)) < 0

and raises "input not validated" when S ≥ h. It clears with the mirror-image CUSUM (evidence for p0
against p1) crossing `h_clear`, so the signal holds through a short normal stretch but not forever.

Why these pieces:
- The test samples at most one frame every `sample_interval_s` seconds. Consecutive video frames are
  nearly the same image; counting each would pretend to have 30 independent observations a second and
  the false-raise guarantee below would be a lie. One frame a second is closer to independent.
- The increments are rounded to a grid (`resolution`) and the CUSUM runs in integers. Its in-control
  average run length (ARL0: decisions until a false raise when frames are i.i.d. Bernoulli(p0)) is then
  computed *exactly* from the Markov chain of S, and h is the smallest grid value whose ARL0 meets the
  target. False raises per hour under that assumption = 3600 / (ARL0 · sample_interval_s).
- p1 is the smallest rise worth raising for (default 0.25, five times the expected 5 %): smaller p1
  raises on milder shifts but later; the default was fixed before looking at any evaluation footage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["DriftDesign", "DriftMonitor", "DriftState", "arl0", "design", "run_length"]


@dataclass(frozen=True)
class DriftDesign:
    """A fitted Bernoulli CUSUM: integer increments (up_over, up_under) for the raising statistic, the
    integer threshold h, the clearing threshold h_clear, and the ARL0 they give (decisions)."""

    p0: float
    p1: float
    resolution: float
    up_over: int
    up_under: int
    h: int
    h_clear: int
    arl0_decisions: float

    @property
    def threshold(self) -> float:
        """h in log-likelihood-ratio units."""
        return self.h * self.resolution

    def false_raises_per_hour(self, sample_interval_s: float) -> float:
        return 3600.0 / (self.arl0_decisions * sample_interval_s)


def _increments(p0: float, p1: float, resolution: float) -> tuple[int, int]:
    if not 0 < p0 < p1 < 1:
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
    up = round(math.log(p1 / p0) / resolution)
    down = round(math.log((1 - p1) / (1 - p0)) / resolution)
    return max(up, 1), min(down, -1)


def arl0(p: float, up_over: int, up_under: int, h: int) -> float:
    """Expected decisions until S ≥ h when every decision is over the threshold with probability p,
    independently, starting from S = 0 — solved exactly on the chain of integer states 0 … h−1."""
    states = np.arange(h)
    q = np.zeros((h, h))
    over, under = states + up_over, np.maximum(states + up_under, 0)
    inside = over < h
    q[states[inside], over[inside]] += p
    q[states, under] += 1 - p  # under is always < h: up_under < 0
    return float(np.linalg.solve(np.eye(h) - q, np.ones(h))[0])


@lru_cache(maxsize=64)
def design(p0: float = 0.05, p1: float = 0.25, arl0_target: float = 28_800.0, resolution: float = 0.05,
           clear_fraction: float = 0.5) -> DriftDesign:
    """The smallest h whose exact ARL0 under i.i.d. Bernoulli(p0) is at least `arl0_target` decisions
    (default 28 800 = 8 hours at one decision a second). `h_clear` = clear_fraction · h."""
    up_over, up_under = _increments(p0, p1, resolution)
    lo, hi = up_over, up_over
    while arl0(p0, up_over, up_under, hi) < arl0_target:  # exponential search, then bisection
        lo, hi = hi, hi * 2
        if hi > 200_000:
            raise ValueError("ARL0 target unreachable: p1 too close to p0 or target too large")
    while lo < hi:
        mid = (lo + hi) // 2
        if arl0(p0, up_over, up_under, mid) >= arl0_target:
            hi = mid
        else:
            lo = mid + 1
    h = hi
    return DriftDesign(p0, p1, resolution, up_over, up_under, h, max(1, round(clear_fraction * h)),
                       arl0(p0, up_over, up_under, h))


@dataclass(frozen=True)
class DriftState:
    """A stream's drift signal after a frame: raised, the raising and clearing CUSUMs (LLR units, h
    for scale), the share of sampled frames over the threshold in the recent window, decisions so far,
    and how many times the signal was raised."""

    raised: bool
    cusum: float
    threshold: float
    recent_share: float
    expected_share: float
    decisions: int
    raises: int
    since: float | None

    def to_message(self) -> dict:
        return {"raised": self.raised, "cusum": round(self.cusum, 4), "threshold": round(self.threshold, 4),
                "share": round(self.recent_share, 4), "expected": self.expected_share, "since": self.since}


class DriftMonitor:
    """The drift signal of one stream: feed every scored frame; decides on at most one per interval."""

    def __init__(self, drift_design: DriftDesign, sample_interval_s: float = 1.0, window: int = 120) -> None:
        self.design = drift_design
        self.sample_interval_s = sample_interval_s
        self._up = 0          # raising CUSUM, integer grid units
        self._down = 0        # clearing CUSUM while raised
        self._recent: list[bool] = []
        self._window = window
        self._next_t: float | None = None
        self.decisions = 0
        self.raises = 0
        self.raised_since: float | None = None

    @property
    def raised(self) -> bool:
        return self.raised_since is not None

    def update(self, over: bool | None, t_capture: float) -> tuple[DriftState, str | None]:
        """Feed one frame (over = score above the threshold; None for a frame without a valid score).
        Returns the state and "raise" / "clear" when the signal changed at this frame."""
        event = None
        if over is not None and (self._next_t is None or t_capture >= self._next_t):
            self._next_t = t_capture + self.sample_interval_s
            event = self.decide(bool(over), t_capture)
        return self.state(), event

    def decide(self, over: bool, t_capture: float = 0.0) -> str | None:
        """One decision (already sampled). Returns "raise", "clear" or None."""
        d = self.design
        self.decisions += 1
        self._recent.append(over)
        if len(self._recent) > self._window:
            del self._recent[0]
        if not self.raised:
            self._up = max(0, self._up + (d.up_over if over else d.up_under))
            if self._up >= d.h:
                self.raised_since, self.raises, self._down = t_capture, self.raises + 1, 0
                return "raise"
            return None
        self._down = max(0, self._down - (d.up_over if over else d.up_under))
        if self._down >= d.h_clear:
            self.raised_since, self._up = None, 0
            return "clear"
        return None

    def state(self) -> DriftState:
        d = self.design
        share = float(np.mean(self._recent)) if self._recent else 0.0
        return DriftState(self.raised, self._up * d.resolution, d.threshold, share, d.p0, self.decisions,
                          self.raises, self.raised_since)


def run_length(over: np.ndarray, drift_design: DriftDesign) -> int | None:
    """Decisions until the first raise on a sequence of over-threshold indicators (1-based), or None."""
    monitor = DriftMonitor(drift_design)
    for i, bit in enumerate(np.asarray(over, dtype=bool), start=1):
        if monitor.decide(bool(bit)) == "raise":
            return i
    return None
