"""Every way `stream-monitor run` stops leaves a clean log and honest counts (issue 16).

The regression: a SIGTERM to a monitor replaying a looping file printed six `sem_unlink ...
FileNotFoundError` tracebacks and "resource_tracker: There appear to be 6 leaked semaphore objects".
The cause was order: `run` stopped Python's resource tracker while the supervisor's two queues still held
their semaphores (3 each); the tracker unlinked them as "leaked", and their own finalizers then failed at
interpreter exit. Every test here reads the real command's captured stderr and refuses any traceback or
leak warning. The other stop paths (SIGTERM/SIGINT mid-stream, SIGHUP) are held by test_shutdown.py and
test_reload_signal.py with the same check (`assert_clean_log`).

Also here: SIGTERM while the model is still loading stops within 2 s (it used to wait for the load, ~10 s
on this machine, which Kubernetes' 30 s grace barely covers), and frames still in the ring when a monitor
stops are counted as dropped (ring, shutdown), so that the final status keeps captured = processed + dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream_monitor.pipeline.audit_chain import verify_chain
from stream_monitor.transport.collector import ResultCollector
from tests.commands.processes import default_sigint
from tests.commands.processes import group_alive as _group_alive

CLI = [sys.executable, "-m", "stream_monitor.cli"]
# What the start-up test asserts: 4 s from the signal to the last process of the group gone, on this
# shared 2-core machine with other suites beside it (as test_shutdown.py). Before the fix the stop waited
# for the whole model load. The operator-facing figure is measured by benchmarks/stop_time.py
# ("while the model loads" rows in benchmarks/results/stop_time-*).
STARTUP_STOP_BOUND_S = 4.0


def assert_clean_log(text: str) -> None:
    """No traceback and no resource-tracker warning anywhere in a monitor's output."""
    for marker in ("Traceback", "leaked", "FileNotFoundError", "Exception ignored"):
        assert marker not in text, f"{marker!r} in the monitor's output:\n{text}"


def _config(tmp_path: Path, live_model, clip: Path, port: int | None, source_extra: str = "loop: true",
            checkpoint: Path | None = None, max_batch: int = 8) -> Path:
    metrics = f"{{port: {port}}}" if port is not None else "{enabled: false}"
    config = tmp_path / "monitor.yaml"
    config.write_text(f"""\
version: 1
instance: cs{os.getpid()}{tmp_path.name[-6:].replace('_', '')}
streams:
  - name: endo
    source: {{kind: file, path: {clip}, {source_extra}}}
model: {{checkpoint: {checkpoint or live_model.checkpoint}, detector: {live_model.detector}, threads: 1}}
pipeline: {{max_frame_size: [640, 540], ring_slots: 8, max_batch: {max_batch}}}
transport: {{results: "ipc://{tmp_path}/results.sock", frames: null}}
metrics: {metrics}
audit: {{path: {tmp_path / 'alerts.jsonl'}}}
""")
    return config


def _get(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "run", "--config", str(config), "--no-reload"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_sigint)


def _finish(monitor: subprocess.Popen) -> tuple[str, str]:
    try:
        return monitor.communicate(timeout=60)
    finally:
        if _group_alive(monitor.pid):
            os.killpg(monitor.pid, signal.SIGKILL)
            monitor.communicate()


