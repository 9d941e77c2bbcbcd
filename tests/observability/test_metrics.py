"""Metric names, units and documentation; the HTTP endpoints on a real port."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_monitor.observability import DROP_REASONS, Metrics, OpsServer, latency_buckets
from stream_monitor.observability.metrics import DriftMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _exported_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return names


def test_every_metric_is_named_by_convention_and_documented():
    """Regression story: a later issue writes Grafana dashboards and Prometheus rules from docs/metrics.md;
    a metric renamed in code but not there breaks them silently."""
    registry = CollectorRegistry()
    Metrics(registry)
    DriftMetrics(registry)  # the drift signal's metrics are exported on the same registry
    names = _exported_names(registry)
    documented = set(re.findall(r"^\| `(stream_monitor_[a-z_]+)`", DOC.read_text(), re.M))
    assert names == documented
    for name in names:
        assert re.fullmatch(r"stream_monitor_[a-z_]+", name)
    counters = [f.name for f in registry.collect() if f.type == "counter"]
    assert counters and all(not n.endswith("_total") for n in counters)  # client_python adds _total
    for stage, reason in DROP_REASONS:
        assert f"| `{stage}` | `{reason}` |" in DOC.read_text()


def test_latency_buckets_are_multiples_of_the_frame_period():
    assert latency_buckets(30)[:4] == [round(0.5 / 30, 6), round(1 / 30, 6), 0.05, round(2 / 30, 6)]
    assert latency_buckets(10)[-1] == 6.4


def test_capture_counters_are_synced_as_deltas_and_series_start_at_zero():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.init_stream("s")
    value = registry.get_sample_value
    assert value("stream_monitor_frames_dropped_total", {"stream": "s", "stage": "ring", "reason": "superseded"}) == 0
    assert value("stream_monitor_capture_to_result_latency_seconds_count", {"stream": "s"}) == 0
    assert value("stream_monitor_ood_score_ratio_bucket", {"stream": "s", "le": "+Inf"}) == 0
    assert value("stream_monitor_queue_depth_frames", {"stream": "s"}) == 0
    assert value("stream_monitor_last_frame_timestamp_seconds", {"stream": "s"}) is None  # not "since 1970"
    metrics.sync_capture("s", captured=10, errors=1, reconnects=0, state=1, last_capture=1.7e9, backlog=2)
    metrics.sync_capture("s", captured=15, errors=1, reconnects=1, state=2, last_capture=1.8e9, backlog=0)
    # 15 frames written to the ring + 1 the capture process could not read: captured counts what the
    # source delivered, so that captured = processed + dropped holds with capture-stage drops too.
    assert value("stream_monitor_frames_captured_total", {"stream": "s"}) == 16
    assert value("stream_monitor_frames_dropped_total", {"stream": "s", "stage": "capture", "reason": "read_error"}) == 1
    assert value("stream_monitor_source_reconnects_total", {"stream": "s"}) == 1
    assert value("stream_monitor_capture_state", {"stream": "s", "stream_monitor_capture_state": "reconnecting"}) == 1
    assert value("stream_monitor_last_frame_timestamp_seconds", {"stream": "s"}) == 1.8e9
    assert value("stream_monitor_queue_depth_frames", {"stream": "s"}) == 0


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_healthz_readyz_over_http():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_build("torch-cpu-reference", "m.pt", "d.npz")
    ready = {"ok": False}
    server = OpsServer(registry, lambda: (True, {"loop_age_s": 0.1}),
                       lambda: (ready["ok"], {"streams": {}}), port=0).start()
    try:
        status, content_type, body = _get(server.url + "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert 'stream_monitor_build_info{backend="torch-cpu-reference"' in body
        assert _get(server.url + "/healthz")[0] == 200
        status, _, body = _get(server.url + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "fail"
        ready["ok"] = True
        assert _get(server.url + "/readyz")[0] == 200
        assert _get(server.url + "/nothing")[0] == 404
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/metrics", timeout=2)
