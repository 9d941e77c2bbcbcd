"""The Grafana dashboard queries only what the monitor exports (enumerated from the real metrics
registry the inference process builds, not from a list typed here), and the provisioning files point at
it. Every query also runs against a real Prometheus scraping a real monitor in test_real_prometheus.py."""

from __future__ import annotations

import json

import yaml
from prometheus_client import CollectorRegistry, ProcessCollector

from stream_monitor.observability import Metrics
from stream_monitor.observability.metrics import DriftMetrics

from .conftest import DEPLOY
from .dashboard import DASHBOARDS, PROMETHEUS_SERIES, expressions, metric_names

# Sample names each metric family type is exposed under (Prometheus text format, prometheus-client).
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "info": ("_info",), "stateset": ("",), "summary": ("", "_count", "_sum", "_created")}


def exported_series() -> set[str]:
    """Every series name the inference process's registry can expose (observability.Metrics plus the
    process collector, registered exactly as pipeline/inference.py does, and the drift metrics that
    pipeline/loop.py adds when `drift.enabled`, the default)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Metrics(registry)
    DriftMetrics(registry)
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def test_the_registry_enumeration_sees_the_monitor_metrics():
    series = exported_series()
    assert "stream_monitor_frames_processed_total" in series
    assert "stream_monitor_capture_to_result_latency_seconds_bucket" in series
    assert "process_resident_memory_bytes" in series
    assert "stream_monitor_frames_processed" not in series  # counters only as _total


def test_metric_name_extraction():
    expr = ('1 - sum by (instance, stream) (rate(a_bucket{le="1.0", stream=~"$stream"}[$__rate_interval])) '
            '/ on (instance) group_left (x) b_count offset 5m > bool 0.5 and time() - c_seconds')
    assert metric_names(expr) == {"a_bucket", "b_count", "c_seconds"}


def test_every_metric_the_dashboard_queries_is_exported():
    assert DASHBOARDS
    exported = exported_series() | PROMETHEUS_SERIES
    for path in DASHBOARDS:
        queried = set().union(*(metric_names(e) for e in expressions(path)))
        assert queried, path
        assert queried - exported == set(), f"{path.name} queries series the monitor does not export"


def test_dashboard_covers_what_operators_watch():
    """Frames/s from counter rates, latency percentiles from histograms, drops by stage and reason, the
    OOD score distribution, and alerts — and never a rate() of something that is not a counter."""
    [path] = [p for p in DASHBOARDS if p.name == "stream-monitor.json"]
    exprs = expressions(path)
    joined = "\n".join(exprs)
    assert "rate(stream_monitor_frames_processed_total" in joined
    assert "histogram_quantile(0.99, sum by (instance, stream, le) (rate(stream_monitor_capture_to_result_latency_seconds_bucket" in joined
    assert "sum by (stream, stage, reason) (rate(stream_monitor_frames_dropped_total" in joined
    assert "stream_monitor_ood_score_ratio_bucket" in joined
    assert "stream_monitor_alert_active" in joined and "ALERTS{" in joined
    counters = {n for n in exported_series() if n.endswith(("_total", "_bucket", "_count", "_sum"))}
    for expr in exprs:
        for fn in ("rate(", "increase("):
            for piece in expr.split(fn)[1:]:
                assert metric_names(piece.split("[")[0]) <= counters, expr


def test_panels_are_laid_out_without_overlap():
    dashboard = json.loads(DASHBOARDS[0].read_text())
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_provisioning_points_at_the_dashboards_and_prometheus():
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "stream-monitor.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    grafana_mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"])
    # The provider's path is where compose mounts deploy/grafana/dashboards.
    assert grafana_mounts[provider["providers"][0]["options"]["path"]] == "../grafana/dashboards"
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [prometheus] = datasource["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
