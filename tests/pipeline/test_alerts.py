"""Alert hysteresis: n-of-m entry, a quiet period to leave, smoothing, reload, and invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_monitor.config import AlertConfig, SmoothingConfig
from stream_monitor.pipeline.alerts import AlertTracker, ScoreSmoother

FPS = 10.0


def _feed(tracker: AlertTracker, scores, start: int = 0):
    events, states = [], []
    for i, score in enumerate(scores, start):
        state, new = tracker.update(score, i + 1, i / FPS)
        states.append(state)
        events += new
    return states, events


def test_enters_after_n_of_m_and_not_before():
    tracker = AlertTracker("s", AlertConfig(enter_n=3, enter_m=5, clear_after_s=1.0), threshold=1.0)
    states, events = _feed(tracker, [2, 0, 2, 0, 0, 0, 0, 2, 2, 2])  # never 3 of 5 … until frame 10
    assert [e.event for e in events] == ["start"] and events[0].seq == 10
    assert [s.active for s in states] == [False] * 9 + [True]
    assert states[-1].over == 3 and states[-1].window == 5 and states[-1].since == 9 / FPS


def test_leaves_after_the_quiet_period_in_capture_time_and_clears_the_window():
    tracker = AlertTracker("s", AlertConfig(enter_n=2, enter_m=3, clear_after_s=0.5, quiet_fraction=0), threshold=1.0)
    _, events = _feed(tracker, [2, 2, 0, 0, 0, 0, 0, 2])
    assert [(e.event, e.seq) for e in events] == [("start", 2), ("end", 7)]
    end = events[1]
    assert end.reason == "quiet" and end.frames_over == 1 and end.duration_s == 0.5 and end.peak_score == 2
    # The window was cleared: one over-threshold frame after the end is 1 of 3, not a new alert.
    assert not tracker.active


def test_with_quiet_fraction_zero_a_frame_over_the_threshold_restarts_the_quiet_period():
    tracker = AlertTracker("s", AlertConfig(enter_n=1, enter_m=1, clear_after_s=0.3, quiet_fraction=0), threshold=1.0)
    _, events = _feed(tracker, [2, 0, 0, 2, 0, 0, 0, 0, 0])
    assert [e.event for e in events] == ["start", "end"]
    assert events[1].seq == 7  # 0.3 s after the over-threshold frame at seq 4, not before


def test_a_quiet_period_tolerates_the_odd_frame_over_the_threshold():
    """Regression story: in the demo an alert on a real OOD segment stayed on for 9 s into normal
    footage, because one ID frame in ten is over the threshold by design and the quiet period demanded
    none. With the default 20 % the alert ends 2 s after the OOD frames stop; OOD footage (over half of
    its frames over the threshold) never looks quiet, so the alert does not flap either."""
    tail = [0, 0, 0, 0, 2, 0, 0, 0, 0, 0] * 4  # 10 % over, like ID footage
    strict = AlertTracker("s", AlertConfig(enter_n=3, enter_m=5, clear_after_s=2.0, quiet_fraction=0), 1.0)
    _, events = _feed(strict, [2] * 10 + tail)
    assert [e.event for e in events] == ["start"]
    tolerant = AlertTracker("s", AlertConfig(enter_n=3, enter_m=5, clear_after_s=2.0), 1.0)
    _, events = _feed(tolerant, [2] * 10 + tail)
    assert [e.event for e in events] == ["start", "end"] and events[1].seq <= 10 + 21
    ood = AlertTracker("s", AlertConfig(enter_n=3, enter_m=5, clear_after_s=2.0), 1.0)
    _, events = _feed(ood, [2, 0] * 50)  # 50 % over for 10 s
    assert [e.event for e in events] == ["start"]


def test_close_ends_an_open_alert_once():
    tracker = AlertTracker("s", AlertConfig(enter_n=1, enter_m=1), threshold=1.0)
    _feed(tracker, [5])
    end = tracker.close(seq=1, t_capture=3.0, reason="shutdown")
    assert end.event == "end" and end.reason == "shutdown" and end.duration_s == 3.0
    assert tracker.close(1, 3.0, "shutdown") is None


def test_smoothing_median_suppresses_a_single_spike_ema_follows():
    median = ScoreSmoother(SmoothingConfig(method="median", window=3))
    assert [median.update(x) for x in (0, 9, 0, 0)] == [0, 4.5, 0, 0]
    ema = ScoreSmoother(SmoothingConfig(method="ema", alpha=0.5))
    assert [ema.update(x) for x in (4, 0, 0)] == [4, 2, 1]
    assert ScoreSmoother(SmoothingConfig()).update(7.5) == 7.5


def test_reconfigure_changes_threshold_and_window_without_losing_the_open_alert():
    tracker = AlertTracker("s", AlertConfig(enter_n=2, enter_m=3, clear_after_s=10), threshold=1.0)
    _feed(tracker, [2, 2])
    tracker.reconfigure(AlertConfig(enter_n=4, enter_m=6, clear_after_s=0.0, quiet_fraction=0), threshold=5.0)
    assert tracker.active and tracker.threshold == 5.0
    state, events = tracker.update(2.0, 3, 0.2)  # now under the new threshold, quiet period 0
    assert [e.event for e in events] == ["end"] and state.window == 6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 3), max_size=120), st.integers(1, 5), st.integers(0, 5), st.floats(0, 1))
def test_alerts_never_overlap_and_every_start_is_ended(scores, n, extra, clear):
    """Property: starts and ends alternate, ids count up, and close() ends whatever is open."""
    tracker = AlertTracker("s", AlertConfig(enter_n=n, enter_m=n + extra, clear_after_s=clear), threshold=1.5)
    _, events = _feed(tracker, scores)
    final = tracker.close(len(scores), len(scores) / FPS, "shutdown")
    events += [final] if final else []
    kinds = [e.event for e in events]
    assert kinds == ["start", "end"] * (len(kinds) // 2)
    assert [e.alert_id for e in events if e.event == "start"] == list(range(1, len(kinds) // 2 + 1))
    assert all(e.duration_s >= 0 for e in events if e.event == "end")
