"""The overlay viewer: subscribe to one stream's results, pair each with its frame, render, send to sinks.

Frames come from the monitor's viewer-frame topic (JPEG over ZeroMQ, works from another machine) or,
on the monitor's own host, straight from the stream's shared-memory ring by sequence number (no JPEG
round trip). Every wait drains the sockets and keeps only the newest result that has its frame, so a
viewer that fell behind shows the present instead of replaying a backlog.

Sequence gaps are counted two ways, from each result's `prev_seq` (the seq of the previous result the
monitor published for the stream): `lost_results` when the previous result we received is not that one
(lost between monitor and viewer), and `skipped_frames`, the frames the monitor never scored
(seq − prev_seq − 1, dropped upstream to keep latency bounded).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import zmq

from ..capture.ring import FrameRing
from ..transport.gaps import SequenceGaps
from ..transport.schema import SchemaError, decode, topic
from ..transport.security import CurveClient
from ..transport.sockets import drain, make_subscriber
from .render import ViewerStatus, render_overlay
from .sinks import Sink
from .stream_state import mark_stream_state

__all__ = ["OverlayViewer", "ViewerStats"]

log = logging.getLogger(__name__)
_KEEP = 64  # results / frames held while waiting for their partner
# No message at all from the monitor for this long while the stream was running: the monitor itself is
# gone (crashed, killed, network cut) and can no longer say so with a status message. A live stream
# sends results many times a second, and a silent source gets a `stale` status within stale_after_s.
MONITOR_SILENT_S = 3.0


@dataclass
class ViewerStats:
    results: int = 0
    frames: int = 0
    rendered: int = 0
    lost_results: int = 0
    skipped_frames: int = 0
    frames_missing: int = 0
    invalid_messages: int = 0
    alerts_seen: int = 0
    stream_state: str = "running"  # from the monitor's status messages (stale, reconnecting, ended, …)


class OverlayViewer:
    """Renders one stream. Call `run(should_stop)`, then `close()`."""

    def __init__(self, results_endpoint: str, stream: str | None, sinks: list[Sink],
                 frames_endpoint: str | None = None, ring: str | None = None, heatmap: bool = True,
                 height: int = 480, monitor_silent_s: float = MONITOR_SILENT_S,
                 curve: CurveClient | None = None, explanation=None) -> None:
        if (frames_endpoint is None) == (ring is None):
            raise ValueError("give exactly one frame source: frames_endpoint (ZeroMQ) or ring (shared memory)")
        self.stream, self.sinks, self.heatmap, self.height = stream, sinks, heatmap, height
        self.explanation = explanation  # explanations.assets.ExplanationAssets: neuron thumbnails for the panel
        self.context = zmq.Context()
        prefix = topic("result", stream) if stream else b"result/"
        alerts = topic("alert", stream) if stream else b"alert/"
        status = topic("status", stream) if stream else b"status/"
        self.frames = None
        try:
            self.results = make_subscriber(self.context, results_endpoint, [prefix, alerts, status], curve=curve)
            if frames_endpoint is not None:
                self.frames = make_subscriber(self.context, frames_endpoint,
                                              [topic("frame", stream) if stream else b"frame/"], curve=curve)
        except BaseException:  # a refused CURVE handshake: nothing may be left open
            if getattr(self, "results", None) is not None:
                self.results.close(linger=0)
            self.context.term()
            raise
        self.ring = FrameRing.attach(ring) if ring is not None else None
        self.stats = ViewerStats()
        self._pending: OrderedDict[int, dict] = OrderedDict()
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._gaps = SequenceGaps()
        self.last_render: np.ndarray | None = None
        self.monitor_silent_s = monitor_silent_s
        self._last_message = time.monotonic()

    # ------------------------------------------------------------------ receiving
    def _on_result(self, message: dict) -> None:
        if self.stream is None:
            self.stream = message["stream"]
        if message["stream"] != self.stream:
            return
        self.stats.results += 1
        self._gaps.add(message)
        self.stats.lost_results, self.stats.skipped_frames = self._gaps.gaps, self._gaps.skipped
        if self.ring is not None:
            frame = self.ring.read(message["seq"], model=False, frame=True)
            if frame is None:
                self.stats.frames_missing += 1
                return
            self._images[message["seq"]] = frame.frame
        self._pending[message["seq"]] = message
        while len(self._pending) > _KEEP:
            self._pending.popitem(last=False)

    def _on_frame(self, parts: list[zmq.Frame]) -> None:
        if len(parts) != 3:
            self.stats.invalid_messages += 1
            return
        header = decode(parts[1].buffer)
        if header["type"] != "frame" or (self.stream is not None and header["stream"] != self.stream):
            return
        image = cv2.imdecode(np.frombuffer(parts[2].buffer, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self.stats.invalid_messages += 1
            return
        self.stats.frames += 1
        self._images[header["seq"]] = image
        while len(self._images) > _KEEP:
            self._images.popitem(last=False)

    def _receive(self, timeout_ms: int) -> None:
        poller = zmq.Poller()
        poller.register(self.results, zmq.POLLIN)
        if self.frames is not None:
            poller.register(self.frames, zmq.POLLIN)
        if not poller.poll(timeout_ms):
            self._check_monitor_silent()
            return
        messages = drain(self.results)
        if messages:
            self._last_message = time.monotonic()
        for parts in messages:
            try:
                message = decode(parts[-1].buffer)
            except SchemaError as exc:
                self.stats.invalid_messages += 1
                log.warning("ignoring an invalid message: %s", exc)
                continue
            if message["type"] == "result":
                if self.stats.stream_state == "monitor_silent":  # the monitor is back
                    self.stats.stream_state = "running"
                self._on_result(message)
            elif message["type"] == "alert" and message["event"] == "start":
                self.stats.alerts_seen += 1
            elif message["type"] == "status" and message["stream"] == (self.stream or message["stream"]):
                self._on_status(message["state"])
        if self.frames is not None:
            for parts in drain(self.frames):
                try:
                    self._on_frame(parts)
                except SchemaError:
                    self.stats.invalid_messages += 1
        self._check_monitor_silent()

    def _check_monitor_silent(self) -> None:
        if (self.stats.stream_state == "running" and self.last_render is not None
                and time.monotonic() - self._last_message > self.monitor_silent_s):
            log.warning("no results from the monitor for %.0f s; showing NO SIGNAL", self.monitor_silent_s)
            self._on_status("monitor_silent")

    def _on_status(self, state: str) -> None:
        self.stats.stream_state = state
        if state != "running" and self.last_render is not None:  # no new frames will come to show it
            marked = mark_stream_state(self.last_render, state)
            for sink in self.sinks:
                sink.write(marked, time.time())

    # ------------------------------------------------------------------ rendering
    def render_ready(self) -> bool:
        """Render the newest result whose frame is here; drop older ones. True if something was drawn."""
        ready = [seq for seq in self._pending if seq in self._images]
        if not ready:
            return False
        seq = ready[-1]
        message, image = self._pending[seq], self._images[seq]
        for old in [s for s in self._pending if s <= seq]:
            del self._pending[old]
        for old in [s for s in self._images if s <= seq]:
            del self._images[old]
        status = ViewerStatus(self.stats.lost_results, self.stats.skipped_frames)
        self.last_render = render_overlay(image, message, status, self.height, self.heatmap, self.explanation)
        for sink in self.sinks:
            sink.write(self.last_render, message["t_capture"])
        self.stats.rendered += 1
        return True

    def run(self, should_stop: Callable[[], bool], idle_exit_s: float | None = None) -> ViewerStats:
        """Receive and render until `should_stop()`, a sink asks to stop, or nothing arrived for
        `idle_exit_s` seconds; a final drain renders what was already sent."""
        last_activity = time.monotonic()
        while not should_stop() and not any(s.wants_stop for s in self.sinks):
            before = self.stats.results
            self._receive(50)
            self.render_ready()
            if self.stats.results != before:
                last_activity = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - last_activity > idle_exit_s:
                break
        for _ in range(5):  # whatever the monitor sent before it stopped
            self._receive(20)
            self.render_ready()
        return self.stats

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # one failing sink must not keep the MP4 from being finalised
                log.exception("closing a sink failed")
        self.results.close(linger=0)
        if self.frames is not None:
            self.frames.close(linger=0)
        self.context.term()
        if self.ring is not None:
            self.ring.close()
