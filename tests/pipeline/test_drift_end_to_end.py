"""The drift signal through the real live path: processes, shared memory, ZeroMQ, /metrics, audit log.

The test clip is short (4.8 s: ID → OOD → ID), so the drift monitor is told to decide on every frame
(`sample_interval_s: 0.1` at 10 fps) — what is checked is the plumbing and the order of events, not the
default time scale, which tests/site and docs/results/domain-shift measure.
"""

from __future__ import annotations

import urllib.request

from stream_monitor.config import MonitorConfig
from stream_monitor.demo.summary import RunRecord, metric, scrape
from stream_monitor.pipeline.audit import read_audit_log
from stream_monitor.pipeline.supervisor import Monitor
from stream_monitor.transport.collector import ResultCollector


def test_input_not_validated_is_raised_on_the_ood_segment_and_reported_everywhere(tmp_path, live_model, e2e_clip):
    config = MonitorConfig.model_validate({
        "instance": f"d{tmp_path.name[-12:].replace('_', '')}",
        "streams": [{"name": "endo", "source": {"kind": "file", "path": str(e2e_clip.path)}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540], "ring_slots": 32},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": None},
        "metrics": {"port": 0},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
        "alerts": {"threshold": e2e_clip.threshold, "enter_n": 3, "enter_m": 5, "clear_after_s": 0.5},
        "drift": {"sample_interval_s": 0.1},
    })
    record = RunRecord()
    collector = ResultCollector(record.add)
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
    try:
        endpoints = monitor.start()
        assert monitor.wait(120, until_done=True), "the replay did not finish in time"
        text = urllib.request.urlopen(endpoints.metrics_url + "/metrics", timeout=10).read().decode()
    finally:
        codes = monitor.stop()
        collector.stop()
    assert all(code == 0 for code in codes.values()), codes

    assert all("drift" in r for r in record.results)
    first_id = [r for r in record.results if e2e_clip.label_of(r["seq"] - 1) == "ID" and r["seq"] - 1 < 16]
    assert first_id and not any(r["drift"]["raised"] for r in first_id)
    raised = [r["seq"] for r in record.results if r["drift"]["raised"]]
    assert raised and e2e_clip.label_of(raised[0] - 1) == "OOD"

    audit = [r for r in read_audit_log(tmp_path / "alerts.jsonl") if r["event"].startswith("drift_")]
    assert audit[0]["event"] == "drift_raise" and audit[0]["seq"] == raised[0]
    samples = scrape(text)
    assert metric(samples, "stream_monitor_drift_raises_total", stream="endo") == 1
    assert metric(samples, "stream_monitor_drift_expected_over_threshold_ratio", stream="endo") == 0.05
