"""JPEG frames for remote viewers, published beside the results on their own socket.

The inference loop only `offer`s (stream, seq) after publishing a result; this thread copies that frame
out of the ring, encodes it and sends `[b"frame/<stream>", header, jpeg]`. It keeps one pending frame
per stream (a newer offer replaces an unsent one: viewers want the present), caps the rate per stream,
and does nothing at all while no one subscribes to frames — JPEG encoding is the most expensive thing
the monitor does besides the model, and it must not slow scoring down for a viewer who is not there.
OpenCV releases the GIL while encoding, so this thread runs beside the model's forward pass.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import zmq

from ..capture.ring import FrameRing
from ..observability.metrics import Metrics
from ..transport.messages import frame_header
from ..transport.schema import encode, topic
from ..transport.security import CurveServer
from ..transport.sockets import Publisher

__all__ = ["ViewerFramePublisher"]

log = logging.getLogger(__name__)


class ViewerFramePublisher(threading.Thread):
    """Publishes viewer frames on `endpoint` (bound in the thread, which owns the socket)."""

    def __init__(self, context: zmq.Context, endpoint: str, rings: dict[str, FrameRing], metrics: Metrics,
                 hwm: int, jpeg_quality: int, max_fps: float, curve: CurveServer | None = None) -> None:
        super().__init__(name="viewer-frames", daemon=True)
        self._context, self._endpoint, self.rings, self.metrics = context, endpoint, rings, metrics
        self._curve = curve
        self.hwm, self.quality, self.min_interval = hwm, jpeg_quality, 1.0 / max_fps
        self._pending: dict[str, tuple[int, float]] = {}
        self._last_sent = {name: 0.0 for name in rings}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.bound = threading.Event()
        self.endpoint: str | None = None
        self.error: BaseException | None = None

    def offer(self, stream: str, seq: int, t_capture: float) -> None:
        """Ask for frame `seq` of `stream` to be sent (replaces an unsent older one)."""
        with self._lock:
            if stream in self._pending:
                self.metrics.viewer_frames_skipped.labels(stream, "busy").inc()
            self._pending[stream] = (seq, t_capture)
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            publisher = Publisher(self._context, self._endpoint, self.hwm, self._curve)
        except zmq.ZMQError as exc:
            self.error = exc
            self.bound.set()
            return
        self.endpoint = publisher.endpoint
        self.bound.set()
        try:
            while not self._stopping.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                publisher.poll_subscriptions()
                with self._lock:
                    pending, self._pending = self._pending, {}
                for stream, (seq, t_capture) in pending.items():
                    self._send(publisher, stream, seq, t_capture)
        finally:
            publisher.close()

    def _send(self, publisher: Publisher, stream: str, seq: int, t_capture: float) -> None:
        name = topic("frame", stream)
        if publisher.subscribers(name) == 0:
            return
        now = time.monotonic()
        if now - self._last_sent[stream] < self.min_interval:
            self.metrics.viewer_frames_skipped.labels(stream, "rate_limit").inc()
            return
        frame = self.rings[stream].read(seq, model=False, frame=True)
        if frame is None or frame.frame is None:
            self.metrics.viewer_frames_skipped.labels(stream, "gone").inc()
            return
        ok, jpeg = cv2.imencode(".jpg", frame.frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            log.warning("%s: JPEG encoding of frame %d failed", stream, seq)
            return
        width, height = frame.size
        publisher.send([name, encode(frame_header(stream, seq, t_capture, width, height)), jpeg.data])
        self._last_sent[stream] = now
        self.metrics.messages_published.labels("frame").inc()
