"""The shared-memory frame ring: seqlock reads, drop-oldest, attach from another process, cleanup."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from stream_monitor.capture.ring import FrameRing
from stream_monitor.service import SPAWN


@pytest.fixture
def ring():
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", n_slots=4, max_size=(64, 48), model_size=8)
    yield ring
    ring.close()
    ring.unlink()


def _frame(value: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_write_then_read_copies_frame_model_input_and_metadata(ring):
    seq = ring.write(_frame(7, 40, 60), np.full((8, 8, 3), 9, np.uint8), t_capture=123.5, mono_capture=4.25,
                     box=(1, 39, 2, 58))
    assert seq == 1 and ring.write_seq == 1 and int(ring.header["captured"]) == 1
    got = ring.read(1, model=True, frame=True)
    assert got.seq == 1 and got.t_capture == 123.5 and got.mono_capture == 4.25 and got.box == (1, 39, 2, 58)
    assert got.size == (60, 40) and got.frame.shape == (40, 60, 3) and np.all(got.frame == 7)
    assert np.all(got.model_rgb == 9)
    got.model_rgb[...] = 0  # a copy: the ring is untouched
    assert np.all(ring.read(1).model_rgb == 9)


def test_an_overwritten_frame_reads_as_gone_never_as_another_frame(ring):
    for value in range(1, 7):  # 6 frames into 4 slots: seq 1 and 2 are overwritten by 5 and 6
        ring.write(_frame(value), np.full((8, 8, 3), value, np.uint8), float(value), float(value), (0, 48, 0, 64))
    assert ring.read(1) is None and ring.read(2) is None
    assert [int(ring.read(s).model_rgb[0, 0, 0]) for s in (3, 4, 5, 6)] == [3, 4, 5, 6]
    assert ring.read(7) is None  # not written yet


def test_a_slot_being_written_reads_as_gone(ring):
    """The writer zeroes the slot's seq before touching its pixels (the seqlock): a reader that comes
    while the pixels are half written must not get them."""
    ring.write(_frame(1), np.zeros((8, 8, 3), np.uint8), 1.0, 1.0, (0, 48, 0, 64))
    ring._slots[1]["seq"] = 0  # what the writer does first when it reuses slot 1
    assert ring.read(1) is None


def test_frames_larger_than_a_slot_are_shrunk_keeping_aspect(ring):
    shrunk = ring.fit_frame(_frame(5, 96, 256))
    assert shrunk.shape == (24, 64, 3)
    small = _frame(5, 10, 10)
    assert ring.fit_frame(small) is small


def test_backlog_and_consumer_position(ring):
    for value in range(3):
        ring.write(_frame(value), np.zeros((8, 8, 3), np.uint8), 0.0, 0.0, (0, 48, 0, 64))
    assert ring.backlog() == 3
    ring.mark_consumed(2)
    assert ring.backlog() == 1


def _attach_and_read(name: str, queue) -> None:
    attached = FrameRing.attach(name)
    queue.put(int(attached.read(1).model_rgb[0, 0, 0]))
    attached.close()


def test_a_reader_process_exiting_does_not_unlink_the_ring(ring):
    """Regression story: Python's resource tracker unlinks every segment a process attached to when
    that process exits (bpo-38119), which would pull the ring from under the monitor when a viewer quit."""
    ring.write(_frame(1), np.full((8, 8, 3), 42, np.uint8), 0.0, 0.0, (0, 48, 0, 64))
    queue = SPAWN.Queue()
    reader = SPAWN.Process(target=_attach_and_read, args=(ring.name, queue))
    reader.start()
    assert queue.get(timeout=60) == 42
    reader.join(30)
    assert reader.exitcode == 0
    assert os.path.exists(f"/dev/shm/{ring.name}")
    again = FrameRing.attach(ring.name)
    assert int(again.read(1).model_rgb[0, 0, 0]) == 42
    again.close()


def test_create_replaces_a_stale_segment_and_attach_rejects_foreign_memory():
    from multiprocessing import resource_tracker
    from multiprocessing.shared_memory import SharedMemory

    name = f"sm-test-{uuid.uuid4().hex[:8]}"
    stale = SharedMemory(name=name, create=True, size=4096)  # e.g. left by a monitor killed with SIGKILL
    with pytest.raises(ValueError, match="not a stream-monitor frame ring"):
        FrameRing.attach(name)
    ring = FrameRing.create(name, 2, (8, 8), 4)
    assert ring.n_slots == 2
    ring.close()
    ring.unlink()
    stale.close()
    resource_tracker.unregister(stale._name, "shared_memory")  # create() unlinked it through its own handle
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(name)
