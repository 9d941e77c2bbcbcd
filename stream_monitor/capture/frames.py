"""What a source delivers → the one frame format the rest of the live path handles: (H, W, 3) BGR uint8.

Capture cards and cameras do deliver other things: grayscale (monochrome sensors, some V4L2 modes),
16-bit (10/12-bit sensors in a 16-bit container), BGRA, an empty buffer after a USB hiccup. The ring,
the scope mask and the model input all assume BGR uint8, so frames are converted here, once, or
refused with a reason that the capture process counts (stream_monitor_frames_dropped_total{stage=
"capture", reason="invalid_frame"}) before it reads the next frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["as_bgr_uint8"]

_U16_TO_U8 = 257.0  # 65535 / 255: full-range 16-bit to 8-bit


def as_bgr_uint8(frame: object) -> tuple[np.ndarray, str | None]:
    """The frame as (H, W, 3) BGR uint8 and what was converted ("grayscale", "16-bit", "alpha", joined
    with "+"), or None when it already was.

    Raises:
        InputError: not an array, empty, a shape that is not an image, or a dtype other than uint8/uint16.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(f"the source delivered a {type(frame).__name__}, not an image array")
    if frame.size == 0:
        raise InputError(f"empty frame (shape {frame.shape})")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(f"frame shape {frame.shape} is not an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    changes = []
    if frame.dtype == np.uint16:
        frame = np.round(frame.astype(np.float32) / _U16_TO_U8).astype(np.uint8)
        changes.append("16-bit")
    elif frame.dtype != np.uint8:
        raise InputError(f"frame dtype {frame.dtype} is not uint8 or uint16")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        changes.append("grayscale")
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
        changes.append("alpha")
    return np.ascontiguousarray(frame), "+".join(changes) or None
