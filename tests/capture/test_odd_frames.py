"""Odd frames (issue 5, item 3): whatever a source delivers, the capture loop converts it or skips it,
counts it, and goes on reading.

Two levels: the capture process's own loop, run in a thread on a real ring with a real wake-up socket,
fed by a source that delivers the odd frames real hardware does (grayscale, 16-bit, BGRA, empty, a size
change, not an image at all) made from a real endoscopy frame; and the real capture process on a real
MJPEG file with damaged frames, which the decoder rejects mid-file.
"""

from __future__ import annotations

import threading
import time
import uuid

import cv2
import numpy as np
import pytest
import zmq
from prometheus_client import CollectorRegistry

from stream_monitor.capture import process as capture_process
from stream_monitor.capture.frames import as_bgr_uint8
from stream_monitor.capture.process import CaptureProcess
from stream_monitor.capture.ring import FrameRing, RingState
from stream_monitor.capture.sources import FrameSource
from stream_monitor.config import FileSource, ScopeMaskConfig
from stream_monitor.errors import InputError
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.observability import Metrics
from stream_monitor.service import Flag

CLIP = SHARED_DATA / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"


@pytest.fixture(scope="module")
def endoscopy_frames() -> list[np.ndarray]:
    """The first 60 frames of a real endoscopy clip, (462, 520, 3) BGR uint8."""
    if not CLIP.is_file():
        pytest.fail(f"{CLIP} not found: the test runs on it")
    capture, frames = cv2.VideoCapture(str(CLIP)), []
    while len(frames) < 60:
        ok, frame = capture.read()
        assert ok
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("make, converted", [
    (lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), "grayscale"),
    (lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[:, :, None], "grayscale"),
    (lambda f: f.astype(np.uint16) * 257, "16-bit"),
    (lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, "16-bit+grayscale"),
    (lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA), "alpha"),
    (lambda f: f, None),
])
def test_frames_are_converted_to_8_bit_bgr_keeping_their_content(endoscopy_frames, make, converted):
    frame = endoscopy_frames[0]
    out, what = as_bgr_uint8(make(frame))
    assert what == converted and out.shape == frame.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    expected = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if "grayscale" in (what or "") else frame
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("bad, match", [
    (np.empty((0, 0, 3), np.uint8), "empty frame"),
    (np.zeros((10, 10, 3), np.float32), "dtype float32"),
    (np.zeros((10, 10, 2), np.uint8), "not an image"),
    (np.zeros(100, np.uint8), "not an image"),
    (b"jpeg bytes", "not an image array"),
])
def test_unusable_frames_are_refused_with_the_reason(bad, match):
    with pytest.raises(InputError, match=match):
        as_bgr_uint8(bad)


class DeliversOddFrames(FrameSource):
    """A replay that delivers a fixed list of arrays as fast as asked, then ends."""

    description = "odd frames"

    def __init__(self, frames: list) -> None:
        self.frames = list(frames)

    def read(self):
        return self.frames.pop(0) if self.frames else None


