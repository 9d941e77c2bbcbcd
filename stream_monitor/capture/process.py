"""One capture process per stream: source → scope crop → model-sized RGB → shared-memory ring.

The capture process does the per-frame work that does not need the model (decode, scope-mask crop,
resize to the model's input), so that with several streams it runs in parallel with inference. After
each frame it sends a few bytes on a ZeroMQ PUSH socket to wake the inference loop; the ring header,
not the message, is the truth, so a lost wake-up only costs the loop's poll interval.

Live sources are read continuously and re-opened with back-off when they fail. Replays are paced on a
fixed schedule; when decoding falls behind it, the schedule restarts instead of bursting to catch up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import cv2
import msgpack
import numpy as np
import zmq

from ..config import ScopeMaskConfig, SourceConfig
from ..errors import InputError
from ..preprocess import to_model_rgb
from ..service import ServiceProcess
from .frames import as_bgr_uint8
from .ring import FLAG_LOSSLESS, FrameRing, RingState
from .scope_mask import ScopeMasker
from .sources import FrameSource, SourceError, open_source

__all__ = ["CaptureProcess", "encode_wakeup"]

# A paced replay more than this far behind its schedule skips the overdue frames (counted); less is
# jitter of a loaded machine, caught up by reading on without waiting.
_LATE_TOLERANCE_S = 0.1

log = logging.getLogger(__name__)
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # re-open delays of a failing live source


def encode_wakeup(stream: str, seq: int, ended: bool = False) -> bytes:
    """The inference loop's wake-up message: {"s": stream, "q": seq, "e": ended} in msgpack."""
    return msgpack.packb({"s": stream, "q": seq, "e": ended}, use_bin_type=True)


