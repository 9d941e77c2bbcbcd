"""What a run did, from the messages a subscriber received: throughput, latency percentiles, alerts and
when they fired against the clip's ID / OOD segments. Used by `stream-monitor demo` and the benchmarks.

Alert timing on a clip with known segments: an alert that *starts* inside an ID segment is a false
alert (one that started in an OOD segment and is still held into the next ID segment is not); the delay
of an OOD segment is from its first frame's capture to the capture of the frame that started the alert,
plus that frame's capture→result latency — i.e. until the alert was on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .clip import ClipInfo

__all__ = ["RunRecord", "alert_timing", "latency_summary", "scrape"]


@dataclass
class RunRecord:
    """Messages of one stream, as a subscriber received them."""

    results: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)

    def add(self, message: dict) -> None:
        if message["type"] == "result":
            # Keep what the summary needs; the heatmap and neuron lists are not.
            self.results.append({k: message[k] for k in ("seq", "prev_seq", "t_capture", "t_result", "latency_s", "score",
                                                         "threshold", "over_threshold", "class_name", "batch_size")}
                                | {"alert": message["alert"]["active"]}
                                | ({"drift": message["drift"]} if "drift" in message else {}))
        elif message["type"] == "alert":
            self.alerts.append(message)


def latency_summary(latencies_s: list[float]) -> dict:
    """p50 / p95 / p99 / max in milliseconds."""
    if not latencies_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    values = np.asarray(latencies_s) * 1000
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1),
            "max_ms": round(float(values.max()), 1)}


def alert_timing(record: RunRecord, clip: ClipInfo) -> dict:
    """False alerts per minute of ID footage and the detection delay of each OOD segment.

    Frame index = seq − 1 (a replay starts at the clip's first frame and does not loop).
    """
    latency_by_seq = {r["seq"]: r["latency_s"] for r in record.results}
    starts = [a for a in record.alerts if a["event"] == "start"]
    events = []
    for alert in starts:
        frame = alert["seq"] - 1
        segment = clip.segment_of(min(max(frame, 0), clip.frames - 1))
        events.append({"alert_id": alert["alert_id"], "frame": frame, "clip_time_s": round(frame / clip.fps, 2),
                       "segment": segment.label, "segment_start_s": segment.start_s})
    id_seconds = sum(s.stop_s - s.start_s for s in clip.segments if s.label == "ID")
    false_alerts = [e for e in events if e["segment"] == "ID"]
    delays = []
    for segment in (s for s in clip.segments if s.label == "OOD"):
        hit = next((a for a in starts if segment.start <= a["seq"] - 1 < segment.stop), None)
        first = next((r for r in record.results if r["seq"] - 1 >= segment.start), None)
        already = first is not None and first["seq"] - 1 < segment.stop and first["alert"]
        delay = None
        if already:  # an alert that started earlier was still on when the segment began
            delay = 0.0
        elif hit is not None:
            delay = round((hit["seq"] - 1 - segment.start) / clip.fps + latency_by_seq.get(hit["seq"], 0.0), 3)
        delays.append({"segment": f"{segment.source} {segment.start_s:.1f}–{segment.stop_s:.1f} s",
                       "detected": delay is not None, "already_alerting": bool(already), "delay_s": delay})
    return {"alerts": events, "false_alerts": len(false_alerts), "id_minutes": round(id_seconds / 60, 3),
            "false_alerts_per_minute": round(len(false_alerts) / (id_seconds / 60), 2) if id_seconds else None,
            "ood_segments": delays}


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))
