"""Message schema v1: round trips, and refusal of anything that is not a valid v1 message."""

from __future__ import annotations

import pickle

import msgpack
import numpy as np
import pytest

from stream_monitor.transport.messages import alert_message, decode_heatmap, frame_header, result_message
from stream_monitor.transport.schema import SchemaError, decode, encode, topic


def _result(**changes) -> dict:
    message = result_message(
        stream="endo1", seq=12, prev_seq=10, t_capture=1.7e9, t_result=1.7e9 + 0.04, latency_s=0.04, batch_size=2,
        probs=np.array([0.1, 0.7, 0.2], np.float32), class_names=["a", "b", "c"], score=np.float64(3.5),
        smoothed_score=3.5, threshold=2.0, distance=np.float64(3.0), bias_term=0.2, rho=0.9,
        alert={"active": True, "id": 1, "since": 1.7e9, "over": 3, "window": 5},
        top_neurons=np.array([5, 9]), deviations=np.array([0.5, -0.25], np.float32),
        heatmap=np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7), frame_size=(640, 540), box=(0, 540, 0, 640))
    return {**message, **changes}


def test_result_round_trip_keeps_every_field():
    message = _result()
    decoded = decode(encode(message))
    assert decoded == message
    assert decoded["class_name"] == "b" and decoded["probability"] == pytest.approx(0.7)
    assert decoded["over_threshold"] is True and decoded["parts"]["distance"] == 3.0
    heat = decode_heatmap(decoded["heatmap"])
    assert heat.shape == (7, 7) and heat[0, 0] == 0 and heat[-1, -1] == 1
    assert len(encode(message)) < 600  # small enough to send per frame


def test_alert_and_frame_messages():
    record = {"event": "end", "stream": "s", "alert_id": 2, "seq": 40, "t_capture": 1.0, "score": 0.5,
              "threshold": 2.0, "duration_s": 3.5, "peak_score": 9.0, "frames_over": 20, "reason": "quiet"}
    assert decode(encode(alert_message(record, 2.0)))["duration_s"] == 3.5
    header = frame_header("s", 3, 1.0, 640, 480)
    assert decode(encode(header)) == header
    assert topic("frame", "s") == b"frame/s"
    with pytest.raises(ValueError):
        topic("video", "s")


def test_unknown_fields_are_kept_for_forward_compatibility():
    assert decode(msgpack.packb(_result(new_field=[1, 2])))["new_field"] == [1, 2]


@pytest.mark.parametrize("change, match", [
    ({"v": 2}, "version 2 is not supported"),
    ({"type": "command"}, "unknown message type"),
    ({"seq": "12"}, "'seq' is str"),
    ({"over_threshold": 1}, "'over_threshold' is int"),
    ({"score": True}, "'score' is bool"),
    ({"parts": {"distance": 1.0}}, "result.parts: missing field 'bias_term'"),
    ({"heatmap": {"h": 7, "w": 7, "data": b"x"}}, "data length"),
])
def test_invalid_messages_are_refused(change, match):
    with pytest.raises(SchemaError, match=match):
        decode(msgpack.packb(_result(**change), use_bin_type=True))


_EVIDENCE = {"fired": ["fusion z(neco)+z(bstats)"], "detector": "fusion z(neco)+z(bstats)", "detector_score": 2.5,
             "components": {"neco": 0.4, "bstats": 2.1}, "nero_score": 0.9, "site_score": None, "p_site": None,
             "p_nero": None}


def test_a_served_fusions_components_travel_and_bad_ones_are_refused():
    message = _result(evidence=_EVIDENCE)
    assert decode(encode(message))["evidence"]["components"] == {"neco": 0.4, "bstats": 2.1}
    # an integer map key is refused by msgpack itself (strict_map_key), before the table is read
    for bad, match in (([0.4, 2.1], "components"), ({"neco": "high"}, "components"), ({1: 0.4}, "msgpack")):
        wire = msgpack.packb(_result(evidence={**_EVIDENCE, "components": bad}), use_bin_type=True)
        with pytest.raises(SchemaError, match=match):
            decode(wire)


def test_missing_fields_garbage_and_oversize_are_refused():
    message = _result()
    del message["threshold"]
    with pytest.raises(SchemaError, match="missing field 'threshold'"):
        decode(msgpack.packb(message))
    with pytest.raises(SchemaError, match="not a msgpack message|not a map"):
        decode(b"\xc1\xff\x00")
    with pytest.raises(SchemaError, match="not a map"):
        decode(msgpack.packb([1, 2, 3]))
    with pytest.raises(SchemaError, match="exceeds"):
        decode(b"\x00" * (2 << 20))


def test_a_pickle_on_the_wire_is_never_unpickled():
    """Regression story: a viewer must not be a remote-code-execution endpoint. A pickle whose loading
    would run code is just bytes that fail validation."""
    class Exploit:
        def __reduce__(self):
            return (pytest.fail, ("the payload was unpickled",))

    with pytest.raises(SchemaError):
        decode(pickle.dumps(Exploit()))
    with pytest.raises(SchemaError):
        decode(msgpack.packb(msgpack.ExtType(42, b"payload")))
