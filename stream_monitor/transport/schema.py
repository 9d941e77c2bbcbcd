"""The wire format, version 1: msgpack maps, validated on both sides. Documented in docs/message-schema.md.

Every message is a ZeroMQ multipart message `[topic, header]` or, for frames, `[topic, header, jpeg]`.
The header is a msgpack map with `v` (schema version) and `type`. Decoders reject a wrong version, a
missing field or a field of the wrong type, and ignore fields they do not know, so that version 1 can
grow optional fields without breaking old viewers; a breaking change bumps `v`.

msgpack only builds maps, lists, strings, bytes and numbers: nothing from a socket is ever unpickled or
executed. Sizes are capped when unpacking so that a hostile peer cannot make a viewer allocate gigabytes.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import StreamMonitorError

__all__ = ["ALERT_FIELDS", "FRAME_FIELDS", "RESULT_FIELDS", "SCHEMA_VERSION", "STATUS_FIELDS", "STREAM_STATES", "SchemaError", "decode",
           "encode", "topic", "validate"]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # a result is ~1 KiB; a header is never a megabyte
TOPICS = ("result", "alert", "frame", "status")
STREAM_STATES = ("running", "stale", "reconnecting", "ended", "failed", "stopped")

_NUM = (int, float)
_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))

# name → accepted Python types after unpacking. Every listed field is required (it may be None where
# None is listed); nested maps are checked by their own tables.
RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "v": (int,), "type": (str,), "stream": (str,), "seq": (int,), "prev_seq": (int,),
    "t_capture": _NUM, "t_result": _NUM, "latency_s": _NUM, "batch_size": (int,),
    "class_id": (int,), "class_name": (str,), "probability": _NUM, "probs": (list,),
    "score": _NUM, "smoothed_score": _NUM, "threshold": _NUM, "over_threshold": (bool,),
    "parts": (dict,), "alert": (dict,), "top_neurons": (dict,), "heatmap": (dict, type(None)), "frame": (dict,),
}
PARTS_FIELDS = {"distance": _NUM, "bias_term": _NUM, "rho": _NUM}
ALERT_STATE_FIELDS = {"active": (bool,), "id": _OPT_INT, "since": _OPT_NUM, "over": (int,), "window": (int,)}
NEURON_FIELDS = {"ids": (list,), "deviations": (list,)}
HEATMAP_FIELDS = {"h": (int,), "w": (int,), "data": (bytes,)}
FRAME_INFO_FIELDS = {"width": (int,), "height": (int,), "box": (list,)}
# Optional (added within v1; old viewers ignore it): the stream-level drift signal, docs/message-schema.md.
DRIFT_FIELDS = {"raised": (bool,), "cusum": _NUM, "threshold": _NUM, "share": _NUM, "expected": _NUM,
                "since": _OPT_NUM}
# Optional (within v1): after site enrollment, which evidence the fused score rests on (site/scorer.py).
EVIDENCE_FIELDS = {"fired": (list,), "nero_score": _OPT_NUM, "site_score": _OPT_NUM, "p_site": _OPT_NUM,
                   "p_nero": _OPT_NUM}

ALERT_FIELDS: dict[str, tuple[type, ...]] = {
    "v": (int,), "type": (str,), "event": (str,), "stream": (str,), "alert_id": (int,), "seq": (int,),
    "t_capture": _NUM, "t_event": _NUM, "score": _NUM, "threshold": _NUM,
    "duration_s": _OPT_NUM, "peak_score": _OPT_NUM, "frames_over": _OPT_INT, "reason": (str, type(None)),
}
FRAME_FIELDS: dict[str, tuple[type, ...]] = {
    "v": (int,), "type": (str,), "stream": (str,), "seq": (int,), "t_capture": _NUM,
    "width": (int,), "height": (int,), "encoding": (str,),
}
STATUS_FIELDS: dict[str, tuple[type, ...]] = {
    "v": (int,), "type": (str,), "stream": (str,), "state": (str,), "t_event": _NUM, "last_seq": (int,),
    "captured": (int,), "processed": (int,), "dropped": (int,),
}
_TABLES = {"result": RESULT_FIELDS, "alert": ALERT_FIELDS, "frame": FRAME_FIELDS, "status": STATUS_FIELDS}
_MAX_PIXELS = 1 << 16  # frame sizes and box coordinates: larger is not a frame, and overflows OpenCV's int32
_NESTED = {"parts": PARTS_FIELDS, "alert": ALERT_STATE_FIELDS, "top_neurons": NEURON_FIELDS,
           "heatmap": HEATMAP_FIELDS, "frame": FRAME_INFO_FIELDS}


class SchemaError(StreamMonitorError):
    """A message that is not valid version-1 stream-monitor msgpack."""


def topic(kind: str, stream: str) -> bytes:
    """ZeroMQ topic of a message: b"result/<stream>", b"alert/<stream>" or b"frame/<stream>".

    SUB sockets match prefixes: subscribe to b"result/" for every stream's results.
    """
    if kind not in TOPICS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"{kind}/{stream}".encode()


def _check(message: dict, table: dict[str, tuple[type, ...]], where: str) -> None:
    for name, types in table.items():
        if name not in message:
            raise SchemaError(f"{where}: missing field {name!r}")
        value = message[name]
        # bool is an int in Python; a bool where a number is expected (or the reverse) is a sender bug.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise SchemaError(f"{where}: field {name!r} is {type(value).__name__}, expected "
                              f"{' or '.join(t.__name__ for t in types)}")


def validate(message: Any) -> dict:
    """Check a decoded message against its type's table (and nested tables); returns it."""
    if not isinstance(message, dict):
        raise SchemaError(f"message is a {type(message).__name__}, not a map")
    version = message.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SchemaError(f"schema version {version!r} is not supported (this build reads v{SCHEMA_VERSION})")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _TABLES:  # a list or map here is unhashable: not a lookup
        raise SchemaError(f"unknown message type {kind!r}")
    _check(message, _TABLES[kind], kind)
    if kind == "result":
        _check_result(message)
    if kind == "status" and message["state"] not in STREAM_STATES:
        raise SchemaError(f"status: unknown state {message['state']!r}")
    return message


