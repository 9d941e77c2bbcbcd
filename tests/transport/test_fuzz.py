"""Message decoding fuzzed (issue 5, item 8): whatever arrives on a socket, `decode` returns a valid
version-1 message or raises `SchemaError`, and the consumers — the overlay viewer, its renderer and the
result collector — never crash on what `decode` lets through.

Inputs: random bytes, random msgpack trees, and valid messages with one field deleted, replaced by a
random value (any msgpack type, NaN and inf included) or added, at any depth. The last test sends them
over real ZeroMQ sockets to a running viewer and collector.

Regression story: `decode` accepted `v: true` (True == 1 in Python), lists of strings as `probs`, box
coordinates past OpenCV's int32 and negative heatmap sizes whose product matched the data; the viewer
then crashed drawing them (int(NaN), a reshape to negative sizes, an overflow in cv2.rectangle).
"""

from __future__ import annotations

import math
import time

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_monitor.demo.summary import RunRecord
from stream_monitor.overlay import OverlayViewer, render_overlay
from stream_monitor.overlay.sinks import Sink
from stream_monitor.transport.collector import ResultCollector
from stream_monitor.transport.messages import alert_message, frame_header, result_message
from stream_monitor.transport.schema import SchemaError, decode, encode, topic
from stream_monitor.transport.sockets import Publisher

FRAME = np.full((240, 320, 3), 90, np.uint8)
LEAVES = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12) | st.binary(max_size=48))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)


def _result(seq: int = 7, prev_seq: int = 5) -> dict:
    return result_message(
        stream="endo", seq=seq, prev_seq=prev_seq, t_capture=100.0, t_result=100.05, latency_s=0.05, batch_size=1,
        probs=np.array([0.8, 0.1, 0.1]), class_names=["a", "b", "c"], score=1.5, smoothed_score=1.5, threshold=2.0,
        distance=1.5, bias_term=0.1, rho=0.9, alert={"active": True, "id": 1, "since": 99.0, "over": 3, "window": 5},
        top_neurons=np.array([3, 1]), deviations=np.array([0.4, -0.2]), heatmap=np.eye(7, dtype=np.float32),
        frame_size=(320, 240), box=(0, 240, 0, 320))


def _valid_messages() -> list[dict]:
    alert = {"event": "start", "stream": "endo", "alert_id": 1, "seq": 7, "t_capture": 100.0, "score": 3.0,
             "threshold": 2.0, "duration_s": None, "peak_score": None, "frames_over": None, "reason": None}
    return [_result(), {**_result(), "flags": ["non_finite_score"]}, alert_message(alert, 100.1),
            frame_header("endo", 7, 100.0, 320, 240)]


def _paths(value, prefix=()):
    """Every path into nested maps and lists: ("parts", "rho"), ("probs", 1), …"""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw) -> bytes:
    message = draw(st.sampled_from(_valid_messages()))
    path = draw(st.sampled_from([p for p in _paths(message) if p]))
    *parents, last = path
    target = message
    for key in parents:
        target = target[key]
    operation = draw(st.sampled_from(["delete", "replace", "add"]))
    if operation == "delete":
        del target[last]
    elif operation == "replace":
        target[last] = draw(VALUES)
    elif isinstance(target, dict):
        target[draw(st.text(max_size=8))] = draw(VALUES)
    else:
        target.append(draw(VALUES))
    return msgpack.packb(message, use_bin_type=True)


WIRE = st.binary(max_size=512) | VALUES.map(lambda v: msgpack.packb(v, use_bin_type=True)) | mutated()


def _consume(data: bytes) -> dict | None:
    """What the consumers do with one header: decode, then (for a result) record and draw it."""
    try:
        message = decode(data)
    except SchemaError:
        return None
    assert isinstance(message, dict) and message["v"] == 1
    RunRecord().add(message)
    if message["type"] == "result":
        image = render_overlay(FRAME, message, height=360)
        assert image.shape[0] == 360
    return message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(WIRE)
def test_decode_accepts_valid_messages_and_refuses_everything_else_without_crashing_a_consumer(data):
    _consume(data)


def test_the_valid_messages_used_as_seeds_are_valid():
    """The mutations start from messages that decode: otherwise the fuzzing above tests nothing."""
    for message in _valid_messages():
        assert decode(encode(message))["type"] == message["type"]
    assert math.isnan(decode(encode({**_result(), "score": float("nan")}))["score"])  # NaN is a number


class _Count(Sink):
    def __init__(self):
        self.written = 0

    def write(self, image, t_capture):
        self.written += 1


def test_a_running_viewer_and_collector_survive_fuzzed_traffic_and_count_it(tmp_path):
    """Real sockets: fuzzed headers on the results socket (and fuzzed multipart messages on the frames
    socket) between valid results. After each one a valid result with a new seq is sent; the viewer
    must render it and count the fuzzed header as invalid exactly when `decode` refuses it; the
    collector thread must still be running at the end and have counted the same."""
    context = zmq.Context()
    results = Publisher(context, f"ipc://{tmp_path}/r.sock", hwm=10_000)
    frames = Publisher(context, f"ipc://{tmp_path}/f.sock", hwm=10_000)
    sink = _Count()
    viewer = OverlayViewer(results.endpoint, "endo", [sink], frames_endpoint=frames.endpoint, height=360)
    collected = RunRecord()
    collector = ResultCollector(collected.add)
    collector.endpoint = results.endpoint
    collector.start()
    refused = {"n": 0}
    try:
        assert results.wait_for_subscribers(b"result/endo", 2, 10) and frames.wait_for_subscribers(b"frame/endo", 1, 10)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(header=WIRE, frame_parts=st.lists(st.binary(max_size=64), max_size=4))
        def one_round(header, frame_parts):
            sentinel = 10 ** 9 + viewer.stats.rendered
            invalid_before = viewer.stats.invalid_messages
            try:
                decode(header)
                bad = 0
            except SchemaError:
                bad = 1
            refused["n"] += bad
            results.send([topic("result", "endo"), header])
            if frame_parts:
                frames.send([topic("frame", "endo"), *frame_parts])
            ok, jpeg = __import__("cv2").imencode(".jpg", FRAME)
            frames.send([topic("frame", "endo"), encode(frame_header("endo", sentinel, 100.0, 320, 240)), jpeg.tobytes()])
            results.send([topic("result", "endo"), encode(_result(sentinel, sentinel - 1))])
            deadline = time.monotonic() + 10
            while viewer._gaps.last_seq.get("endo") != sentinel or not viewer.render_ready():
                assert time.monotonic() < deadline, "the viewer stopped taking messages"
                viewer._receive(50)
            assert viewer.stats.invalid_messages - invalid_before >= bad  # + refused frame messages, if any

        one_round()
        deadline = time.monotonic() + 10
        while collector.invalid < refused["n"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.is_alive() and collector.invalid == refused["n"] > 0
        assert sink.written == viewer.stats.rendered >= 60
    finally:
        collector.stop()
        viewer.close()
        results.close()
        frames.close()
        context.term()
