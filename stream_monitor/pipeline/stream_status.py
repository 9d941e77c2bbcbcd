"""Per-stream liveness as consumers see it: running, stale, reconnecting, ended, failed, stopped.

The capture process's ring state says what the capture process is doing; it cannot say that a camera
which is "running" has delivered nothing for seconds (a hung driver, a cable pulled on a capture card
that keeps the device open). The inference loop combines the two: a running stream whose newest frame is
older than `metrics.stale_after_s` is *stale*. A stream ends only once every frame it captured was
taken, so the end-of-stream status is the last message about that stream. Every change is published as
a `status` message (docs/message-schema.md) and shown by the overlay; `stream_monitor_stream_stale`
is 1 while a stream delivers nothing (stale, reconnecting, failed).

When a stream goes silent, its open alert is ended (reason `signal_lost`, audited) and its alert
window and smoothing are cleared: frames from before a gap must not combine with frames after it into a
new alert, and an alert must not run on for a video nobody can see.
"""

from __future__ import annotations

import time

from ..observability.metrics import DROP_REASONS, Metrics
from ..transport.messages import status_message
from ..transport.schema import encode, topic
from ..transport.sockets import Publisher

__all__ = ["SILENT_STATES", "StreamWatch", "publish_status"]

SILENT_STATES = ("stale", "reconnecting", "failed")


class StreamWatch:
    """The published state of one stream; `observe` returns the new state on a change, else None."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.state = "starting"
        self._ring_state, self._since = "starting", 0.0

    def observe(self, ring_state: str, last_capture: float, now: float, drained: bool) -> str | None:
        """ring_state: the capture process's state; last_capture: unix time of the newest frame (0 =
        none yet); now: unix time; drained: every captured frame was taken by the batcher."""
        if ring_state != self._ring_state:  # silence counts from a (re)start, not from the last frame before it
            self._ring_state, self._since = ring_state, now
        state = ring_state
        if ring_state == "running" and now - max(last_capture, self._since) > self.stale_after_s:
            state = "stale"
        elif ring_state in ("ended", "failed") and not drained:
            state = self.state  # frames still to score: the end comes after them
        if state == "starting" or state == self.state:
            return None
        self.state = state
        return state


def publish_status(results: Publisher, metrics: Metrics, stream: str, state: str, last_seq: int) -> None:
    """Send a stream's status with its counts so far (from /metrics, synced just before)."""
    value = metrics.registry.get_sample_value
    captured = value("stream_monitor_frames_captured_total", {"stream": stream}) or 0
    processed = value("stream_monitor_frames_processed_total", {"stream": stream}) or 0
    dropped = sum(value("stream_monitor_frames_dropped_total", {"stream": stream, "stage": stage, "reason": reason})
                  or 0 for stage, reason in DROP_REASONS)
    message = status_message(stream, state, time.time(), last_seq, int(captured), int(processed), int(dropped))
    results.send([topic("status", stream), encode(message)])
    metrics.messages_published.labels("status").inc()
