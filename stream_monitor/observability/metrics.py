"""Every Prometheus metric the monitor exports, in one place (listed with meanings in docs/metrics.md).

Names follow `stream_monitor_<what>_<unit>`, base units (seconds), `_total` for counters. Rates are
left to PromQL (`rate(stream_monitor_frames_processed_total[1m])`), never exported as fps gauges.
Latency buckets are multiples of the frame period (`frame_rate_hz`), so a dashboard can read "within 2
frames" straight off a bucket boundary. The registry is injected: library code never touches
prometheus_client's global registry, and each test builds its own.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info

from .. import __version__
from ..capture.ring import STATE_NAMES, RingState

__all__ = ["DROP_REASONS", "FRAME_PERIOD_MULTIPLES", "DriftMetrics", "Metrics", "SCORE_RATIO_BUCKETS", "latency_buckets"]

PREFIX = "stream_monitor"
# Frame periods: half a frame … 64 frames (2.1 s at 30 fps).
FRAME_PERIOD_MULTIPLES = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64)
# Score ÷ threshold in force: 1.0 is the alert threshold whatever the model's score scale.
SCORE_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
# (stage, reason) pairs of stream_monitor_frames_dropped_total; every drop on the scored path is one.
DROP_REASONS = {
    ("capture", "read_error"): "a frame could not be decoded or preprocessed by the capture process",
    ("capture", "invalid_frame"): "the source delivered an unusable frame (empty, not an image, unsupported dtype)",
    ("capture", "skipped"): "pipeline.frame_skipping: decoded only, while the previous frame still waited for the model",
    ("capture", "behind_schedule"): "a paced replay fell behind its schedule and skipped the frames already overdue",
    ("ring", "superseded"): "a newer frame of the stream was taken instead (drop-oldest)",
    ("ring", "overwritten"): "the capture process overwrote the slot before the batcher copied it",
    ("ring", "shutdown"): "still in the ring, not yet taken, when the monitor stopped",
    ("batcher", "stale"): "older than pipeline.max_frame_age_ms when batched",
    ("inference", "scoring_error"): "the scorer refused the frame even on its own (NaN or inf inside)",
}


MAP_KINDS = ("drawn", "carried", "expired")  # pipeline/map_carry.py: what an alerting frame with a scene map showed


def latency_buckets(frame_rate_hz: float) -> list[float]:
    """Histogram bounds in seconds at `FRAME_PERIOD_MULTIPLES` of 1 / frame_rate_hz."""
    return [round(m / frame_rate_hz, 6) for m in FRAME_PERIOD_MULTIPLES]


class Metrics:
    """The monitor's metrics, registered on `registry`. Label values are stream names."""

    def __init__(self, registry: CollectorRegistry, frame_rate_hz: float = 30.0, max_batch: int = 8) -> None:
        self.registry = registry
        r, p = registry, PREFIX
        buckets = latency_buckets(frame_rate_hz)
        self.frames_captured = Counter(f"{p}_frames_captured", "Frames the capture process read from the "
                                       "source (put in its ring, or dropped at stage capture)", ["stream"], registry=r)
        self.frames_processed = Counter(f"{p}_frames_processed", "Frames scored and published", ["stream"], registry=r)
        self.frames_dropped = Counter(f"{p}_frames_dropped", "Frames captured but never scored, by stage and "
                                      "reason", ["stream", "stage", "reason"], registry=r)
        self.frames_converted = Counter(f"{p}_frames_converted", "Frames delivered as grayscale, 16-bit or "
                                        "with alpha and converted to 8-bit BGR", ["stream"], registry=r)
        self.source_reconnects = Counter(f"{p}_source_reconnects", "Times a live source was re-opened after "
                                         "it failed", ["stream"], registry=r)
        self.alerts = Counter(f"{p}_alerts", "OOD alerts started", ["stream"], registry=r)
        self.frames_flagged = Counter(f"{p}_frames_flagged", "Frames published with a flag instead of a trusted "
                                      "score (reason: non_finite_logits, non_finite_score)", ["stream", "reason"],
                                      registry=r)
        self.explanation_maps = Counter(f"{p}_explanation_maps", "Alerting frames by the map they showed (map: "
                                        "drawn = a scene map drawn on the frame, carried = the stream's latest, "
                                        "expired = none recent enough: the deviation heatmap)", ["stream", "map"],
                                        registry=r)
        self.messages_published = Counter(f"{p}_messages_published", "ZeroMQ messages sent, by topic kind "
                                          "(result, alert, status, frame)", ["topic"], registry=r)
        self.viewer_frames_skipped = Counter(f"{p}_viewer_frames_skipped", "Scored frames not sent to "
                                             "viewers (reason: rate_limit, busy, gone)", ["stream", "reason"], registry=r)
        self.config_reloads = Counter(f"{p}_config_reloads", "Config file reloads (result: applied, "
                                      "rejected)", ["result"], registry=r)
        self.latency = Histogram(f"{p}_capture_to_result_latency_seconds", "From the frame's capture to its "
                                 "result being published", ["stream"], buckets=buckets, registry=r)
        self.inference_latency = Histogram(f"{p}_inference_latency_seconds", "Model forward and NERO "
                                           "scoring of one batch", buckets=buckets, registry=r)
        batch_bounds = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch})
        self.batch_frames = Histogram(f"{p}_batch_frames", "Frames per inference batch",
                                      buckets=[b for b in batch_bounds if b <= max_batch], registry=r)
        self.score_ratio = Histogram(f"{p}_ood_score_ratio", "NERO score divided by the alert threshold in "
                                     "force (1 = at the threshold)", ["stream"], buckets=SCORE_RATIO_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{p}_queue_depth_frames", "Frames in the stream's ring not yet taken by the "
                                 "batcher", ["stream"], registry=r)
        self.last_frame = Gauge(f"{p}_last_frame_timestamp_seconds", "Unix time of the stream's newest "
                                "captured frame", ["stream"], registry=r)
        self.last_result = Gauge(f"{p}_last_result_timestamp_seconds", "Unix time of the stream's newest "
                                 "published result", ["stream"], registry=r)
        self.alert_active = Gauge(f"{p}_alert_active", "1 while the stream is in OOD alert", ["stream"], registry=r)
        self.threshold = Gauge(f"{p}_alert_threshold", "NERO score threshold in force", ["stream"], registry=r)
        self.stream_stale = Gauge(f"{p}_stream_stale", "1 while the stream delivers no frames (silent longer "
                                  "than stale_after_s, reconnecting, or failed)", ["stream"], registry=r)
        self.capture_state = Enum(f"{p}_capture_state", "State of the stream's capture process", ["stream"],
                                  states=list(STATE_NAMES), registry=r)
        self.build = Info(f"{p}_build", "Version and back-end of this monitor", registry=r)
        self.startup_check_failed = Gauge(f"{p}_startup_check_failed", "1 when a start-up check failed and the "
                                          "process is about to exit (check: model_detector)", ["check"], registry=r)
        self._synced: dict[str, dict[str, int]] = {}

    def set_build(self, backend: str, model: str, detector: str, **extra: str) -> None:
        """stream_monitor_build_info{version, backend, model, detector, python, ...} 1."""
        self.build.info({"version": __version__, "backend": backend, "model": model, "detector": detector,
                         "python": platform.python_version(), **extra})

    def init_stream(self, stream: str) -> None:
        """Create the stream's series at zero so that rate() and absent() work from the first scrape."""
        self.frames_captured.labels(stream)
        self.frames_processed.labels(stream)
        for stage, reason in DROP_REASONS:
            self.frames_dropped.labels(stream, stage, reason)
        self.source_reconnects.labels(stream)
        self.frames_converted.labels(stream)
        for reason in ("non_finite_logits", "non_finite_score"):
            self.frames_flagged.labels(stream, reason)
        self.alerts.labels(stream)
        for kind in MAP_KINDS:
            self.explanation_maps.labels(stream, kind)
        self.latency.labels(stream)  # histograms: every bucket at zero
        self.score_ratio.labels(stream)
        self.queue_depth.labels(stream).set(0)
        # The timestamp gauges are left out on purpose: a zero would read as "silent since 1970".
        self.alert_active.labels(stream).set(0)
        self.stream_stale.labels(stream).set(0)
        self.capture_state.labels(stream).state("starting")
        self._synced[stream] = {"captured": 0, "errors": 0, "reconnects": 0, "invalid": 0, "converted": 0,
                                "skipped": 0, "late": 0}

    def sync_capture(self, stream: str, captured: int, errors: int, reconnects: int, state: RingState | int,
                     last_capture: float, backlog: int, invalid: int = 0, converted: int = 0,
                     skipped: int = 0, late: int = 0) -> None:
        """Bring the capture-side counters, kept in the ring header by the capture process, up to date."""
        seen = self._synced[stream]
        # Frames the capture process could not use were captured too (and dropped at stage "capture"), so
        # that captured = processed + dropped holds whatever the source delivers.
        captured += errors + invalid + skipped + late
        for key, value, counter in (("captured", captured, self.frames_captured.labels(stream)),
                                    ("errors", errors, self.frames_dropped.labels(stream, "capture", "read_error")),
                                    ("invalid", invalid, self.frames_dropped.labels(stream, "capture", "invalid_frame")),
                                    ("converted", converted, self.frames_converted.labels(stream)),
                                    ("skipped", skipped, self.frames_dropped.labels(stream, "capture", "skipped")),
                                    ("late", late, self.frames_dropped.labels(stream, "capture", "behind_schedule")),
                                    ("reconnects", reconnects, self.source_reconnects.labels(stream))):
            if value > seen[key]:
                counter.inc(value - seen[key])
                seen[key] = value
        self.capture_state.labels(stream).state(RingState.decode(state).label)
        if last_capture > 0:
            self.last_frame.labels(stream).set(last_capture)
        self.queue_depth.labels(stream).set(max(backlog, 0))

    def record_result(self, stream: str, *, latency_s: float, t_result: float, alert_active: bool,
                      score_ratio: float | None, flags: Sequence[str] = ()) -> None:
        """One published result: processed and published counts, latency, score ÷ threshold (None for a
        flagged frame, which is no measurement), last-result time, alert state, and its flags."""
        self.messages_published.labels("result").inc()
        self.frames_processed.labels(stream).inc()
        self.latency.labels(stream).observe(latency_s)
        if score_ratio is not None:
            self.score_ratio.labels(stream).observe(score_ratio)
        for reason in flags:
            self.frames_flagged.labels(stream, reason).inc()
        self.last_result.labels(stream).set(t_result)
        self.alert_active.labels(stream).set(1 if alert_active else 0)

    def dropped(self, stream: str, stage: str, reason: str, count: int = 1) -> None:
        if count > 0:
            self.frames_dropped.labels(stream, stage, reason).inc(count)


