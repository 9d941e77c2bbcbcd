"""A ring of frame slots in named shared memory: one writer (a capture process), readers anywhere on
the host (the inference loop, the frame publisher, a local overlay).

Layout of one segment: a header (counters the capture process owns, the newest sequence number, the
consumer's position), then `n_slots` slots, each a small header (seq, capture times, frame size, the
scope crop box) followed by the full frame (up to max height × max width × 3, BGR uint8) and the
model-sized RGB image the capture process already cropped and resized (size × size × 3 uint8).

Sequence numbers start at 1 and never repeat within a run; seq s lives in slot s % n_slots.
Consistency is a seqlock: the writer zeroes the slot's seq, writes the pixels, then publishes the seq in
the slot and in the header; a reader copies a slot and checks the seq again afterwards, so a slot that was
overwritten while it was being copied is reported as lost, never returned torn. This relies on stores not
being reordered with other stores and loads not with loads (x86-64 TSO; aligned 8-byte fields).

Only the creator unlinks. Readers attach without registering the segment with Python's resource tracker
(which would otherwise unlink it when a reader exits — bpo-38119); Frigate does the same.
"""

from __future__ import annotations

import enum
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import cv2
import numpy as np

__all__ = ["FLAG_LOSSLESS", "FrameRing", "RingFrame", "RingState", "STATE_NAMES", "ring_name"]

MAGIC = 0x534D5231  # "SMR1"
FLAG_LOSSLESS = 1  # header flags: the writer waits for the consumer; the consumer must take every frame


class RingState(enum.IntEnum):
    """The capture process's state, kept in the ring header as an integer so every reader sees it."""

    STARTING = 0
    RUNNING = 1
    RECONNECTING = 2
    ENDED = 3
    FAILED = 4

    @classmethod
    def decode(cls, raw: int) -> "RingState":
        """The header's integer as a state; an unknown value (a newer or broken writer) reads as FAILED."""
        try:
            return cls(int(raw))
        except ValueError:
            return cls.FAILED

    @property
    def label(self) -> str:
        """The lower-case name used in metrics, status messages and logs ("running")."""
        return self.name.lower()

    @property
    def done(self) -> bool:
        """The source will deliver no more frames (replay ended, or the capture process gave up)."""
        return self in (RingState.ENDED, RingState.FAILED)


STATE_NAMES = tuple(state.label for state in RingState)
_HEADER = np.dtype([
    ("magic", "<u4"), ("n_slots", "<u4"), ("max_h", "<u4"), ("max_w", "<u4"), ("model_size", "<u4"),
    ("state", "<u4"), ("pid", "<u4"), ("src_w", "<u4"), ("src_h", "<u4"), ("flags", "<u4"),
    ("write_seq", "<u8"), ("read_seq", "<u8"), ("captured", "<u8"), ("errors", "<u8"), ("reconnects", "<u8"),
    ("last_capture", "<f8"), ("source_fps", "<f8"), ("invalid", "<u8"), ("converted", "<u8"),
    ("skipped", "<u8"), ("late", "<u8"),
])
_SLOT = np.dtype([
    ("seq", "<u8"), ("t_capture", "<f8"), ("mono_capture", "<f8"),
    ("h", "<u4"), ("w", "<u4"), ("box", "<u4", (4,)), ("_pad", "<u8"),
])
_ALIGN = 64
_attach_lock = threading.Lock()


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def ring_name(instance: str, stream: str) -> str:
    """Shared-memory name of a stream's ring (appears in /dev/shm as this name)."""
    return f"sm-{instance}-{stream}"


@dataclass(frozen=True)
class RingFrame:
    """A frame copied out of the ring: seq, capture time (unix s and CLOCK_MONOTONIC s), the model input
    (S, S, 3) RGB uint8, the full frame (H, W, 3) BGR uint8 when asked for, the scope crop box
    (top, bottom, left, right) and the frame's size (width, height), both in pixels of the ring's frame."""

    seq: int
    t_capture: float
    mono_capture: float
    model_rgb: np.ndarray | None
    frame: np.ndarray | None
    box: tuple[int, int, int, int]
    size: tuple[int, int]


