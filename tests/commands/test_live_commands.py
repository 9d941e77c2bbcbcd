"""The live commands as an operator runs them: `stream-monitor run` and `stream-monitor overlay` as
separate OS processes on TCP ports, a threshold changed in the config file while it runs, and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from stream_monitor.cli import main
from stream_monitor.demo.summary import metric, scrape
from stream_monitor.pipeline.audit import read_audit_log
from tests.commands.processes import group_alive as _group_alive

CLI = [sys.executable, "-m", "stream_monitor.cli"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return 0, ""


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _config_text(live_model, clip: Path, audit: Path, ports: dict[str, int], threshold: str) -> str:
    return f"""\
version: 1
instance: clitest{os.getpid()}
streams:
  - name: endo
    source: {{kind: file, path: {clip}, pace: native, loop: true}}
model: {{checkpoint: {live_model.checkpoint}, detector: {live_model.detector}, threads: 1}}
pipeline: {{max_frame_size: [640, 540]}}
alerts:
  threshold: {threshold}
  enter_n: 3
  enter_m: 5
transport: {{results: "tcp://127.0.0.1:{ports['results']}", frames: "tcp://127.0.0.1:{ports['frames']}"}}
metrics: {{port: {ports['metrics']}}}
audit: {{path: {audit}}}
"""


def test_run_overlay_reload_and_sigterm(tmp_path, live_model, e2e_clip, free_port, no_leaks):
    """Regression story: what clinical IT does on day one. Start the monitor from a YAML file, check
    /healthz and /readyz, attach a remote viewer over TCP (results + JPEG frames) that writes an MP4,
    raise the threshold by editing the file (applied without a restart: /metrics shows it), then stop
    the service with SIGTERM: exit status 0, the audit log closed with session_end, the shared-memory
    ring gone, no process left, and the viewer reports what it received."""
    ports = {"results": free_port(), "frames": free_port(), "metrics": free_port()}
    audit, config = tmp_path / "alerts.jsonl", tmp_path / "monitor.yaml"
    config.write_text(_config_text(live_model, e2e_clip.path, audit, ports, "null"))
    base = f"http://127.0.0.1:{ports['metrics']}"
    monitor = subprocess.Popen([*CLI, "run", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    viewer = None
    try:
        _wait_for(lambda: _get(base + "/readyz")[0] == 200 if monitor.poll() is None else pytest.fail(
            monitor.stdout.read()), 120, "/readyz")
        assert _get(base + "/healthz")[0] == 200
        viewer = subprocess.Popen([*CLI, "overlay", "--results", f"tcp://127.0.0.1:{ports['results']}",
                                   "--frames", f"tcp://127.0.0.1:{ports['frames']}", "--mp4", str(tmp_path / "view.mp4"),
                                   "--mp4-fps", "10", "--duration", "6"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples = _wait_for(lambda: scrape(_get(base + "/metrics")[1]), 10, "metrics")
        assert metric(samples, "stream_monitor_alert_threshold", stream="endo") == pytest.approx(live_model.threshold)

        config.write_text(_config_text(live_model, e2e_clip.path, audit, ports, "123.5"))
        _wait_for(lambda: metric(scrape(_get(base + "/metrics")[1]), "stream_monitor_alert_threshold",
                                 stream="endo") == 123.5, 15, "the reloaded threshold")
        samples = scrape(_get(base + "/metrics")[1])
        assert metric(samples, "stream_monitor_config_reloads_total", result="applied") == 1

        out, _ = viewer.communicate(timeout=60)
        assert viewer.returncode == 0, out
        assert "results lost in transport" in out
        received = int(out.split("overlay: ")[1].split(" results")[0])
        assert received > 0
        video = cv2.VideoCapture(str(tmp_path / "view.mp4"))
        assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
        video.release()
    finally:
        monitor.send_signal(signal.SIGTERM)
        try:
            out, _ = monitor.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(monitor.pid, signal.SIGKILL)
            out, _ = monitor.communicate()
        if viewer is not None and viewer.poll() is None:
            viewer.kill()
            viewer.communicate()
    assert monitor.returncode == 0, out
    records = read_audit_log(audit)
    assert records[0]["event"] == "session_start" and records[-1]["event"] == "session_end"
    # Every alert that started was closed (by the quiet period or at shutdown) before the session ended.
    starts = [r["alert_id"] for r in records if r["event"] == "alert_start"]
    assert starts == [r["alert_id"] for r in records if r["event"] == "alert_end"]
    assert not Path(f"/dev/shm/sm-clitest{os.getpid()}-endo").exists()  # the ring was unlinked
    # No process of the monitor's group is left (capture, inference, and Python's resource tracker,
    # which exits once its last client has).
    _wait_for(lambda: not _group_alive(monitor.pid), 10, f"the monitor's processes to exit: {_group(monitor.pid)}")


def _group(pgid: int) -> str:
    return subprocess.run(["ps", "-o", "pid,args", "-g", str(pgid)], capture_output=True, text=True).stdout


def test_validate_config_points_at_lines(tmp_path, capsys):
    """A config with a misspelt key and a wrong type fails with file:line:column for each problem."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstreams:\n  - name: a\n    source: {kind: file, path: x.mp4, lopp: true}\n"
                   "alerts:\n  enter_n: many\n")
    assert main(["validate-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:" in err and "streams[0].source.lopp: unknown key" in err
    assert f"{bad}:6:" in err and "alerts.enter_n" in err
    examples = sorted((Path(__file__).parents[2] / "configs").glob("*.example.yaml"))
    assert main(["validate-config", *map(str, examples)]) == 0
    assert capsys.readouterr().out.count(": OK") == len(examples) >= 3


def test_overlay_takes_its_endpoints_from_a_monitor_config():
    import argparse

    from stream_monitor.commands.overlay import _endpoints, _serve_address
    from stream_monitor.errors import InputError

    config = Path(__file__).parents[2] / "configs" / "monitor.example.yaml"
    flags = {"results": None, "frames": None, "ring": None, "stream": None, "local": False, "config": config}
    remote = _endpoints(argparse.Namespace(**flags))
    assert remote == ("tcp://127.0.0.1:5560", "tcp://127.0.0.1:5561", None, "tower")
    local = _endpoints(argparse.Namespace(**{**flags, "local": True}))
    assert local == ("tcp://127.0.0.1:5560", None, "sm-endo-room-1-tower", "tower")
    with pytest.raises(InputError, match="--results"):
        _endpoints(argparse.Namespace(**{**flags, "config": None}))
    assert _serve_address("8090") == ("127.0.0.1", 8090) and _serve_address("0.0.0.0:80") == ("0.0.0.0", 80)