class CaptureProcess(ServiceProcess):
    """Reads one source into one ring until stopped or until a replay ends.

    Args:
        stream: the stream's name.
        source: its source config.
        scope_mask: its scope-mask config.
        ring: shared-memory name of its ring (created by the supervisor).
        wakeup_endpoint: ZeroMQ endpoint of the inference loop's PULL socket.
        stop_event, log_queue, log_level: see `ServiceProcess`.
    """

    def __init__(self, stream: str, source: SourceConfig, scope_mask: ScopeMaskConfig, ring: str,
                 wakeup_endpoint: str, stop_event: Any, log_queue: Any, log_level: str = "INFO",
                 threads: int = 1, frame_skipping: bool = False) -> None:
        super().__init__(f"capture:{stream}", stop_event, log_queue, log_level)
        self.stream, self.source_config, self.mask_config = stream, source, scope_mask
        self.ring_name, self.wakeup_endpoint, self.threads = ring, wakeup_endpoint, threads
        self.frame_skipping = frame_skipping

    def main(self) -> None:
        # Per-frame work here is small; OpenCV's default thread pool (one per core) would only compete
        # with the model for the cores.
        cv2.setNumThreads(self.threads)
        ring = FrameRing.attach(self.ring_name)
        ring.header["pid"] = self.pid or 0
        context = zmq.Context()
        wakeup = context.socket(zmq.PUSH)
        wakeup.setsockopt(zmq.LINGER, 0)
        wakeup.setsockopt(zmq.SNDHWM, 64)
        wakeup.connect(self.wakeup_endpoint)
        try:
            self._capture(ring, wakeup)
        except Exception:
            ring.state = RingState.FAILED
            raise
        finally:
            try:
                wakeup.send(encode_wakeup(self.stream, ring.write_seq, ended=True), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            wakeup.close(linger=0)
            context.term()
            ring.close()

    # ------------------------------------------------------------------ the loop
    def _open(self, ring: FrameRing) -> FrameSource | None:
        """Open the source; live sources are retried with back-off until stopped."""
        attempt = 0
        while not self.stop_event.is_set():
            try:
                source = open_source(self.source_config, self.threads)
                log.info("%s: opened %s", self.stream, source.description)
                return source
            except SourceError as exc:
                if self.source_config.kind in ("file", "folder"):
                    raise
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                log.warning("%s: %s; retrying in %.1f s", self.stream, exc, delay)
                ring.state = RingState.RECONNECTING
                attempt += 1
                self.stop_event.wait(delay)
        return None

    def _capture(self, ring: FrameRing, wakeup: zmq.Socket) -> None:
        masker = ScopeMasker(**self.mask_config.model_dump())
        self._skipped_seen = self._silent_reopens = 0
        source = self._open(ring)
        if source is None:
            return
        ring.state = RingState.RUNNING
        if source.lossless:
            ring.header["flags"] = int(ring.header["flags"]) | FLAG_LOSSLESS
        interval = source.frame_interval
        if interval:
            ring.header["source_fps"] = 1.0 / interval
        next_due = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if source.lossless and not self._wait_for_room(ring):
                    break
                if interval is not None:
                    next_due, late = self._pace(next_due, interval)
                    if late and not source.lossless:
                        self._skip_late(ring, source, late)
                if self.frame_skipping and not source.lossless and ring.backlog() >= 1:
                    # The model has not taken the last frame yet: it would be superseded anyway.
                    if source.skip():
                        ring.header["skipped"] = int(ring.header["skipped"]) + 1
                        ring.header["last_capture"] = time.time()  # the source is alive, just not needed now
                        self._count_read_errors(ring, source)
                        continue
                    frame = None
                else:
                    frame = source.read()
                self._count_read_errors(ring, source)
                if frame is None:
                    source = self._after_end(source, ring)
                    if source is None:
                        break
                    continue
                t_capture, mono = time.time(), time.monotonic()
                self._silent_reopens = 0
                self._publish(ring, wakeup, masker, frame, t_capture, mono)
        finally:
            if source is not None:
                source.close()

    def _count_read_errors(self, ring: FrameRing, source: FrameSource) -> None:
        # Frames the source could not decode (and passed over) count as capture read errors, as they happen.
        skipped = getattr(source, "skipped", 0)
        if skipped > self._skipped_seen:
            ring.header["errors"] = int(ring.header["errors"]) + skipped - self._skipped_seen
        self._skipped_seen = skipped

    def _pace(self, next_due: float, interval: float) -> tuple[float, int]:
        """Wait for the next frame's time; returns (the time after it, frames already overdue)."""
        now = time.monotonic()
        if next_due > now:
            self.stop_event.wait(next_due - now)
            return next_due + interval, 0
        behind = now - next_due
        if behind <= _LATE_TOLERANCE_S:  # jitter: catch up by reading on without waiting
            return next_due + interval, 0
        # Behind schedule (slow decode, a loaded machine): the frames whose time has passed are skipped,
        # so the replay keeps the recording's clock instead of playing ever later and slower.
        late = int(behind // interval)
        return next_due + (late + 1) * interval, late

    def _skip_late(self, ring: FrameRing, source: FrameSource, late: int) -> None:
        # Counted as captured and dropped (capture, behind_schedule): frames of the recording nobody scored.
        for _ in range(late):
            if not source.skip():
                return  # the end: the next read says so
            ring.header["late"] = int(ring.header["late"]) + 1
            self._count_read_errors(ring, source)

    def _wait_for_room(self, ring: FrameRing) -> bool:
        # One slot is always the one being written; the consumer may still be copying the oldest.
        while ring.backlog() >= ring.n_slots - 1:
            if self.stop_event.wait(0.001):
                return False
        return True

    def _after_end(self, source: FrameSource, ring: FrameRing) -> FrameSource | None:
        if source.rewind():
            return source
        if not source.live:
            log.info("%s: end of %s after %d frames", self.stream, source.description, ring.write_seq)
            ring.state = RingState.ENDED
            return None
        log.warning("%s: %s stopped delivering frames; re-opening", self.stream, source.description)
        source.close()
        ring.header["reconnects"] = int(ring.header["reconnects"]) + 1
        ring.state = RingState.RECONNECTING
        # A device that opens but delivers nothing must not be re-opened twice a second for ever.
        self.stop_event.wait(_BACKOFF_S[min(self._silent_reopens, len(_BACKOFF_S) - 1)])
        self._silent_reopens += 1
        reopened = self._open(ring)
        if reopened is not None:
            ring.state = RingState.RUNNING
        return reopened

    def _publish(self, ring: FrameRing, wakeup: zmq.Socket, masker: ScopeMasker, frame: np.ndarray,
                 t_capture: float, mono: float) -> bool:
        """Convert, crop, resize and write one frame; an unusable one is counted and skipped."""
        try:
            frame, converted = as_bgr_uint8(frame)
            box = masker.update(frame)
            model_rgb = to_model_rgb(box.crop(frame), ring.model_size)
        except (InputError, cv2.error, ValueError) as exc:
            invalid = int(ring.header["invalid"]) + 1
            ring.header["invalid"] = invalid
            if invalid & (invalid - 1) == 0:  # 1st, 2nd, 4th, 8th …: a broken source must not flood the log
                log.warning("%s: unusable frame skipped (%s); %d so far", self.stream, exc, invalid)
            return False
        if converted is not None:
            count = int(ring.header["converted"]) + 1
            ring.header["converted"] = count
            if count & (count - 1) == 0:
                log.info("%s: converting %s frames to 8-bit BGR; %d so far", self.stream, converted, count)
        shown = ring.fit_frame(frame)
        scale = shown.shape[0] / frame.shape[0]  # the box is drawn on the (possibly shrunk) ring frame
        seq = ring.write(shown, model_rgb, t_capture, mono,
                         tuple(int(round(v * scale)) for v in (box.top, box.bottom, box.left, box.right)))
        try:
            wakeup.send(encode_wakeup(self.stream, seq), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the loop is busy or not there yet; it polls the ring header anyway
        return True