def test_the_capture_loop_converts_or_skips_each_odd_frame_counts_it_and_goes_on(tmp_path, endoscopy_frames,
                                                                                  monkeypatch):
    """Regression story: a grayscale or 16-bit frame used to reach the ring's BGR slot and raise a
    broadcasting ValueError that killed the capture process (the supervisor then restarted it, losing
    seconds of video each time). Now: 10 frames in, 7 in the ring (4 of them converted), 3 skipped and
    counted as invalid, the replay ends normally, and /metrics balances captured = written + dropped."""
    base = endoscopy_frames[0]
    delivered = [
        base,
        cv2.cvtColor(base, cv2.COLOR_BGR2GRAY),                                 # converted
        base.astype(np.uint16) * 257,                                           # converted
        np.empty((0, 0, 3), np.uint8),                                          # skipped: empty
        cv2.resize(base, (1040, 924)),                                          # size change, shrunk to the slot
        base.astype(np.float32),                                                # skipped: dtype
        cv2.cvtColor(base, cv2.COLOR_BGR2BGRA),                                 # converted
        cv2.cvtColor(base, cv2.COLOR_BGR2GRAY).astype(np.uint16)[:, :, None] * 257,  # converted
        np.zeros(50, np.uint8),                                                 # skipped: not an image
        endoscopy_frames[1],
    ]
    monkeypatch.setattr(capture_process, "open_source", lambda config, threads=1: DeliversOddFrames(delivered))
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 16, (640, 540), 32)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/wake.sock")
    capture = CaptureProcess("odd", FileSource(kind="file", path=tmp_path / "unused.mp4"), ScopeMaskConfig(),
                             ring.name, f"ipc://{tmp_path}/wake.sock", Flag(), None)
    errors: list[BaseException] = []

    def run_main() -> None:  # the process's main(), in a thread: same code, but monkeypatchable
        try:
            capture.main()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_main)
    try:
        thread.start()
        thread.join(60)
        assert not thread.is_alive() and not errors, errors
        header = ring.header
        assert RingState.decode(header["state"]) is RingState.ENDED
        assert (int(header["captured"]), int(header["invalid"]), int(header["converted"])) == (7, 3, 4)
        frames = [ring.read(seq, frame=True) for seq in range(1, 8)]
        assert all(f.frame.dtype == np.uint8 and f.frame.shape[2] == 3 and f.model_rgb.shape == (32, 32, 3)
                   for f in frames)
        assert frames[0].size == (520, 462) and frames[3].size[1] == 540 and frames[3].size[0] < 640
        grey = frames[1].frame
        assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
        assert np.abs(frames[2].frame.astype(int) - base).max() <= 1  # 16-bit scaled back to 8 bits
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        metrics.init_stream("odd")
        metrics.sync_capture("odd", int(header["captured"]), int(header["errors"]), 0, int(header["state"]),
                             float(header["last_capture"]), 0, invalid=int(header["invalid"]),
                             converted=int(header["converted"]))
        value = registry.get_sample_value
        assert value("stream_monitor_frames_captured_total", {"stream": "odd"}) == 10
        assert value("stream_monitor_frames_dropped_total",
                     {"stream": "odd", "stage": "capture", "reason": "invalid_frame"}) == 3
        assert value("stream_monitor_frames_converted_total", {"stream": "odd"}) == 4
    finally:
        thread.join(5)
        pull.close(linger=0)
        context.term()
        ring.close()
        ring.unlink()


def _damaged_mjpeg(path, frames: list[np.ndarray], damaged: list[int]) -> None:
    """An MJPEG AVI of `frames` whose frames at `damaged` have their JPEG header zeroed (a decoder error)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == len(frames)
    for index in damaged:
        data[starts[index]:starts[index] + 600] = bytes(600)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mode", ["lossless", "frame_skipping"])
def test_a_decoder_error_mid_file_skips_the_frame_instead_of_ending_the_replay(tmp_path, endoscopy_frames, mode):
    """Regression story: OpenCV reports an undecodable frame exactly like the end of the file, so the
    first damaged frame used to end the replay (and with `loop: true` restart it, never getting past
    it). Now the real capture process reads past 4 damaged frames of 60, counts them as read errors,
    and ends at the real end of the file — also when it only decodes (frame skipping)."""
    small = [cv2.resize(f, (260, 231), interpolation=cv2.INTER_AREA) for f in endoscopy_frames]
    path = tmp_path / "damaged.avi"
    _damaged_mjpeg(path, small, damaged=[20, 21, 22, 40])
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 8, (260, 231), 16)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/wake.sock")
    process = CaptureProcess("damaged", FileSource(kind="file", path=path, pace=300.0, lossless=mode == "lossless"),
                             ScopeMaskConfig(mode="off"), ring.name, f"ipc://{tmp_path}/wake.sock", Flag(), None,
                             frame_skipping=mode == "frame_skipping")
    try:
        process.start()
        deadline = time.monotonic() + 120
        while process.is_alive() and time.monotonic() < deadline:  # a lossless replay waits for its consumer
            if pull.poll(50):
                pull.recv()
            time.sleep(0.01)  # a consumer slower than the replay: frame skipping has something to skip
            ring.mark_consumed(ring.write_seq)
        process.join(10)
        assert process.exitcode == 0
        header = ring.header
        assert RingState.decode(header["state"]) is RingState.ENDED
        assert int(header["captured"]) + int(header["skipped"]) == 56 and int(header["errors"]) == 4
        assert (int(header["skipped"]) > 0) == (mode == "frame_skipping")
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
        pull.close(linger=0)
        context.term()
        ring.close()
        ring.unlink()