def _items(values: list, types: tuple[type, ...], where: str) -> None:
    for value in values:
        if not isinstance(value, types) or isinstance(value, bool):
            raise SchemaError(f"{where}: holds a {type(value).__name__}, expected {' or '.join(t.__name__ for t in types)}")


def _check_result(message: dict) -> None:
    """The nested maps and list items of a result: consumers index, format and draw them, so a wrong
    type inside a list must be refused here, not crash a viewer later."""
    for name, table in _NESTED.items():
        if message[name] is not None:
            if not isinstance(message[name], dict):
                raise SchemaError(f"result.{name}: is {type(message[name]).__name__}, expected dict")
            _check(message[name], table, f"result.{name}")
    _items(message["probs"], _NUM, "result.probs")
    neurons = message["top_neurons"]
    _items(neurons["ids"], (int,), "result.top_neurons.ids")
    _items(neurons["deviations"], _NUM, "result.top_neurons.deviations")
    if len(neurons["ids"]) != len(neurons["deviations"]):
        raise SchemaError("result.top_neurons: ids and deviations differ in length")
    frame = message["frame"]
    box = frame["box"]
    _items(box, (int,), "result.frame.box")
    if len(box) != 4 or not all(0 <= v <= _MAX_PIXELS for v in (*box, frame["width"], frame["height"])):
        raise SchemaError(f"result.frame: box must be 4 pixel coordinates and sizes within 0…{_MAX_PIXELS}")
    if "drift" in message:  # optional: the stream-level "input not validated" signal
        if not isinstance(message["drift"], dict):
            raise SchemaError("result: field 'drift' is not a map")
        _check(message["drift"], DRIFT_FIELDS, "result.drift")
    if "evidence" in message:  # optional: site enrollment's evidence (site model, NERO) behind the score
        if not isinstance(message["evidence"], dict):
            raise SchemaError("result: field 'evidence' is not a map")
        _check(message["evidence"], EVIDENCE_FIELDS, "result.evidence")
        _items(message["evidence"]["fired"], (str,), "result.evidence.fired")
        components = message["evidence"].get("components", {})  # optional: a served fusion's parts
        if not isinstance(components, dict) or not all(isinstance(k, str) for k in components):
            raise SchemaError("result.evidence.components: must map component names to numbers")
        _items(list(components.values()), _OPT_NUM, "result.evidence.components")
    if "flags" in message:  # optional: the reasons a frame's score is not trusted (NaN / inf)
        if not isinstance(message["flags"], list):
            raise SchemaError(f"result: field 'flags' is {type(message['flags']).__name__}, expected list")
        _items(message["flags"], (str,), "result.flags")
    heatmap = message["heatmap"]
    if heatmap is not None:
        if not (0 <= heatmap["h"] <= _MAX_PIXELS and 0 <= heatmap["w"] <= _MAX_PIXELS):
            raise SchemaError("result.heatmap: h and w must be within 0…65536")
        if len(heatmap["data"]) != heatmap["h"] * heatmap["w"]:
            raise SchemaError("result.heatmap: data length is not h × w")


def encode(message: dict) -> bytes:
    """Validate and pack a message (plain Python types only: convert NumPy scalars first)."""
    return msgpack.packb(validate(message), use_bin_type=True)


def decode(data: bytes | memoryview) -> dict:
    """Unpack and validate one header.

    Raises:
        SchemaError: not msgpack, too large, or not a valid version-1 message.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SchemaError(f"not a msgpack message: {exc}") from exc
    return validate(message)
