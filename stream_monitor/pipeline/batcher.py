"""The batcher: the newest frame(s) of each stream, batched across streams, up to `max_batch` frames
and `max_wait_s` of waiting.

A batch closes as soon as every running stream has a new frame (with one stream: at once), when it holds
`max_batch` frames, or `max_wait_s` after its first frame arrived — waiting longer for a slow stream would
add latency to the others. From each stream it takes the newest `frames_per_stream` frames (1 = live:
newest only); every older frame that was never taken is counted as dropped (ring/superseded), a frame
whose slot was overwritten before or while it was copied as ring/overwritten, and a frame older than
`max_age_s` as batcher/stale. Streams take turns at the head of the batch, so that with more streams
than `max_batch` none is starved; a stream left out waits for the next batch. A lossless ring (a replay
whose capture process waits for the model) is read oldest-first instead, and nothing of it is dropped.

Wake-ups come from the capture processes on a PULL socket; the ring headers are the truth, and they are
polled at least every `_POLL_S` in case a wake-up was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import zmq

from ..capture.ring import FrameRing, RingFrame

__all__ = ["BatchItem", "Batcher"]

_POLL_S = 0.02
DropCounter = Callable[[str, str, str, int], None]


@dataclass(frozen=True)
class BatchItem:
    """One frame of a batch: its stream, the copied ring frame, and the seq of the stream's previously
    batched frame (0 for the first), so that consumers can tell drops from transport loss."""

    stream: str
    frame: RingFrame
    prev_seq: int


class Batcher:
    """Builds batches from the rings of all streams. Single consumer: it marks frames consumed."""

    def __init__(self, rings: dict[str, FrameRing], wakeups: zmq.Socket | None, max_batch: int,
                 max_wait_s: float, frames_per_stream: int = 1, max_age_s: float | None = None,
                 on_drop: DropCounter | None = None) -> None:
        self.rings = rings
        self.wakeups = wakeups
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.frames_per_stream, self.max_age_s = frames_per_stream, max_age_s
        self.on_drop = on_drop or (lambda *args: None)
        self.taken = {name: 0 for name in rings}  # newest seq handed out (or given up) per stream
        self.last_batched = {name: 0 for name in rings}
        self._turn = 0

    # ------------------------------------------------------------------ state
    def pending(self) -> dict[str, int]:
        """Frames per stream written and not yet taken."""
        return {name: ring.write_seq - self.taken[name] for name, ring in self.rings.items()
                if ring.write_seq > self.taken[name]}

    def running(self) -> list[str]:
        """Streams whose capture has not ended or failed."""
        return [name for name, ring in self.rings.items() if not ring.state.done]

    @property
    def exhausted(self) -> bool:
        """Every source has ended (or failed) and every frame was taken."""
        return not self.running() and not self.pending()

    def _drain_wakeups(self, timeout_s: float) -> None:
        if self.wakeups is None:
            time.sleep(timeout_s)
            return
        if timeout_s > 0 and not self.wakeups.poll(int(timeout_s * 1000) or 1, zmq.POLLIN):
            return
        while True:  # the messages only say "look again"; read them all and look once
            try:
                msgpack.unpackb(self.wakeups.recv(zmq.NOBLOCK), raw=False)
            except zmq.Again:
                return
            except (ValueError, msgpack.ExtraData):
                continue

    # ------------------------------------------------------------------ batching
    def next_batch(self, timeout_s: float) -> list[BatchItem]:
        """Wait up to `timeout_s` for a first frame, then up to `max_wait_s` for the batch to fill."""
        deadline = time.monotonic() + timeout_s
        first_at: float | None = None
        while True:
            now = time.monotonic()
            pending = self.pending()
            if pending:
                first_at = first_at if first_at is not None else now
                available = sum(min(n, self.frames_per_stream) for n in pending.values())
                waiting_for = [s for s in self.running() if s not in pending]
                if available >= self.max_batch or not waiting_for or now - first_at >= self.max_wait_s:
                    return self._collect(pending)
                wait = first_at + self.max_wait_s - now
            else:
                if now >= deadline:
                    return []
                wait = deadline - now
            self._drain_wakeups(min(wait, _POLL_S))

    def _collect(self, pending: dict[str, int]) -> list[BatchItem]:
        names = list(self.rings)
        order = names[self._turn % len(names):] + names[: self._turn % len(names)]
        self._turn += 1
        batch: list[BatchItem] = []
        now_wall = time.time()
        for name in order:
            if name not in pending or len(batch) >= self.max_batch:
                continue
            ring = self.rings[name]
            newest = ring.write_seq
            take = min(self.frames_per_stream, self.max_batch - len(batch), newest - self.taken[name])
            if ring.lossless:  # every frame, in order: the writer waits for us
                first, newest = self.taken[name] + 1, self.taken[name] + take
            else:
                first = newest - take + 1
                self.on_drop(name, "ring", "superseded", first - self.taken[name] - 1)
            for seq in range(first, newest + 1):
                frame = ring.read(seq)
                if frame is None:
                    self.on_drop(name, "ring", "overwritten", 1)
                elif self.max_age_s is not None and now_wall - frame.t_capture > self.max_age_s:
                    self.on_drop(name, "batcher", "stale", 1)
                else:
                    batch.append(BatchItem(name, frame, self.last_batched[name]))
                    self.last_batched[name] = seq
            self.taken[name] = newest
            ring.mark_consumed(newest)
        return batch
