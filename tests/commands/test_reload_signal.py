"""SIGHUP to `stream-monitor run` re-reads the config at once (what `systemctl reload` sends), and is
never fatal: with `--no-reload` it is logged and ignored. Real processes, a real config file, /metrics.

To tell SIGHUP from the file watcher, the edited file keeps its size and gets its old modification time
back: the watcher (which compares mtime and size) cannot see the change, only SIGHUP can."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from .test_clean_stops import assert_clean_log

CLI = [sys.executable, "-m", "stream_monitor.cli"]


def _threshold(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    match = re.search(r'^stream_monitor_alert_threshold\{stream="endo"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def _wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the monitor exited while waiting for {what}: {process.stdout.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.parametrize("reload_enabled", [True, False], ids=["watched", "no-reload"])
def test_sighup_reloads_the_config_at_once_and_is_never_fatal(tmp_path, live_model, e2e_clip, free_port,
                                                              reload_enabled):
    port = free_port()
    config = tmp_path / "monitor.yaml"
    text = f"""\
version: 1
instance: hup{os.getpid()}{int(reload_enabled)}
streams:
  - name: endo
    source: {{kind: file, path: {e2e_clip.path}, loop: true}}
model: {{checkpoint: {live_model.checkpoint}, detector: {live_model.detector}, threads: 1}}
pipeline: {{max_frame_size: [640, 540]}}
alerts: {{threshold: 0.5}}
transport: {{results: "ipc://{tmp_path}/results.sock", frames: null}}
metrics: {{port: {port}}}
audit: {{path: {tmp_path / 'alerts.jsonl'}}}
"""
    config.write_text(text)
    args = [*CLI, "run", "--config", str(config)] + ([] if reload_enabled else ["--no-reload"])
    monitor = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        _wait_for(lambda: _threshold(port) == 0.5, 120, "the monitor to serve threshold 0.5", monitor)
        stamp = config.stat()
        config.write_text(text.replace("threshold: 0.5", "threshold: 0.9"))  # same size
        os.utime(config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        time.sleep(3)  # the watcher checks every second: it must not have noticed
        assert _threshold(port) == 0.5
        os.kill(monitor.pid, signal.SIGHUP)
        if reload_enabled:
            _wait_for(lambda: _threshold(port) == 0.9, 20, "the reloaded threshold 0.9", monitor)
        else:
            time.sleep(3)
            assert _threshold(port) == 0.5
        assert monitor.poll() is None, monitor.stdout.read()  # SIGHUP did not stop anything
    finally:
        if monitor.poll() is None:
            monitor.send_signal(signal.SIGTERM)
        output = monitor.communicate(timeout=60)[0]
    assert monitor.returncode == 0, output
    assert_clean_log(output)
    if not reload_enabled:
        assert "SIGHUP: nothing reloaded (started with --no-reload)" in output
