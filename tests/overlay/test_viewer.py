"""The overlay: rendering, pairing results with frames over real sockets, gap counting, and sinks."""

from __future__ import annotations

import time
import urllib.request

import cv2
import numpy as np
import pytest
import zmq

from stream_monitor.overlay import Mp4Sink, OverlayViewer, ViewerStatus, render_overlay
from stream_monitor.overlay.mjpeg import MjpegServer
from stream_monitor.overlay.sinks import Sink, SinkError, WindowSink
from stream_monitor.overlay.stream_state import STATE_LABELS, mark_stream_state
from stream_monitor.transport.messages import frame_header, result_message
from stream_monitor.transport.schema import encode, topic
from stream_monitor.transport.sockets import Publisher


def _result(seq: int, prev_seq: int, score: float = 1.0, active: bool = False, t: float = 100.0) -> dict:
    return result_message(
        stream="endo", seq=seq, prev_seq=prev_seq, t_capture=t, t_result=t + 0.05, latency_s=0.05, batch_size=1,
        probs=np.array([0.8, 0.1, 0.1]), class_names=["normal-cecum", "b", "c"], score=score, smoothed_score=score,
        threshold=2.0, distance=score, bias_term=0.0, rho=1.0,
        alert={"active": active, "id": 1 if active else None, "since": t - 1 if active else None, "over": 3, "window": 5},
        top_neurons=np.array([3, 1]), deviations=np.array([0.4, -0.2]), heatmap=np.eye(7, dtype=np.float32),
        frame_size=(320, 240), box=(0, 240, 0, 320))


FRAME = np.full((240, 320, 3), 120, np.uint8)


def test_render_shows_state_in_the_banner_and_keeps_the_layout():
    calm = render_overlay(FRAME, _result(1, 0, score=1.0), ViewerStatus(), height=480)
    alert = render_overlay(FRAME, _result(2, 1, score=5.0, active=True), ViewerStatus(2, 7), height=480)
    assert calm.shape == alert.shape == (480, 640 + 330, 3)
    banner_calm, banner_alert = calm[10:30, 5:60].mean(axis=(0, 1)), alert[10:30, 5:60].mean(axis=(0, 1))
    assert banner_calm[1] > banner_calm[2]  # green
    assert banner_alert[2] > banner_alert[1]  # red
    pending = render_overlay(FRAME, {**_result(3, 2, score=3.0), "over_threshold": True}, height=400)
    assert pending[10:30, 5:60].mean(axis=(0, 1))[2] > 200  # amber
    no_heat = render_overlay(FRAME, {**_result(4, 3), "heatmap": None}, heatmap=False)
    assert no_heat.shape[0] == 480


def _send_result(publisher: Publisher, message: dict) -> None:
    publisher.send([topic("result", message["stream"]), encode(message)])


def _send_frame(publisher: Publisher, seq: int) -> None:
    ok, jpeg = cv2.imencode(".jpg", FRAME)
    publisher.send([topic("frame", "endo"), encode(frame_header("endo", seq, 100.0, 320, 240)), jpeg.tobytes()])


class _Collect(Sink):
    def __init__(self):
        self.images = []

    def write(self, image, t_capture):
        self.images.append(image)


def test_viewer_pairs_results_with_frames_and_counts_both_kinds_of_gap(tmp_path):
    context = zmq.Context()
    results = Publisher(context, f"ipc://{tmp_path}/r.sock", hwm=100)
    frames = Publisher(context, f"ipc://{tmp_path}/f.sock", hwm=100)
    sink = _Collect()
    viewer = OverlayViewer(results.endpoint, "endo", [sink], frames_endpoint=frames.endpoint)
    try:
        assert results.wait_for_subscribers(b"result/endo", 1, 10) and frames.wait_for_subscribers(b"frame/endo", 1, 10)
        # seq 1; seq 3 (frame 2 skipped by the monitor); seq 5 published with prev 4, but 4 never
        # arrived (lost in transport); an invalid message in between is ignored.
        for seq, prev in ((1, 0), (3, 1), (5, 4)):
            _send_frame(frames, seq)
            _send_result(results, _result(seq, prev))
            if seq == 3:
                results.send([b"result/endo", b"\x92\x01\x02"])
            time.sleep(0.05)
            viewer._receive(500)
            viewer.render_ready()
        stats = viewer.stats
        assert stats.results == 3 and stats.frames == 3 and stats.rendered == 3
        assert stats.skipped_frames == 1 + 0 and stats.lost_results == 1 and stats.invalid_messages == 1
        assert sink.images[-1].shape == (480, 640 + 330, 3)
    finally:
        viewer.close()
        results.close()
        frames.close()
        context.term()