@pytest.mark.parametrize("how", ["sigterm-main", "sigterm-group", "sigint-group"])
def test_a_stop_signal_while_the_model_loads_stops_within_4_s_without_a_traceback(tmp_path, live_model, e2e_clip,
                                                                           free_port, how):
    port = free_port()
    # A long warm-up (one blank batch of 128 frames) keeps the model loading for a while even on a quiet
    # machine, so the signal really lands during start-up (with 8 it could finish first: a race, not a pass).
    monitor = _start(_config(tmp_path, live_model, e2e_clip.path, port, max_batch=128))
    try:
        deadline = time.monotonic() + 120
        while (answer := _get(f"http://127.0.0.1:{port}/healthz")) is None:
            assert monitor.poll() is None and time.monotonic() < deadline, "the monitor did not bind /healthz"
            time.sleep(0.05)
        assert answer[1].get("state") == "loading model", answer  # really during start-up
        sent = time.monotonic()
        if how == "sigterm-main":
            monitor.send_signal(signal.SIGTERM)
        else:
            os.killpg(monitor.pid, signal.SIGTERM if how == "sigterm-group" else signal.SIGINT)
        while _group_alive(monitor.pid) and time.monotonic() - sent < 30:
            monitor.poll()
            time.sleep(0.02)
        elapsed = time.monotonic() - sent
    finally:
        out, err = _finish(monitor)
    assert monitor.returncode == 0, err
    assert elapsed < STARTUP_STOP_BOUND_S, f"stopping during start-up took {elapsed:.2f} s\n{err}"
    if how == "sigterm-main":
        # Only the supervisor gets the signal: it abandons start() (StartupCancelled, logged as "stopping")
        # and stops the loading inference process itself, whose own "stopped during start-up" line may or
        # may not reach the log before it exits; the bound above is what shows the load was not awaited.
        assert "stopping" in err
    else:  # the inference process got the signal itself and abandoned the load
        assert "stopped during start-up" in err
    assert_clean_log(out + err)
    assert not Path(f"/dev/shm/sm-cs{os.getpid()}{tmp_path.name[-6:].replace('_', '')}-endo").exists()


def test_sigterm_mid_stream_counts_frames_left_in_the_ring_so_captured_is_processed_plus_dropped(
        tmp_path, live_model, e2e_clip):
    """A lossless replay at full speed keeps the ring full (the capture process waits for the model), so
    frames are always left in it when SIGTERM arrives; nothing else drops frames in a lossless replay, so
    every drop in the final status is one of them."""
    config = _config(tmp_path, live_model, e2e_clip.path, None, "loop: true, pace: max, lossless: true")
    statuses: list[dict] = []
    results = 0

    def on_message(message: dict) -> None:
        nonlocal results
        if message["type"] == "status":
            statuses.append(message)
        elif message["type"] == "result":
            results += 1

    collector = ResultCollector(on_message)
    collector.endpoint = f"ipc://{tmp_path}/results.sock"
    collector.start()
    monitor = _start(config)
    try:
        deadline = time.monotonic() + 120
        while results < 20:
            assert monitor.poll() is None, monitor.communicate()[1]
            assert time.monotonic() < deadline, "no results from the monitor"
            time.sleep(0.1)
        monitor.send_signal(signal.SIGTERM)
        out, err = _finish(monitor)
        deadline = time.monotonic() + 5
        while not any(s["state"] == "stopped" for s in statuses) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.stop()
        if monitor.poll() is None:
            _finish(monitor)
    assert monitor.returncode == 0, err
    assert_clean_log(out + err)
    final = [s for s in statuses if s["state"] == "stopped"]
    assert final, f"no final status received: {statuses}"
    final = final[-1]
    assert final["dropped"] > 0, final  # frames were waiting in the ring
    assert final["captured"] == final["processed"] + final["dropped"], final
    # The real monitor's audit log of this run is an intact hash chain, session_start to session_end.
    report = verify_chain([tmp_path / "alerts.jsonl"])
    assert report.ok and report.records >= 2, report.problem


def test_a_startup_failure_in_the_inference_process_logs_one_error_not_a_traceback(tmp_path, live_model, e2e_clip):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    corrupt.with_suffix(".json").write_text(live_model.checkpoint.with_suffix(".json").read_text())
    monitor = _start(_config(tmp_path, live_model, e2e_clip.path, None, checkpoint=corrupt))
    out, err = _finish(monitor)
    assert monitor.returncode == 1, err
    assert "model.checkpoint:" in err and str(corrupt) in err
    assert_clean_log(out + err)
