"""What the overlay shows when a stream stops delivering: the last frame, greyed, under a banner that
says why (no signal, reconnecting, ended) — never a frozen picture that looks live."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["STATE_LABELS", "mark_stream_state"]

STATE_LABELS = {
    "stale": "NO SIGNAL  no frames from the source",
    "reconnecting": "NO SIGNAL  reconnecting to the source",
    "failed": "CAPTURE FAILED  see the monitor's log",
    "ended": "STREAM ENDED",
    "stopped": "MONITOR STOPPED",
    "monitor_silent": "NO SIGNAL  no results from the monitor",
}
_BANNER_HEIGHT = 46  # the same band as the alert banner, which it replaces


def mark_stream_state(image: np.ndarray, state: str) -> np.ndarray:
    """A copy of a rendered overlay (H, W, 3) BGR uint8, dimmed, with the state's banner on top."""
    marked = (image.astype(np.float32) * 0.45 + 60).astype(np.uint8)
    cv2.rectangle(marked, (0, 0), (marked.shape[1], _BANNER_HEIGHT), (90, 90, 90), -1)
    cv2.putText(marked, STATE_LABELS.get(state, state.upper()), (12, 31), cv2.FONT_HERSHEY_SIMPLEX, 0.75,
                (255, 255, 255), 2, cv2.LINE_AA)
    return marked
