"""Per-stream OOD alerts: optional score smoothing, then n-of-m entry and a quiet period to leave.

One frame over the threshold is not an alert: at a threshold calibrated for 95 % ID TPR, one ID frame in
twenty is over it by design. An alert starts when `enter_n` of the last `enter_m` scored frames are over
the threshold (after smoothing). It ends after a quiet period: the last `clear_after_s` seconds of capture
time (time, not frames, so that the hold does not depend on the frame rate or on drops) had at most
`quiet_fraction` of their frames over the threshold. Demanding *no* frame over it would keep an alert on
for seconds into normal footage, where one frame in ten or twenty is over by design; 20 % is far below
what OOD footage gives (55–75 % on the dev clips), so the two thresholds make a dead band and the alert
does not flap. The entry window is cleared when an alert ends, so that the frames that started it cannot
start the next one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..config import AlertConfig, SmoothingConfig

__all__ = ["AlertEvent", "AlertState", "AlertTracker", "ScoreSmoother"]

_EPS = 1e-9  # seconds


class ScoreSmoother:
    """none: the score itself; ema: s ← α·x + (1−α)·s; median: median of the last `window` scores."""

    def __init__(self, config: SmoothingConfig) -> None:
        self.config = config
        self._ema: float | None = None
        self._recent: deque[float] = deque(maxlen=config.window)

    def update(self, score: float) -> float:
        method = self.config.method
        if method == "ema":
            alpha = self.config.alpha
            self._ema = score if self._ema is None else alpha * score + (1 - alpha) * self._ema
            return self._ema
        if method == "median":
            self._recent.append(score)
            return float(np.median(self._recent))
        return score


@dataclass(frozen=True)
class AlertState:
    """A stream's alert state after a frame: active, alert id (None when never alerted), unix capture
    time it started, frames over the threshold in the window, window length, the smoothed score."""

    active: bool
    alert_id: int | None
    since: float | None
    over: int
    window: int
    smoothed: float

    def to_message(self) -> dict:
        return {"active": self.active, "id": self.alert_id, "since": self.since, "over": self.over,
                "window": self.window}


@dataclass(frozen=True)
class AlertEvent:
    """An alert start or end. Times are unix seconds; duration, peak and frame count only on end."""

    event: str  # "start" | "end"
    stream: str
    alert_id: int
    seq: int
    t_capture: float
    score: float
    threshold: float
    duration_s: float | None = None
    peak_score: float | None = None
    frames_over: int | None = None
    reason: str | None = None  # end: "quiet", "stream_ended", "signal_lost", "shutdown"

    def to_record(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class _Open:
    alert_id: int
    since: float
    seq: int
    peak: float
    frames_over: int
    recent: deque = field(default_factory=deque)  # (t_capture, over) of the last clear_after_s seconds

    def quiet(self, t_capture: float, over: bool, period: float, fraction: float) -> bool:
        """Whether the period (t_capture − period, t_capture] was quiet; times are compared to 1 ns so
        that a period of 0.5 s at 10 fps holds exactly 5 frames despite float rounding."""
        while self.recent and self.recent[0][0] <= t_capture - period + _EPS:
            self.recent.popleft()
        self.recent.append((t_capture, over))  # after the trim: a period of 0 s is this frame alone
        if t_capture - self.since < period - _EPS:  # not a whole quiet period yet
            return False
        return sum(o for _, o in self.recent) <= fraction * len(self.recent)


@dataclass
class AlertTracker:
    """The alert state machine of one stream."""

    stream: str
    config: AlertConfig
    threshold: float
    _window: deque = field(init=False)
    _smoother: ScoreSmoother = field(init=False)
    _open: _Open | None = field(init=False, default=None)
    _count: int = field(init=False, default=0)
    _last_id: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._window = deque(maxlen=self.config.enter_m)
        self._smoother = ScoreSmoother(self.config.smoothing)

    @property
    def active(self) -> bool:
        return self._open is not None

    def reconfigure(self, config: AlertConfig, threshold: float) -> None:
        """Apply reloaded settings; an open alert stays open and ends by the new rules."""
        if config.smoothing != self.config.smoothing:
            self._smoother = ScoreSmoother(config.smoothing)
        if config.enter_m != self.config.enter_m:
            self._window = deque(self._window, maxlen=config.enter_m)
        self.config, self.threshold = config, threshold

    def update(self, score: float, seq: int, t_capture: float) -> tuple[AlertState, list[AlertEvent]]:
        """Feed one scored frame (score, its seq and unix capture time); returns the state and any events."""
        smoothed = self._smoother.update(score)
        over = smoothed > self.threshold
        self._window.append(over)
        events: list[AlertEvent] = []
        current = self._open
        if current is None and sum(self._window) >= self.config.enter_n:
            self._count += 1
            self._last_id = self._count
            current = self._open = _Open(self._count, t_capture, seq, smoothed, 0)
            events.append(AlertEvent("start", self.stream, current.alert_id, seq, t_capture, smoothed, self.threshold))
        if current is not None:
            if over:
                current.frames_over += 1
                current.peak = max(current.peak, smoothed)
            if current.quiet(t_capture, over, self.config.clear_after_s, self.config.quiet_fraction):
                events.append(self._end(seq, t_capture, smoothed, "quiet"))
        state = AlertState(self._open is not None, self._last_id, self._open.since if self._open else None,
                           int(sum(self._window)), self.config.enter_m, smoothed)
        return state, events

    def reset(self) -> None:
        """Forget the entry window and the smoothing (after a gap in the video); an open alert is not
        touched — close it first."""
        self._window.clear()
        self._smoother = ScoreSmoother(self.config.smoothing)

    def state(self) -> AlertState:
        """The state as it stands, without a new frame (for a frame that carries no usable score)."""
        return AlertState(self._open is not None, self._last_id, self._open.since if self._open else None,
                          int(sum(self._window)), self.config.enter_m, float("nan"))

    def close(self, seq: int, t_capture: float, reason: str) -> AlertEvent | None:
        """End an open alert without a frame (stream ended, shutdown); None if none is open."""
        if self._open is None:
            return None
        return self._end(seq, t_capture, self._open.peak, reason)

    def _end(self, seq: int, t_capture: float, score: float, reason: str) -> AlertEvent:
        current = self._open
        assert current is not None
        self._open = None
        self._window.clear()
        return AlertEvent("end", self.stream, current.alert_id, seq, t_capture, score, self.threshold,
                          duration_s=t_capture - current.since, peak_score=current.peak,
                          frames_over=current.frames_over, reason=reason)