def test_viewer_needs_exactly_one_frame_source():
    with pytest.raises(ValueError):
        OverlayViewer("ipc:///tmp/none", None, [])


def test_mp4_sink_keeps_real_time(tmp_path):
    """Results arrive when they are scored; the file repeats each image until the next one's capture
    time so that it plays at the speed things happened."""
    sink = Mp4Sink(tmp_path / "o.mp4", fps=10)
    image = np.zeros((48, 64, 3), np.uint8)
    sink.write(image, 100.0)
    sink.write(image + 1, 100.5)  # half a second later: the first image held for 5 frames, then this one
    sink.write(image + 2, 100.52)  # falls on the frame just written: skipped
    sink.write(image + 3, 130.0)  # after a 30 s stall: held for at most max_hold_s (2 s = 20 frames)
    sink.close()
    assert sink.frames_written == 6 + 20 + 1 and sink.images == 3
    video = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 27
    video.release()


def test_window_sink_without_gui_is_a_clear_error():
    try:
        sink = WindowSink("test")
    except SinkError as exc:
        assert "no GUI" in str(exc)
    else:  # an OpenCV with a GUI and a display: the window opens
        sink.close()


def test_mjpeg_server_serves_the_newest_frame_to_each_client():
    server = MjpegServer(port=0).start()
    try:
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "snapshot.jpg", timeout=5)
        server.publish(np.full((20, 30, 3), 200, np.uint8))
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as stream:
            head = stream.read(300)
            server.publish(np.full((20, 30, 3), 10, np.uint8))
            assert head.startswith(b"--smframe\r\nContent-Type: image/jpeg")
        snapshot = cv2.imdecode(np.frombuffer(urllib.request.urlopen(server.url + "snapshot.jpg", timeout=5).read(),
                                              np.uint8), cv2.IMREAD_COLOR)
        assert snapshot.shape == (20, 30, 3) and snapshot.mean() < 30
    finally:
        server.stop()


def test_the_viewer_shows_no_signal_when_the_monitor_itself_goes_silent(tmp_path):
    """Issue 16: a monitor that dies sends no `status`, so the overlay kept showing its last frame as if
    live. Now, after `monitor_silent_s` without any message from the monitor, the last overlay is greyed
    under "NO SIGNAL"; the first result after that shows the live picture again."""
    context = zmq.Context()
    results = Publisher(context, f"ipc://{tmp_path}/r.sock", hwm=100)
    frames = Publisher(context, f"ipc://{tmp_path}/f.sock", hwm=100)
    sink = _Collect()
    viewer = OverlayViewer(results.endpoint, "endo", [sink], frames_endpoint=frames.endpoint, monitor_silent_s=0.5)
    try:
        assert results.wait_for_subscribers(b"result/endo", 1, 10) and frames.wait_for_subscribers(b"frame/endo", 1, 10)
        _send_frame(frames, 1)
        _send_result(results, _result(1, 0))
        viewer.run(lambda: viewer.stats.rendered == 1)
        live = sink.images[-1]
        viewer._receive(100)  # well within the silence allowed: nothing changes
        assert viewer.stats.stream_state == "running" and len(sink.images) == 1
        deadline = time.monotonic() + 5
        while viewer.stats.stream_state == "running" and time.monotonic() < deadline:
            viewer._receive(50)
        assert viewer.stats.stream_state == "monitor_silent"
        greyed = sink.images[-1]
        assert len(sink.images) == 2
        np.testing.assert_array_equal(greyed, mark_stream_state(live, "monitor_silent"))
        assert "NO SIGNAL" in STATE_LABELS["monitor_silent"]
        _send_frame(frames, 2)
        _send_result(results, _result(2, 1))
        viewer.run(lambda: viewer.stats.rendered == 2)
        assert viewer.stats.stream_state == "running"
    finally:
        viewer.close()
        results.close()
        frames.close()
        context.term()
