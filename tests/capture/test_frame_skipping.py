"""Frame skipping (`pipeline.frame_skipping`, used by the 16-stream soak): while the frame a capture
process wrote last still waits for the model, the next ones are only decoded, and counted."""

from __future__ import annotations

import time
import uuid

import cv2
import numpy as np
import zmq

from stream_monitor.capture.process import CaptureProcess
from stream_monitor.capture.ring import FrameRing, RingState
from stream_monitor.config import FileSource, ScopeMaskConfig
from stream_monitor.service import Flag


def test_frames_are_only_decoded_while_the_last_one_waits_and_every_one_is_counted(tmp_path):
    """A 40-frame replay as fast as possible; the consumer (this test) takes a frame only now and then.
    Frames written are exactly the ones the consumer could take (at most one waiting at a time), the
    others are counted as skipped, and written + skipped = 40: nothing vanishes."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
    for i in range(40):
        writer.write(np.full((64, 96, 3), 5 * i, np.uint8))
    writer.release()
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 8, (96, 64), 16)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/wake.sock")
    process = CaptureProcess("s", FileSource(kind="file", path=path, pace=200.0), ScopeMaskConfig(mode="off"),
                             ring.name, f"ipc://{tmp_path}/wake.sock", Flag(), None, frame_skipping=True)
    try:
        process.start()
        deadline = time.monotonic() + 60
        most_waiting = 0
        while process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.03)  # a slow model: one frame per ~6 frame periods
            most_waiting = max(most_waiting, ring.backlog())
            ring.mark_consumed(ring.write_seq)
        process.join(10)
        assert process.exitcode == 0 and ring.state is RingState.ENDED
        written, skipped = int(ring.header["captured"]), int(ring.header["skipped"])
        late = int(ring.header["late"])  # 200 fps: a loaded machine can fall behind (test below)
        assert written + skipped + late == 40 and skipped > 10 and written >= 2 and most_waiting == 1
        # The frames written are in decode order, later ones after skips: their grey levels increase.
        levels = [int(ring.read(seq, frame=True).frame.mean()) for seq in range(max(1, written - 3), written + 1)]
        assert levels == sorted(levels)
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        pull.close(linger=0)
        context.term()
        ring.close()
        ring.unlink()


def test_an_image_folder_skips_without_decoding(tmp_path):
    """Skipping an image costs nothing: the file is not even read (a broken one is not an error then)."""
    from stream_monitor.capture.sources import open_source
    from stream_monitor.config import FolderSource

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    (tmp_path / "1.png").write_bytes(b"broken")
    source = open_source(FolderSource(kind="folder", path=tmp_path))
    assert int(source.read().mean()) == 0 and source.skip() and int(source.read().mean()) == 80
    assert not source.skip() and source.skipped == 0


def test_a_paced_replay_that_falls_behind_skips_the_overdue_frames_and_counts_them(tmp_path):
    """Issue 16: a replay paced at a rate its capture process cannot keep (here 100 000 fps: 300 frames
    due within 3 ms, while decoding, cropping and resizing each 640 × 480 frame takes longer than 10 µs)
    used to restart its schedule after every late frame and so play slower than the recording. Now,
    once more than 0.1 s behind, it skips the frames already overdue (decoded only) and counts each as
    `late` (dropped{capture, behind_schedule}): written + late = every frame of the file."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for i in range(300):
        writer.write(np.roll(noise, i, axis=1))
    writer.release()
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 8, (640, 480), 16)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"ipc://{tmp_path}/wake.sock")
    process = CaptureProcess("s", FileSource(kind="file", path=path, pace=100_000.0), ScopeMaskConfig(mode="off"),
                             ring.name, f"ipc://{tmp_path}/wake.sock", Flag(), None)
    try:
        process.start()
        process.join(60)
        assert process.exitcode == 0 and ring.state is RingState.ENDED
        written, late = int(ring.header["captured"]), int(ring.header["late"])
        assert late > 0 and written + late == 300 and int(ring.header["skipped"]) == 0
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        pull.close(linger=0)
        context.term()
        ring.close()
        ring.unlink()