class DriftMetrics:
    """The stream-level drift signal ("input not validated"), on the same registry as `Metrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r, p = registry, PREFIX
        self.raised = Gauge(f"{p}_input_not_validated", "1 while the stream's footage is unlike the footage "
                            "the detector was validated on (drift signal raised)", ["stream"], registry=r)
        self.cusum = Gauge(f"{p}_drift_cusum", "Drift CUSUM statistic (log-likelihood ratio); raises at "
                           "stream_monitor_drift_cusum_threshold", ["stream"], registry=r)
        self.threshold = Gauge(f"{p}_drift_cusum_threshold", "Drift CUSUM raise threshold", ["stream"], registry=r)
        self.share = Gauge(f"{p}_drift_over_threshold_ratio", "Share of the recently sampled frames over the "
                           "alert threshold (drift.window_s)", ["stream"], registry=r)
        self.expected = Gauge(f"{p}_drift_expected_over_threshold_ratio", "Share over the threshold expected "
                              "on validated footage (drift.expected_share)", ["stream"], registry=r)
        self.raises = Counter(f"{p}_drift_raises", "Times the drift signal was raised", ["stream"], registry=r)

    def init_stream(self, stream: str, threshold: float, expected: float) -> None:
        self.raised.labels(stream).set(0)
        self.cusum.labels(stream).set(0)
        self.threshold.labels(stream).set(threshold)
        self.share.labels(stream).set(0)
        self.expected.labels(stream).set(expected)
        self.raises.labels(stream)
