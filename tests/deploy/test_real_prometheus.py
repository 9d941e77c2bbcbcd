"""A real Prometheus scraping a real monitor: `stream-monitor run` replays the demo's ID → OOD → ID clip
of real frames (../shared/data) in a loop through the bundled model and detector, Prometheus (Debian's package) scrapes it every second
on loopback with the repo's alert rules loaded, and its HTTP API answers `rate()` and
`histogram_quantile()` — checked against the results the monitor published on ZeroMQ, recorded by a
subscriber in this test. Regression story: dashboards and alerts are only as good as the series behind
them; a histogram observed in the wrong unit, a counter incremented twice, or a rule that errors on real
data all pass unit tests and break here."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import yaml

from stream_monitor.demo.clip import assemble_demo_clip

from .conftest import RULES, tool
from .live import MonitorProcess, Prometheus, ResultRecorder, http_get, wait_for
from .promql import bucket_quantile, extrapolated_rate

STREAM = "endo"
WINDOW_S = 20
SCRAPE_S = 1
LATENCY = "stream_monitor_capture_to_result_latency_seconds"
RATIO = "stream_monitor_ood_score_ratio"


def _monitor_config(folder: Path, clip: Path, ports: dict[str, int]) -> Path:
    config = {
        "version": 1, "instance": f"promtest{os.getpid()}",
        "streams": [{"name": STREAM, "source": {"kind": "file", "path": str(clip), "pace": 15, "loop": True}}],
        "model": {"backend": "torch-cpu", "precision": "fp32", "threads": 1, "heatmap": False},
        "pipeline": {"max_frame_size": [640, 540]},
        "transport": {"results": f"tcp://127.0.0.1:{ports['results']}", "frames": None, "heatmap": False},
        "metrics": {"port": ports["metrics"]},
        "audit": {"path": str(folder / "alerts.jsonl")},
    }
    path = folder / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _prometheus_config(folder: Path, metrics_port: int) -> Path:
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(RULES / "*.rules.yml")],
        "scrape_configs": [{"job_name": "stream-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, shared_data):
    """(prometheus, recorder, monitor) after Prometheus has scraped the scoring monitor for ~30 s."""
    import socket

    def port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    binary = tool("prometheus")
    folder = tmp_path_factory.mktemp("real-prometheus")
    ports = {"metrics": port(), "results": port(), "prometheus": port()}
    # The demo's ID → OOD → ID clip (real frames), looped: about every 8 s an OOD alert starts and ends, so
    # the dashboard's alert annotation (alert starts in the last minute) has data while Prometheus scrapes.
    # (A clip that is OOD throughout opens one alert before the first scrape and never ends it.)
    clip = assemble_demo_clip(folder / "clip.mp4", fps=15, hold=2, id_images=20, ood_images=20).path
    recorder = ResultRecorder(f"tcp://127.0.0.1:{ports['results']}", STREAM)
    monitor = MonitorProcess(_monitor_config(folder, clip, ports), folder / "monitor.log")
    prometheus = None
    try:
        base = f"http://127.0.0.1:{ports['metrics']}"
        wait_for(lambda: http_get(base + "/readyz")[0] == 200 if monitor.alive() else pytest.fail(
            f"the monitor exited: {monitor.log.read_text()[-3000:]}"), 240, "the monitor's /readyz")
        prometheus = Prometheus(binary, _prometheus_config(folder, ports["metrics"]), folder, ports["prometheus"])
        wait_for(lambda: http_get(prometheus.url + "/-/ready")[0] == 200 if prometheus.process.poll() is None
                 else pytest.fail(prometheus.log.read_text()[-3000:]), 120, "Prometheus to be ready")
        # 1.5 windows of scrapes of a monitor that is scoring frames.
        wait_for(lambda: prometheus.query(f'count_over_time({LATENCY}_count{{stream="{STREAM}"}}[{int(WINDOW_S * 1.5)}s])'
                                          f' >= {int(WINDOW_S * 1.5 / SCRAPE_S * 0.9)}'), 240, "30 s of scrapes")
        yield prometheus, recorder, monitor
    finally:
        code = monitor.stop()
        if prometheus is not None:
            prometheus.stop()
        recorder.close()
    assert code == 0, monitor.log.read_text()[-3000:]
    wait_for(lambda: not monitor.group_alive(), 30, "the monitor's processes to exit")
    assert not Path(f"/dev/shm/sm-promtest{os.getpid()}-{STREAM}").exists()


def _window(prometheus: Prometheus, series: str, at: float) -> list[tuple[float, float]]:
    """The raw samples `series[WINDOW_S]` selects at `at` (what rate() at `at` works on)."""
    [result] = prometheus.query(f"{series}[{WINDOW_S}s]", at)
    return [(float(t), float(v)) for t, v in result["values"]]


def _evaluation_time() -> float:
    # A little in the past, so that the window's last scrape is ingested and the recorder has its results.
    return round(time.time() - 3 * SCRAPE_S, 3)


def _complete_results(recorder: ResultRecorder) -> list[dict]:
    """Every result the monitor published so far, in order; fails if the recorder missed any."""
    results = recorder.snapshot()
    assert results and results[0]["prev_seq"] == 0, "the recorder did not see the first result"
    for before, after in zip(results, results[1:]):
        assert after["prev_seq"] == before["seq"], f"result lost between seq {before['seq']} and {after['seq']}"
    return results


def test_prometheus_scrapes_the_monitor_and_evaluates_every_rule(scraped):
    prometheus, _, _ = scraped
    # Scraped successfully within the last 10 s (one slow scrape on a loaded machine is not a failure).
    [up] = prometheus.query('max_over_time(up{job="stream-monitor"}[10s])')
    assert up["value"][1] == "1"
    expected = {rule.get("alert") or rule.get("record") for path in RULES.glob("*.rules.yml")
                for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]}

    def evaluated() -> dict[str, str]:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return {r["name"]: (r["health"], r.get("lastError", "")) for r in rules}

    # Every rule of the repo was loaded and evaluated against the live series without an error.
    health = wait_for(lambda: (h := evaluated()) and all(v[0] != "unknown" for v in h.values()) and h, 60,
                      "every rule to be evaluated")
    assert set(health) == expected
    assert {name: v for name, v in health.items() if v != ("ok", "")} == {}


def test_rate_of_frames_processed_matches_the_published_results(scraped):
    """rate() is the frames/s panel of the dashboard and the base of the drop-ratio alerts."""
    prometheus, recorder, _ = scraped
    at = _evaluation_time()
    series = f'stream_monitor_frames_processed_total{{stream="{STREAM}"}}'
    samples = _window(prometheus, series, at)
    published = sorted(r["t_result"] for r in _complete_results(recorder))
    # Every scraped value is the number of results published by the scrape (Prometheus stamps the
    # start of a scrape; the counter is read a little later and is incremented just after t_result).
    for t, value in samples:
        assert sum(p < t - 0.5 for p in published) <= value <= sum(p < t + 2.0 for p in published), (t, value)
    [answer] = prometheus.query(f"rate({series}[{WINDOW_S}s])", at)
    rate = float(answer["value"][1])
    assert rate == pytest.approx(extrapolated_rate(samples, at - WINDOW_S, at, WINDOW_S), rel=1e-9)
    # And against the subscriber's own count: extrapolation reaches at most ~1 scrape interval past
    # the first and last sample at the window's average rate, so it may be off by that many frames.
    count = sum(at - WINDOW_S < p <= at for p in published)
    per_interval = max(sum(t <= p < t + 1.5 * SCRAPE_S for p in published) for t, _ in samples)
    assert abs(rate * WINDOW_S - count) <= 2 * per_interval + 2, (rate, count, per_interval)
    assert rate > 0


def _expected_quantile(prometheus: Prometheus, histogram: str, values: list[float], q: float, at: float) -> float:
    """histogram_quantile(q, rate(histogram_bucket[W])) at `at`, computed from the published values.

    The `_count` samples of the window say how many results had been observed at each scrape; the
    bucket values at that scrape are then counts over the first that-many published values."""
    counts = _window(prometheus, f'{histogram}_count{{stream="{STREAM}"}}', at)
    bounds = sorted({float(s["metric"]["le"]) for s in prometheus.query(f'{histogram}_bucket{{stream="{STREAM}"}}', at)})
    assert len(values) >= counts[-1][1]
    rates = {}
    for bound in bounds:
        bucket = [(t, float(sum(v <= bound for v in values[:int(n)]))) for t, n in counts]
        rates[bound] = extrapolated_rate(bucket, at - WINDOW_S, at, WINDOW_S)
    return bucket_quantile(q, rates)


@pytest.mark.parametrize("histogram, field", [(LATENCY, "latency_s"), (RATIO, "ratio")])
def test_histogram_quantile_matches_the_published_results(scraped, histogram, field):
    """The latency percentiles (dashboard, p99 SLO alert) and the OOD score distribution come from
    histograms; Prometheus's quantiles must equal what the published per-frame values give."""
    prometheus, recorder, _ = scraped
    at = _evaluation_time()
    values = [r[field] for r in _complete_results(recorder)]
    for q in (0.5, 0.9, 0.99):
        [answer] = prometheus.query(f'histogram_quantile({q}, rate({histogram}_bucket{{stream="{STREAM}"}}[{WINDOW_S}s]))', at)
        got = float(answer["value"][1])
        expected = _expected_quantile(prometheus, histogram, values, q, at)
        assert math.isfinite(got) and got == pytest.approx(expected, rel=1e-9), (q, got, expected)
    if histogram == LATENCY:  # seconds, not milliseconds: a frame on a CPU takes 10 ms – 3 s here
        assert 0.005 < got < 5.0


# Panels that are empty on a healthy monitor that nobody touched: no Prometheus alert fires, no
# start-up check failed, and the config-reload counter's `result` series appear with the first reload.
_EMPTY_WHEN_HEALTHY = ("ALERTS{", "stream_monitor_startup_check_failed", "stream_monitor_config_reloads_total")


def test_every_dashboard_query_answers_from_the_live_monitor(scraped):
    """Each expression of the Grafana dashboard, as Grafana would send it with every monitor and stream
    selected, is valid PromQL for this Prometheus and returns series from the real monitor."""
    from .dashboard import DASHBOARDS, expressions, instantiate

    prometheus, _, _ = scraped
    for path in DASHBOARDS:
        for expr in expressions(path):
            result = prometheus.query(instantiate(expr, f"{5 * SCRAPE_S}s"))
            if not any(marker in expr for marker in _EMPTY_WHEN_HEALTHY):
                assert result, f"{path.name}: no data for {expr}"
