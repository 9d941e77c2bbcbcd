"""Builders of the version-1 messages (schema in `schema.py`, documented in docs/message-schema.md).

They take plain values and NumPy rows and return maps of plain Python types, ready for `schema.encode`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .schema import SCHEMA_VERSION

__all__ = ["alert_message", "frame_header", "heatmap_field", "result_message", "status_message"]


def heatmap_field(heat: np.ndarray | None) -> dict | None:
    """(h, w) float heatmap in [0, 1] → {"h", "w", "data": uint8 bytes, row-major, 0–255}."""
    if heat is None:
        return None
    quantised = np.clip(np.rint(np.asarray(heat, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    return {"h": int(quantised.shape[0]), "w": int(quantised.shape[1]), "data": quantised.tobytes()}


def decode_heatmap(field: dict | None) -> np.ndarray | None:
    """The inverse of `heatmap_field`: (h, w) float32 in [0, 1], or None."""
    if field is None:
        return None
    data = np.frombuffer(field["data"], dtype=np.uint8).reshape(field["h"], field["w"])
    return data.astype(np.float32) / 255.0


def result_message(*, stream: str, seq: int, prev_seq: int, t_capture: float, t_result: float,
                   latency_s: float, batch_size: int, probs: np.ndarray, class_names: Sequence[str],
                   score: float, smoothed_score: float, threshold: float, distance: float, bias_term: float,
                   rho: float, alert: dict, top_neurons: np.ndarray, deviations: np.ndarray,
                   heatmap: np.ndarray | None, frame_size: tuple[int, int], box: Sequence[int]) -> dict:
    """One scored frame. probs (C,) float; top_neurons (n,) int; deviations (n,) float; frame_size (w, h)."""
    class_id = int(np.argmax(probs))
    return {
        "v": SCHEMA_VERSION, "type": "result", "stream": stream, "seq": int(seq), "prev_seq": int(prev_seq),
        "t_capture": float(t_capture), "t_result": float(t_result), "latency_s": float(latency_s),
        "batch_size": int(batch_size),
        "class_id": class_id, "class_name": str(class_names[class_id]) if class_id < len(class_names) else str(class_id),
        "probability": float(probs[class_id]), "probs": [float(p) for p in probs],
        "score": float(score), "smoothed_score": float(smoothed_score), "threshold": float(threshold),
        "over_threshold": bool(smoothed_score > threshold),
        "parts": {"distance": float(distance), "bias_term": float(bias_term), "rho": float(rho)},
        "alert": alert,
        "top_neurons": {"ids": [int(i) for i in top_neurons], "deviations": [float(d) for d in deviations]},
        "heatmap": heatmap_field(heatmap),
        "frame": {"width": int(frame_size[0]), "height": int(frame_size[1]), "box": [int(v) for v in box]},
    }


def alert_message(record: dict, t_event: float) -> dict:
    """An alert start / end (an `AlertEvent.to_record()`) as a message."""
    return {"v": SCHEMA_VERSION, "type": "alert", "t_event": float(t_event), **{
        "event": record["event"], "stream": record["stream"], "alert_id": int(record["alert_id"]),
        "seq": int(record["seq"]), "t_capture": float(record["t_capture"]), "score": float(record["score"]),
        "threshold": float(record["threshold"]), "duration_s": record["duration_s"],
        "peak_score": record["peak_score"], "frames_over": record["frames_over"], "reason": record["reason"]}}


def frame_header(stream: str, seq: int, t_capture: float, width: int, height: int) -> dict:
    """Header of a viewer frame; the JPEG bytes follow as the message's third part."""
    return {"v": SCHEMA_VERSION, "type": "frame", "stream": stream, "seq": int(seq), "t_capture": float(t_capture),
            "width": int(width), "height": int(height), "encoding": "jpeg"}


def status_message(stream: str, state: str, t_event: float, last_seq: int, captured: int, processed: int,
                   dropped: int) -> dict:
    """A stream's state changed (running, stale, reconnecting, ended, failed, stopped). `ended` and
    `stopped` are the stream's last message: `last_seq` is its last published result (0 = none) and
    the counts are final, so a consumer can check it received everything (captured = processed + dropped)."""
    return {"v": SCHEMA_VERSION, "type": "status", "stream": stream, "state": state, "t_event": float(t_event),
            "last_seq": int(last_seq), "captured": int(captured), "processed": int(processed), "dropped": int(dropped)}
