"""The drift signal in the live loop: one `DriftMonitor` per stream fed every scored frame, its state in
each result message (`drift`), in Prometheus, and its raise / clear events in the audit log.

The per-frame question is the alert's own (raw score over the threshold in force), so the two signals
speak about the same detector; the drift monitor only looks at one frame per `sample_interval_s`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from ..config import DriftConfig
from ..observability.metrics import DriftMetrics
from ..site.drift import DriftMonitor, design

__all__ = ["StreamDrift"]

log = logging.getLogger(__name__)


class StreamDrift:
    def __init__(self, config: DriftConfig, streams: Iterable[str], registry: CollectorRegistry, audit) -> None:
        self.config, self.audit = config, audit
        self.design = design(config.expected_share, config.raise_share,
                             config.false_raise_hours * 3600 / config.sample_interval_s)
        window = max(1, round(config.window_s / config.sample_interval_s))
        self.monitors = {s: DriftMonitor(self.design, config.sample_interval_s, window) for s in streams}
        self.metrics = DriftMetrics(registry)
        for stream in self.monitors:
            self.metrics.init_stream(stream, self.design.threshold, config.expected_share)

    def update(self, stream: str, seq: int, score: float, threshold: float, t_capture: float) -> dict:
        """Feed one scored frame; returns the `drift` field of its result message."""
        over = None if not math.isfinite(score) else score > threshold
        state, event = self.monitors[stream].update(over, t_capture)
        m = self.metrics
        m.raised.labels(stream).set(1 if state.raised else 0)
        m.cusum.labels(stream).set(state.cusum)
        m.share.labels(stream).set(state.recent_share)
        if event is not None:
            self.audit.write(f"drift_{event}", stream=stream, seq=seq, t_capture=t_capture,
                             share=state.recent_share, expected=state.expected_share, decisions=state.decisions)
            if event == "raise":
                m.raises.labels(stream).inc()
                log.warning("%s: input not validated — %.0f%% of sampled frames over the threshold (expected "
                            "%.0f%%)", stream, 100 * state.recent_share, 100 * state.expected_share)
            else:
                log.warning("%s: input validated again", stream)
        return state.to_message()