def _open_untracked(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    with _attach_lock:  # the patch below is process-global; attach is rare (start-up)
        original = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None
        try:
            return SharedMemory(name=name)
        finally:
            resource_tracker.register = original


class FrameRing:
    """One stream's ring. Create it once (`create`), attach everywhere else (`attach`)."""

    def __init__(self, shm: SharedMemory, owner: bool) -> None:
        self._shm, self.owner, self.name = shm, owner, shm.name
        self.header = np.ndarray((), _HEADER, buffer=shm.buf, offset=0)
        if int(self.header["magic"]) != MAGIC:
            raise ValueError(f"shared memory {shm.name} is not a stream-monitor frame ring")
        self.n_slots = int(self.header["n_slots"])
        self.max_h, self.max_w = int(self.header["max_h"]), int(self.header["max_w"])
        self.model_size = int(self.header["model_size"])
        frame_bytes, model_bytes = self.max_h * self.max_w * 3, self.model_size ** 2 * 3
        self._slot_stride = _aligned(_SLOT.itemsize) + _aligned(frame_bytes) + _aligned(model_bytes)
        base = _aligned(_HEADER.itemsize)
        self._slots, self._frames, self._models = [], [], []
        for i in range(self.n_slots):
            offset = base + i * self._slot_stride
            self._slots.append(np.ndarray((), _SLOT, buffer=shm.buf, offset=offset))
            offset += _aligned(_SLOT.itemsize)
            self._frames.append(np.ndarray((frame_bytes,), np.uint8, buffer=shm.buf, offset=offset))
            offset += _aligned(frame_bytes)
            self._models.append(np.ndarray((self.model_size, self.model_size, 3), np.uint8, buffer=shm.buf, offset=offset))

    @staticmethod
    def size_for(n_slots: int, max_w: int, max_h: int, model_size: int) -> int:
        """Bytes of a ring with these dimensions."""
        stride = _aligned(_SLOT.itemsize) + _aligned(max_h * max_w * 3) + _aligned(model_size ** 2 * 3)
        return _aligned(_HEADER.itemsize) + n_slots * stride

    @classmethod
    def create(cls, name: str, n_slots: int, max_size: tuple[int, int], model_size: int) -> "FrameRing":
        """Create (replacing a stale segment of the same name left by a killed run) and initialise."""
        max_w, max_h = max_size
        size = cls.size_for(n_slots, max_w, max_h, model_size)
        try:
            shm = SharedMemory(name=name, create=True, size=size)
        except FileExistsError:
            stale = _open_untracked(name)
            stale.close()
            stale.unlink()
            shm = SharedMemory(name=name, create=True, size=size)
        header = np.ndarray((), _HEADER, buffer=shm.buf, offset=0)
        header[...] = 0
        header["n_slots"], header["max_h"], header["max_w"], header["model_size"] = n_slots, max_h, max_w, model_size
        header["magic"] = MAGIC
        del header
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> "FrameRing":
        """Attach to an existing ring (FileNotFoundError if there is none)."""
        return cls(_open_untracked(name), owner=False)

    # ------------------------------------------------------------------ writer side
    def fit_frame(self, frame: np.ndarray) -> np.ndarray:
        """The frame shrunk (aspect kept) to fit a slot, if it is larger; (H, W, 3) BGR uint8."""
        h, w = frame.shape[:2]
        if h <= self.max_h and w <= self.max_w:
            return frame
        scale = min(self.max_h / h, self.max_w / w)
        return cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)

    def write(self, frame: np.ndarray, model_rgb: np.ndarray, t_capture: float, mono_capture: float,
              box: tuple[int, int, int, int]) -> int:
        """Publish one frame; returns its seq. Single writer only. `frame` must already fit (`fit_frame`)."""
        seq = int(self.header["write_seq"]) + 1
        i = seq % self.n_slots
        slot = self._slots[i]
        h, w = frame.shape[:2]
        slot["seq"] = 0  # readers of the old seq in this slot now see it gone
        self._frames[i][: h * w * 3].reshape(h, w, 3)[...] = frame
        self._models[i][...] = model_rgb
        slot["t_capture"], slot["mono_capture"], slot["h"], slot["w"] = t_capture, mono_capture, h, w
        slot["box"] = box
        slot["seq"] = seq
        self.header["write_seq"] = seq
        self.header["captured"] = int(self.header["captured"]) + 1
        self.header["last_capture"] = t_capture
        return seq

    def backlog(self) -> int:
        """Frames written and not yet marked consumed."""
        return int(self.header["write_seq"]) - int(self.header["read_seq"])

    # ------------------------------------------------------------------ reader side
    @property
    def state(self) -> RingState:
        return RingState.decode(self.header["state"])

    @state.setter
    def state(self, value: RingState) -> None:
        self.header["state"] = int(value)

    @property
    def write_seq(self) -> int:
        return int(self.header["write_seq"])

    @property
    def lossless(self) -> bool:
        """Set by a writer that waits for the consumer (a replay with `lossless: true`)."""
        return bool(int(self.header["flags"]) & FLAG_LOSSLESS)

    def mark_consumed(self, seq: int) -> None:
        """The (single) consumer has taken every frame up to `seq`; lossless writers wait on this."""
        self.header["read_seq"] = seq

    def read(self, seq: int, model: bool = True, frame: bool = False) -> RingFrame | None:
        """Copy frame `seq` out of the ring, or None if it was overwritten (before or during the copy)."""
        i = seq % self.n_slots
        slot = self._slots[i]
        if int(slot["seq"]) != seq:
            return None
        h, w = int(slot["h"]), int(slot["w"])
        meta = (float(slot["t_capture"]), float(slot["mono_capture"]), tuple(int(v) for v in slot["box"]))
        model_rgb = self._models[i].copy() if model else None
        pixels = self._frames[i][: h * w * 3].reshape(h, w, 3).copy() if frame else None
        if int(slot["seq"]) != seq:
            return None
        return RingFrame(seq, meta[0], meta[1], model_rgb, pixels, meta[2], (w, h))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release this process's mapping (views into it must be dropped first)."""
        self.header = None  # type: ignore[assignment]
        self._slots, self._frames, self._models = [], [], []
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the process
            pass

    def unlink(self) -> None:
        """Remove the segment's name (creator only); mappings stay valid until closed."""
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
