"""Prometheus metrics of the stream-level drift signal ("input not validated"), registered on the same
registry as the monitor's other metrics (listed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .metrics import PREFIX

__all__ = ["DriftMetrics"]


class DriftMetrics:
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
