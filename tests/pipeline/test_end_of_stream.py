"""A file source ends (issue 5, item 2): loop or stop as configured, and a clean end-of-stream reaches
every consumer. Real monitor processes on a real MP4; two consumers in this process — the result
collector and the overlay viewer reading frames from the ring — over the real results socket."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np

from stream_monitor.config import MonitorConfig
from stream_monitor.demo.summary import metric, scrape
from stream_monitor.overlay import OverlayViewer
from stream_monitor.overlay.sinks import Sink
from stream_monitor.pipeline.audit import read_audit_log
from stream_monitor.pipeline.supervisor import Monitor
from stream_monitor.transport.collector import ResultCollector


def _config(tmp_path, live_model, source: dict) -> MonitorConfig:
    return MonitorConfig.model_validate({
        "instance": f"eos{tmp_path.name[-10:].replace('_', '')}",
        "streams": [{"name": "endo", "source": source}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540], "ring_slots": 8},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": None},
        "metrics": {"port": 0},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    })


class _Keep(Sink):
    def __init__(self):
        self.images = []

    def write(self, image, t_capture):
        self.images.append(image)


class Consumers:
    """A collector and a viewer, connected as soon as the monitor has bound its sockets."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.collector = ResultCollector(self.messages.append)
        self.sink = _Keep()
        self.viewer: OverlayViewer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self, endpoints) -> None:
        self.collector.start_on(endpoints)
        self.viewer = OverlayViewer(endpoints.results, "endo", [self.sink], ring=endpoints.rings["endo"], height=360)
        self._thread = threading.Thread(target=self.viewer.run, args=(self._stop.is_set,))
        self._thread.start()

    def statuses(self) -> list[str]:
        return [m["state"] for m in list(self.messages) if m["type"] == "status"]

    def wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; statuses {self.statuses()}"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.viewer is not None:
            self.viewer.close()
        self.collector.stop()


def test_a_replay_that_ends_sends_a_clean_end_of_stream_to_every_consumer(tmp_path, live_model, e2e_clip):
    """loop: false. The inference loop scores every frame (lossless replay), closes the stream, and
    publishes `ended` after the last result: the collector's last message about the stream is that
    status, whose last_seq is the last result it received and whose final counts balance; the viewer
    shows the last frame under a "STREAM ENDED" banner; the audit log closes normally; no `stopped`
    follows at shutdown (the stream had already ended)."""
    config = _config(tmp_path, live_model, {"kind": "file", "path": str(e2e_clip.path), "pace": "max", "lossless": True})
    consumers = Consumers()
    monitor = Monitor(config, wait_for_subscribers=2, on_endpoints=consumers.connect)
    try:
        monitor.start()
        assert monitor.wait(120, until_done=True), "the replay did not finish in time"
        consumers.wait_for(lambda: "ended" in consumers.statuses(), 10, "the collector's end of stream")
        consumers.wait_for(lambda: consumers.viewer.stats.stream_state == "ended", 10, "the viewer's end of stream")
    finally:
        codes = monitor.stop()
        time.sleep(0.3)  # anything published at shutdown has arrived
        consumers.close()
    assert all(code == 0 for code in codes.values()), codes
    about_endo = [m for m in consumers.messages if m["stream"] == "endo"]
    end = about_endo[-1]
    results = [m for m in about_endo if m["type"] == "result"]
    assert end["type"] == "status" and end["state"] == "ended" and consumers.statuses() == ["running", "ended"]
    assert end["last_seq"] == results[-1]["seq"] == 48 and end["processed"] == len(results) == 48
    assert end["captured"] == end["processed"] + end["dropped"] == 48
    banner = consumers.sink.images[-1][5:40, 5:300].reshape(-1, 3).astype(int)
    assert np.abs(banner - banner.mean(axis=1, keepdims=True)).mean() < 20  # grey, not the green/red state banner
    events = [r["event"] for r in read_audit_log(tmp_path / "alerts.jsonl")]
    assert events[0] == "session_start" and events[-1] == "session_end"


def test_a_looped_replay_runs_on_and_its_consumers_get_stopped_at_shutdown(tmp_path, live_model, e2e_clip):
    """loop: true. The 48-frame clip is read more than twice (captured > 96 in /metrics), no `ended`
    is ever sent, and the shutdown's `stopped` status reaches the collector as the stream's last word."""
    config = _config(tmp_path, live_model, {"kind": "file", "path": str(e2e_clip.path), "pace": 200.0, "loop": True})
    consumers = Consumers()
    monitor = Monitor(config, wait_for_subscribers=2, on_endpoints=consumers.connect)
    try:
        endpoints = monitor.start()

        def captured() -> float:
            text = urllib.request.urlopen(endpoints.metrics_url + "/metrics", timeout=10).read().decode()
            return metric(scrape(text), "stream_monitor_frames_captured_total", stream="endo")

        consumers.wait_for(lambda: captured() > 96, 120, "two passes over the clip")
        assert not monitor.done.is_set()
    finally:
        codes = monitor.stop()
        consumers.wait_for(lambda: "stopped" in consumers.statuses(), 5, "the shutdown status")
        consumers.close()
    assert all(code == 0 for code in codes.values()), codes
    assert consumers.statuses() == ["running", "stopped"]
    assert consumers.messages[-1]["type"] == "status" and consumers.viewer.stats.stream_state == "stopped"
