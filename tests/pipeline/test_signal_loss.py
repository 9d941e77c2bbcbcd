"""A camera that hangs, vanishes and comes back (issue 5, item 1).

We cannot unplug a USB camera in CI, so the device is a live `FrameSource` whose opens and reads follow
a script (frames at 30 fps, a hang, a disconnect, failed re-opens, a reconnect). Everything around it is
real: the capture process's own loop (its `main()`, in a thread so the source can be injected), a
shared-memory ring, the wake-up socket, the inference loop with its batcher, alert state machine, audit
log and metrics, and a ZeroMQ subscriber that sees the results, alerts and status messages.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import zmq
from prometheus_client import CollectorRegistry

from stream_monitor.capture import process as capture_process
from stream_monitor.capture.process import CaptureProcess
from stream_monitor.capture.ring import FrameRing
from stream_monitor.capture.sources import FrameSource, SourceError
from stream_monitor.config import CameraSource, MonitorConfig, ScopeMaskConfig
from stream_monitor.observability import Metrics
from stream_monitor.pipeline.audit import AuditLog, read_audit_log
from stream_monitor.pipeline.batcher import Batcher
from stream_monitor.pipeline.loop import InferenceLoop
from stream_monitor.preprocess import IMAGENET_MEAN, IMAGENET_STD
from stream_monitor.service import Flag
from stream_monitor.transport.schema import decode
from stream_monitor.transport.sockets import Publisher, drain, make_subscriber

OOD, ID = 200, 0  # grey levels of the camera's frames; the scorer below gives score = level / 100
BACKOFF_S = (0.1, 0.2, 0.4)


class RedScorer:
    """score = the first pixel's red level / 100: grey 200 → 2.0 (over the threshold of 1), 0 → 0."""

    def score_batch(self, images):
        from types import SimpleNamespace

        red = np.rint((images[:, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255)
        n, score = len(red), red / 100.0
        return SimpleNamespace(probs=np.tile([0.9, 0.1], (n, 1)), score=score, distance=score, bias_term=np.zeros(n),
                               rho=np.ones(n), top_neurons=np.zeros((n, 1), int), deviations=np.zeros((n, 1)),
                               heatmaps=None)


class ScriptedCamera:
    """The camera's life: open → 6 OOD frames, a 3 s hang, 1 OOD frame, 1 s of nothing (less than
    stale_after_s = 1.5 s: the loop sees the stream running again), disconnect; 3 failed re-opens;
    open → 1 OOD frame, then ID frames until the test stops."""

    def __init__(self, stop: Flag) -> None:
        self.stop, self.opens, self.open_times = stop, 0, []

    def open(self, config, threads=1):
        self.opens += 1
        self.open_times.append(time.monotonic())
        if self.opens == 1:
            return _Session([OOD] * 6 + ["hang"] + [OOD, "pause"], self.stop)
        if self.opens <= 4:
            raise SourceError("cannot open camera 0 with OpenCV")  # unplugged
        return _Session([OOD] + [ID] * 10_000, self.stop)


class _Session(FrameSource):
    live, description = True, "scripted camera"

    def __init__(self, script: list, stop: Flag) -> None:
        self.script, self.stop = list(script), stop

    def read(self):
        if not self.script:
            return None  # OpenCV's read() after the device disappeared
        step = self.script.pop(0)
        if step == "hang":
            self.stop.wait(3.0)
            step = self.script.pop(0)
        if step == "pause":  # long enough for the loop to see the stream running again, not stale
            self.stop.wait(1.0)
            return None
        self.stop.wait(1 / 30)
        return np.full((48, 64, 3), step, np.uint8)


def test_a_camera_that_hangs_and_vanishes_is_marked_stale_reconnected_with_backoff_and_alerts_reset(
        tmp_path, monkeypatch):
    """What happens, in order: 6 OOD frames open alert 1; the camera hangs (frames stop, the device
    stays open) → after stale_after_s the stream is `stale`, /metrics stream_stale is 1, alert 1 ends
    with reason `signal_lost` (audited) and the entry window is cleared; frames resume → `running`,
    one OOD frame (1 of 3 over: no alert); the camera disconnects → `reconnecting`, the window is
    cleared again; 3 re-opens fail with growing back-off; the 5th open works → `running`,
    reconnects_total = 1. Its first frame is OOD and starts no alert — it would have (2 of 3 over), had
    the window kept the frame from before the gap. Nothing crashes: both loops run until stopped."""
    stop_capture, stop_loop = Flag(), threading.Event()
    camera = ScriptedCamera(stop_capture)
    monkeypatch.setattr(capture_process, "open_source", camera.open)
    monkeypatch.setattr(capture_process, "_BACKOFF_S", BACKOFF_S)
    config = MonitorConfig.model_validate({
        "streams": [{"name": "cam", "source": {"kind": "camera", "device": 0}}],
        "alerts": {"threshold": 1.0, "enter_n": 2, "enter_m": 3, "clear_after_s": 30.0},
        "metrics": {"stale_after_s": 1.5}, "transport": {"frames": None}})
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 8, (64, 48), 8)
    context = zmq.Context()
    wakeups = context.socket(zmq.PULL)
    wakeups.bind(f"ipc://{tmp_path}/wake.sock")
    publisher = Publisher(context, f"ipc://{tmp_path}/results.sock", hwm=10_000)
    subscriber = make_subscriber(context, publisher.endpoint, [b"result/", b"alert/", b"status/"], hwm=10_000)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    audit = AuditLog(tmp_path / "alerts.jsonl", "test")
    batcher = Batcher({"cam": ring}, wakeups, max_batch=4, max_wait_s=0.0, on_drop=metrics.dropped)
    loop = InferenceLoop(config, RedScorer(), ["a", "b"], 99.0, {"cam": ring}, batcher, publisher, metrics, audit)
    capture = CaptureProcess("cam", CameraSource(kind="camera", device=0), ScopeMaskConfig(mode="off"), ring.name,
                             f"ipc://{tmp_path}/wake.sock", stop_capture, None)
    failures: list[BaseException] = []

    def guarded(target):
        def run():
            try:
                target()
            except BaseException as exc:  # reported below: a crash in either loop fails the test
                failures.append(exc)
        return threading.Thread(target=run)

    threads = [guarded(capture.main), guarded(lambda: loop.run(stop_loop.is_set))]
    messages: list[dict] = []
    stale_seen = []
    try:
        assert publisher.wait_for_subscribers(b"status/", 1, 10)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while not (camera.opens >= 5 and sum(1 for m in messages if m["type"] == "result"
                                             and m["seq"] > 8 and m["score"] == 0) >= 10):
            assert time.monotonic() < deadline, f"stalled: opens={camera.opens}, messages={len(messages)}"
            assert not failures, failures
            time.sleep(0.05)
            messages += [decode(parts[-1].buffer) for parts in drain(subscriber)]
            stale_seen.append(registry.get_sample_value("stream_monitor_stream_stale", {"stream": "cam"}))
    finally:
        stop_capture.set()
        stop_loop.set()
        for thread in threads:
            thread.join(10)
        time.sleep(0.1)
        messages += [decode(parts[-1].buffer) for parts in drain(subscriber)]
        audit.close()
        subscriber.close(linger=0)
        publisher.close()
        wakeups.close(linger=0)
        context.term()
        ring.close()
        ring.unlink()
    assert not failures and not any(t.is_alive() for t in threads)

    states = [m["state"] for m in messages if m["type"] == "status"]
    assert states == ["running", "stale", "running", "reconnecting", "running"]
    alerts = [(m["event"], m["alert_id"], m["reason"]) for m in messages if m["type"] == "alert"]
    assert alerts == [("start", 1, None), ("end", 1, "signal_lost")]
    audited = [(r["event"], r.get("reason")) for r in read_audit_log(tmp_path / "alerts.jsonl")]
    assert audited == [("alert_start", None), ("alert_end", "signal_lost")]
    results = [m for m in messages if m["type"] == "result"]
    assert [m["score"] for m in results[:8]] == [2.0] * 8  # 6 + 1 before the disconnect, 1 after it
    after_gap = results[7:]
    assert after_gap[0]["score"] == 2.0 and not any(m["alert"]["active"] for m in after_gap)

    gaps = np.diff(camera.open_times[1:5])  # between the failed re-opens and the good one
    assert all(gap >= delay for gap, delay in zip(gaps, BACKOFF_S)), gaps
    value = registry.get_sample_value
    assert value("stream_monitor_source_reconnects_total", {"stream": "cam"}) == 1
    assert 1.0 in stale_seen and stale_seen[-1] == 0.0
    assert value("stream_monitor_messages_published_total", {"topic": "status"}) == 5


def test_a_camera_that_is_not_there_keeps_the_monitor_up_reconnecting_and_unready(tmp_path, live_model):
    """The whole monitor, real processes, a real V4L2 camera source whose device does not exist (a
    capture card not plugged in at start-up): the capture process keeps re-opening it with back-off
    instead of crashing, the stream is `reconnecting` (a status message to subscribers, stream_stale 1
    in /metrics, /readyz 503 naming the stream's state), while /healthz stays 200 — the monitor itself
    works and is waiting for its camera."""
    import json
    import urllib.error
    import urllib.request

    from stream_monitor.demo.summary import metric, scrape
    from stream_monitor.pipeline.supervisor import Monitor
    from stream_monitor.transport.collector import ResultCollector

    config = MonitorConfig.model_validate({
        "instance": f"cam{tmp_path.name[-10:].replace('_', '')}",
        "streams": [{"name": "cam", "source": {"kind": "camera", "device": "/dev/video-not-plugged-in"}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 480]},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": None},
        "metrics": {"port": 0}, "audit": {"path": str(tmp_path / "alerts.jsonl")}})
    statuses: list[str] = []
    collector = ResultCollector(lambda m: statuses.append(m["state"]) if m["type"] == "status" else None)
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)

    def get(url: str) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
                return response.status, json.loads(body) if body.startswith("{") else body
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode())

    try:
        endpoints = monitor.start()
        deadline = time.monotonic() + 30
        while "reconnecting" not in statuses:
            assert time.monotonic() < deadline, statuses
            monitor.check()  # raises if a process died
            time.sleep(0.1)
        ready_status, ready = get(endpoints.metrics_url + "/readyz")
        health_status, _ = get(endpoints.metrics_url + "/healthz")
        samples = scrape(get(endpoints.metrics_url + "/metrics")[1])
        assert monitor.captures["cam"].is_alive()
    finally:
        codes = monitor.stop()
        collector.stop()
    assert ready_status == 503 and ready["streams"]["cam"]["state"] == "reconnecting" and health_status == 200
    assert metric(samples, "stream_monitor_stream_stale", stream="cam") == 1
    assert metric(samples, "stream_monitor_capture_state", stream="cam", stream_monitor_capture_state="reconnecting") == 1
    assert all(code == 0 for code in codes.values()), codes
