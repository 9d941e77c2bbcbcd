"""Video sources (real files written with OpenCV, real image folders) and the capture process."""

from __future__ import annotations

import uuid

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from stream_monitor.capture.process import CaptureProcess
from stream_monitor.capture.ring import FrameRing, RingState
from stream_monitor.capture.sources import SourceError, open_source, opencv_has_gstreamer
from stream_monitor.config import CameraSource, FileSource, FolderSource, GStreamerSource, RtspSource, ScopeMaskConfig
from stream_monitor.service import Flag


@pytest.fixture
def video(tmp_path):
    """A real 20-frame, 25 fps MP4 whose frame i has grey level 10·i."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 64))
    for i in range(20):
        writer.write(np.full((64, 96, 3), 10 * i, np.uint8))
    writer.release()
    return path


def _read_all(source) -> list[np.ndarray]:
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    return frames


def test_video_file_paced_at_its_rate_a_given_rate_or_as_fast_as_possible(video):
    native = open_source(FileSource(kind="file", path=video))
    assert native.frame_interval == pytest.approx(1 / 25) and not native.live
    frames = _read_all(native)
    assert len(frames) == 20 and frames[0].shape == (64, 96, 3)
    assert abs(int(frames[19].mean()) - 190) < 6  # mp4v is lossy, not wrong
    assert not native.rewind()  # loop is off
    native.close()
    assert open_source(FileSource(kind="file", path=video, pace=5, speed=2)).frame_interval == pytest.approx(0.1)
    looping = open_source(FileSource(kind="file", path=video, pace="max", loop=True))
    assert looping.frame_interval is None
    assert len(_read_all(looping)) == 20 and looping.rewind() and len(_read_all(looping)) == 20
    looping.close()


def test_image_folder_replays_sorted_and_skips_unreadable_files(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((10, 12, 3), i * 50, np.uint8))
    (tmp_path / "01b.jpg").write_bytes(b"not a jpeg")
    source = open_source(FolderSource(kind="folder", path=tmp_path, fps=4, loop=True))
    assert source.frame_interval == 0.25
    assert [int(f[0, 0, 0]) for f in _read_all(source)] == [0, 50, 100] and source.skipped == 1
    assert source.rewind()


def test_sources_that_cannot_open_say_why(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(FileSource(kind="file", path=tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="holds no images"):
        open_source(FolderSource(kind="folder", path=tmp_path))
    with pytest.raises(SourceError, match="camera"):
        open_source(CameraSource(kind="camera", device="/dev/video-none"))
    with pytest.raises(SourceError, match=r"RTSP stream rtsp://user:\*\*\*@127\.0\.0\.1"):
        open_source(RtspSource(kind="rtsp", url="rtsp://user:secret@127.0.0.1:1/none"))


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_without_backend_is_a_clear_error():
    with pytest.raises(SourceError, match="no GStreamer back-end"):
        open_source(GStreamerSource(kind="gstreamer", pipeline="videotestsrc ! appsink"))


def test_capture_process_fills_the_ring_wakes_the_loop_and_ends(tmp_path, video):
    """The real process: a paced replay into a ring, with the scope crop and model resize done, a
    wake-up per frame on the PULL socket and the ring header's counters and state kept."""
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 32, (96, 64), 16)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/wake.sock"
    pull.bind(endpoint)
    process = CaptureProcess("s", FileSource(kind="file", path=video, pace=100.0), ScopeMaskConfig(mode="off"),
                             ring.name, endpoint, Flag(), None)
    try:
        process.start()
        messages = []
        while not (messages and messages[-1]["e"]):
            assert pull.poll(60_000), "no wake-up from the capture process"
            messages.append(msgpack.unpackb(pull.recv()))
        process.join(30)
        assert process.exitcode == 0
        assert [m["q"] for m in messages[:-1]] == list(range(1, 21))
        assert int(ring.header["captured"]) == 20 and ring.state is RingState.ENDED
        last = ring.read(20, frame=True)
        assert last.model_rgb.shape == (16, 16, 3) and last.size == (96, 64) and last.box == (0, 64, 0, 96)
        assert 0 < last.t_capture and float(ring.header["source_fps"]) == pytest.approx(100)
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        pull.close()
        context.term()
        ring.close()
        ring.unlink()
