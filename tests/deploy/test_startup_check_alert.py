"""The detector/model mismatch alert end to end: a monitor deployed with a classifier the bundled NERO
detector was not fitted on (its head retrained, as after a model update without refitting) refuses to
start; before it exits it serves stream_monitor_startup_check_failed, a real Prometheus scrapes it and
fires StreamMonitorStartupCheckFailed from deploy/prometheus/rules, and the process exits non-zero.
Regression story: a crash-looping monitor shows in Prometheus only as `up == 0` — the operator must be
told why, or they restart it for ever."""

from __future__ import annotations

import json
import os
import socket
import time

import yaml

from stream_monitor import bundled

from .conftest import RULES, tool
from .live import MonitorProcess, Prometheus, http_get, wait_for


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _retrained_checkpoint(folder):
    """The bundled classifier with its head changed, and a sidecar that vouches for the new weights."""
    import torch

    from stream_monitor.models.registry import sha256_file

    state = torch.load(bundled.MODEL, map_location="cpu", weights_only=True)
    head = next(k for k, v in state.items() if v.ndim == 2 and v.shape[0] == 3)
    state[head] = state[head] * 1.5
    path = folder / "retrained.pt"
    torch.save(state, path)
    meta = json.loads(bundled.MODEL.with_suffix(".json").read_text())
    meta["weights_sha256"] = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_mismatched_detector_is_visible_to_prometheus_and_exits_nonzero(tmp_path, shared_data, no_leaks):
    binary = tool("prometheus")
    ports = {"metrics": _port(), "results": _port(), "prometheus": _port()}
    config = tmp_path / "monitor.yaml"
    config.write_text(yaml.safe_dump({
        "version": 1, "instance": f"mismatch{os.getpid()}",
        "streams": [{"name": "endo", "source": {"kind": "file", "pace": 10, "loop": True,
                                                "path": str(shared_data / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4")}}],
        "model": {"checkpoint": str(_retrained_checkpoint(tmp_path)), "detector": None, "backend": "torch-cpu",
                  "threads": 1},
        "transport": {"results": f"tcp://127.0.0.1:{ports['results']}", "frames": None},
        "metrics": {"port": ports["metrics"]},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    }))
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "startup.rules.yml")],
        "scrape_configs": [{"job_name": "stream-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{ports['metrics']}"]}]}]}))
    prometheus = Prometheus(binary, prometheus_config, tmp_path, ports["prometheus"])
    started = time.monotonic()
    monitor = MonitorProcess(config, tmp_path / "monitor.log")
    try:
        base = f"http://127.0.0.1:{ports['metrics']}"
        body = wait_for(lambda: (r := http_get(base + "/metrics"))[0] == 200
                        and "stream_monitor_startup_check_failed{" in r[1] and r[1], 120, "the failure gauge")
        assert 'stream_monitor_startup_check_failed{check="model_detector"} 1.0' in body
        # Alive (the exit is deliberate, no point restarting it faster), never ready, and says why.
        assert http_get(base + "/healthz")[0] == 200
        status, ready = http_get(base + "/readyz")
        assert status == 503 and "fitted on a different classifier head" in json.loads(ready)["error"], ready

        def firing():
            return [a for a in prometheus.api("alerts")["alerts"]
                    if a["labels"]["alertname"] == "StreamMonitorStartupCheckFailed" and a["state"] == "firing"]

        [alert] = wait_for(firing, 60, "StreamMonitorStartupCheckFailed to fire in Prometheus")
        assert alert["labels"]["check"] == "model_detector"
        assert alert["labels"]["instance"] == f"127.0.0.1:{ports['metrics']}"
        code = wait_for(lambda: monitor.process.poll(), 120, "the monitor to exit")
        assert code == 1, monitor.log.read_text()[-3000:]
        # It stayed scrapeable for the promised 30 s (two scrapes at the default 15 s interval).
        assert time.monotonic() - started >= 30
        # The exit is what systemd / Kubernetes restart; the alert keeps firing across the gap.
        wait_for(lambda: prometheus.query('up{job="stream-monitor"} == 0'), 30, "up == 0 after the exit")
        assert firing()
    finally:
        monitor.stop()
        prometheus.stop()
    log = monitor.log.read_text()
    assert "model / detector check failed" in log
    wait_for(lambda: not monitor.group_alive(), 30, "the monitor's processes to exit")
    assert not os.path.exists(f"/dev/shm/sm-mismatch{os.getpid()}-endo")
