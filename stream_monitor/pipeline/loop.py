"""The inference loop: batch → scorer → alerts → results, audit, metrics, viewer frames.

It runs in the inference process (`pipeline.inference`), but holds nothing process-specific, so tests
drive it in-process with real rings and sockets. Work per batch: normalise the model-sized RGB the
capture processes already produced (or let the engine do it: `score_uint8`), `scorer.score_batch` (the
engine contract: (B, 3, 224, 224) float32 → `ScoredBatch`), then per frame the alert state machine, one result message, and metrics. Alert starts
and ends go to the audit log (fsynced) before they are published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..capture.ring import FrameRing
from ..config import MonitorConfig
from ..explanations.record import alert_explanation
from ..observability.metrics import Metrics
from ..preprocess import normalize_uint8
from ..transport.messages import alert_message, result_message
from ..transport.schema import encode, topic
from ..transport.sockets import Publisher
from .alerts import AlertEvent, AlertTracker
from .audit import AuditLog
from .batcher import Batcher, BatchItem
from .drift_hook import StreamDrift
from .map_carry import MapCarry
from .stream_status import SILENT_STATES, StreamWatch, publish_status
from .validity import frame_flags, score_isolating
from .viewer_frames import ViewerFramePublisher

__all__ = ["InferenceLoop", "ScorerLike"]

log = logging.getLogger(__name__)
_HOUSEKEEPING_S = 0.25


class ScorerLike(Protocol):
    """What the loop needs from `stream_monitor.engine.Scorer` (or a faster back-end behind it)."""

    def score_batch(self, images: np.ndarray) -> Any: ...


class InferenceLoop:
    """Scores frames from the rings until stopped; see the module docstring."""

    def __init__(self, config: MonitorConfig, scorer: ScorerLike, class_names: Sequence[str],
                 default_threshold: float, rings: dict[str, FrameRing], batcher: Batcher, results: Publisher,
                 metrics: Metrics, audit: AuditLog, frames: ViewerFramePublisher | None = None) -> None:
        self.config, self.scorer, self.class_names = config, scorer, list(class_names)
        self.default_threshold = default_threshold
        self.rings, self.batcher, self.results = rings, batcher, results
        self.metrics, self.audit, self.frames = metrics, audit, frames
        self.trackers = {s.name: AlertTracker(s.name, config.alerts_for(s.name), self._threshold(s.name))
                         for s in config.streams}
        self.last_seq = {name: 0 for name in rings}
        self.last_capture = {name: 0.0 for name in rings}
        self.processed = 0
        self.last_iteration = time.monotonic()
        self._closed_streams: set[str] = set()
        self.watches = {name: StreamWatch(config.metrics.stale_after_s) for name in rings}
        self._next_housekeeping = 0.0
        self.drift = StreamDrift(config.drift, rings, metrics.registry, audit) if config.drift.enabled else None
        self.maps = MapCarry(config.model.map_hold_s)  # alerting frames the map budget skipped: latest map
        for name in rings:
            metrics.init_stream(name)
            metrics.threshold.labels(name).set(self.trackers[name].threshold)

    def _threshold(self, stream: str) -> float:
        configured = self.config.alerts_for(stream).threshold
        return float(configured) if configured is not None else float(self.default_threshold)

    # ------------------------------------------------------------------ running
    def run(self, should_stop: Callable[[], bool], on_tick: Callable[[], None] | None = None) -> None:
        """Loop until `should_stop()`; `on_tick` runs with the housekeeping, about 4 times a second."""
        while not should_stop():
            self.step(0.1)
            if time.monotonic() >= self._next_housekeeping:
                self.housekeeping()
                if on_tick is not None:
                    on_tick()
                self._next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
        self.housekeeping()

    def step(self, timeout_s: float) -> int:
        """One batch (waiting up to `timeout_s` for frames); returns the number of frames scored."""
        batch = self.batcher.next_batch(timeout_s)
        self.last_iteration = time.monotonic()
        if batch:
            self.process(batch)
        return len(batch)

    def process(self, batch: list[BatchItem]) -> None:
        rgb = np.stack([item.frame.model_rgb for item in batch])
        started = time.perf_counter()
        # Engines that normalise inside their graph or on their device take the ring's uint8 frames as
        # they are (EngineScorer.score_uint8); the reference Scorer gets them normalised here.
        score_uint8 = getattr(self.scorer, "score_uint8", None)
        if score_uint8 is not None:
            rows = score_isolating(score_uint8, rgb)
        else:
            rows = score_isolating(self.scorer.score_batch, normalize_uint8(rgb))
        self.metrics.inference_latency.observe(time.perf_counter() - started)
        self.metrics.batch_frames.observe(len(batch))
        for i, item in enumerate(batch):
            if i not in rows:  # refused by the scorer even alone (NaN or inf inside): counted, not scored
                self.metrics.dropped(item.stream, "inference", "scoring_error")
                log.warning("%s: frame %d could not be scored (non-finite values); skipped", item.stream, item.frame.seq)
                continue
            self._publish_one(item, *rows[i], len(batch))
        self.processed += len(rows)

    def _publish_one(self, item: BatchItem, scored: Any, i: int, batch_size: int) -> None:
        stream, frame = item.stream, item.frame
        tracker = self.trackers[stream]
        score = float(scored.score[i])
        flags = frame_flags(scored, i)
        # A flagged frame is not a measurement: it must neither raise nor end an alert.
        state, events = (tracker.state(), []) if flags else tracker.update(score, frame.seq, frame.t_capture)
        t_result = time.time()
        latency = time.monotonic() - frame.mono_capture
        heat, shown = self.maps.heatmap(stream, scored, i, frame.t_capture)
        if shown is not None:
            self.metrics.explanation_maps.labels(stream, shown).inc()
        message = self._result_message(item, scored, i, batch_size, state, t_result, latency, heat)
        if flags:
            message["flags"] = flags
        for event in events:  # audit first: an alert that was published but not logged must not exist
            self._emit(event, alert_explanation(scored, i, heat) if event.event == "start" else {})
        self.results.send([topic("result", stream), encode(message)])
        ratio = None if flags else (score / tracker.threshold if tracker.threshold > 0 else 0.0)
        self.metrics.record_result(stream, latency_s=latency, t_result=t_result, alert_active=state.active,
                                   score_ratio=ratio, flags=flags)
        self.last_seq[stream] = frame.seq
        self.last_capture[stream] = frame.t_capture
        if self.frames is not None:
            self.frames.offer(stream, frame.seq, frame.t_capture)

    def _result_message(self, item: BatchItem, scored: Any, i: int, batch_size: int, state: Any, t_result: float,
                        latency: float, heat: np.ndarray | None) -> dict:
        """The v1 result message of row i with the map it shows, `heat` (docs/message-schema.md), drift field
        included when enabled."""
        stream, frame = item.stream, item.frame
        threshold = self.trackers[stream].threshold
        heat = heat if self.config.transport.heatmap else None
        message = result_message(
            stream=stream, seq=frame.seq, prev_seq=item.prev_seq, t_capture=frame.t_capture, t_result=t_result,
            latency_s=latency, batch_size=batch_size, probs=scored.probs[i], class_names=self.class_names,
            score=float(scored.score[i]), smoothed_score=state.smoothed, threshold=threshold,
            distance=scored.distance[i], bias_term=scored.bias_term[i], rho=scored.rho[i],
            alert=state.to_message(), top_neurons=scored.top_neurons[i], deviations=scored.deviations[i],
            heatmap=heat, frame_size=frame.size, box=frame.box)
        if self.drift is not None:  # optional v1 field: "input not validated", separate from the OOD alert
            message["drift"] = self.drift.update(stream, frame.seq, float(scored.score[i]), threshold,
                                                 frame.t_capture)
        if hasattr(scored, "evidence_message"):  # enrolled site or served detector: what the score rests on
            message["evidence"] = scored.evidence_message(i)
        return message

    def _emit(self, event: AlertEvent, explanation: dict | None = None) -> None:
        record = event.to_record()
        # alert_start keeps where the map peaked and the top neurons (explanations/record.py), for review
        self.audit.write(f"alert_{event.event}", **{k: v for k, v in record.items() if k != "event"},
                         **(explanation or {}))
        self.results.send([topic("alert", event.stream), encode(alert_message(record, time.time()))])
        self.metrics.messages_published.labels("alert").inc()
        if event.event == "start":
            self.metrics.alerts.labels(event.stream).inc()
            log.warning("%s: OOD alert %d started at frame %d (score %.4g > threshold %.4g)", event.stream,
                        event.alert_id, event.seq, event.score, event.threshold)
        else:
            self.metrics.alert_active.labels(event.stream).set(0)
            log.warning("%s: OOD alert %d ended (%s) after %.1f s, peak score %.4g", event.stream, event.alert_id,
                        event.reason, event.duration_s or 0.0, event.peak_score or 0.0)

    # ------------------------------------------------------------------ housekeeping
    def housekeeping(self) -> None:
        """Sync capture counters into metrics; end the alerts of streams whose replay has ended."""
        self.results.poll_subscriptions()
        for name, ring in self.rings.items():
            header = ring.header
            state = ring.state
            self.metrics.sync_capture(name, int(header["captured"]), int(header["errors"]),
                                      int(header["reconnects"]), state, float(header["last_capture"]),
                                      ring.write_seq - self.batcher.taken[name],
                                      invalid=int(header["invalid"]), converted=int(header["converted"]),
                                      skipped=int(header["skipped"]), late=int(header["late"]))
            drained = ring.write_seq <= self.batcher.taken[name]
            if state.done and name not in self._closed_streams and drained:
                self._closed_streams.add(name)
                self._close_alert(name, "stream_ended")
            change = self.watches[name].observe(state.label, float(header["last_capture"]), time.time(), drained)
            if change is not None:
                self._stream_changed(name, change)

    def _stream_changed(self, stream: str, state: str) -> None:
        # See stream_status: a silent stream's alert ends, and its window starts afresh with the signal.
        if state in SILENT_STATES:
            self._close_alert(stream, "signal_lost")
            self.trackers[stream].reset()
            self.maps.forget(stream)
            log.warning("%s: no frames (%s); alert state reset", stream, state)
        elif state == "running":  # a restarted capture process: its alerts must be closed at shutdown again
            self._closed_streams.discard(stream)
        self.metrics.stream_stale.labels(stream).set(1 if state in SILENT_STATES else 0)
        publish_status(self.results, self.metrics, stream, state, self.last_seq[stream])

    def _close_alert(self, stream: str, reason: str) -> None:
        # A replay that ended closes at its last frame's capture time; a shutdown closes now.
        when = self.last_capture[stream] if reason in ("stream_ended", "signal_lost") and self.last_capture[stream] \
            else time.time()
        event = self.trackers[stream].close(self.last_seq[stream], when, reason)
        if event is not None:
            self._emit(event)

    def apply_config(self, config: MonitorConfig) -> None:
        """Apply reloaded alert settings (thresholds, hysteresis, smoothing) to every stream."""
        self.config = config
        for name, tracker in self.trackers.items():
            tracker.reconfigure(config.alerts_for(name), self._threshold(name))
            self.metrics.threshold.labels(name).set(tracker.threshold)
            log.info("%s: alert threshold %.6g, enter %d of %d, clear after %.1f s, smoothing %s", name,
                     tracker.threshold, tracker.config.enter_n, tracker.config.enter_m,
                     tracker.config.clear_after_s, tracker.config.smoothing.method)

    def finish(self, reason: str = "shutdown") -> None:
        """Close every open alert (audited) and count the frames left in the rings as dropped (ring,
        shutdown), so that captured = processed + dropped holds in the final status — called once when
        the loop stops, after the capture processes (the supervisor stops them first)."""
        for name, ring in self.rings.items():
            left = ring.write_seq - self.batcher.taken[name]
            if left > 0:
                self.metrics.dropped(name, "ring", "shutdown", left)
                self.batcher.taken[name] = ring.write_seq
        for name in self.trackers:
            if name not in self._closed_streams:
                self._close_alert(name, reason)
            if self.watches[name].state not in ("ended", "failed"):  # the last word about every stream
                publish_status(self.results, self.metrics, name, "stopped", self.last_seq[name])

    # ------------------------------------------------------------------ checks
    def health(self) -> tuple[bool, dict]:
        age = time.monotonic() - self.last_iteration
        return age < 10.0, {"loop_age_s": round(age, 3), "frames_processed": self.processed}

    def readiness(self) -> tuple[bool, dict]:
        now, stale_after = time.time(), self.config.metrics.stale_after_s
        streams, ok = {}, True
        for name, ring in self.rings.items():
            state = ring.state.label
            age = now - float(ring.header["last_capture"]) if ring.write_seq else None
            good = state == "ended" or (state == "running" and age is not None and age < stale_after)
            ok &= good
            streams[name] = {"state": state, "last_frame_age_s": None if age is None else round(age, 3), "ok": good}
        return ok, {"streams": streams}
