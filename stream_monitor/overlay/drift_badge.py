"""The "input not validated" badge: a blue band at the bottom of the frame, never the red clinical OOD
banner at the top — it is for the people responsible for the device (IT, the ML team), and it says the
footage as a whole is unlike what the detector was validated on, not that this view is abnormal."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BADGE_COLOUR", "draw_drift_badge"]

BADGE_COLOUR = (150, 80, 20)  # BGR dark blue: distinct from the red / amber / green alert banner
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_drift_badge(image: np.ndarray, result: dict) -> bool:
    """Draw the badge in place when the result's optional `drift` field says raised; returns whether drawn."""
    drift = result.get("drift")
    if not drift or not drift.get("raised"):
        return False
    h, w = image.shape[:2]
    band = 44
    cv2.rectangle(image, (0, h - band), (w, h), BADGE_COLOUR, -1)
    small = w < 420
    cv2.putText(image, "INPUT NOT VALIDATED", (10, h - band + 18), _FONT, 0.5 if small else 0.6, (255, 255, 255),
                2, cv2.LINE_AA)
    detail = (f"footage unlike validation data: {drift['share']:.0%} of frames over threshold, "
              f"{drift['expected']:.0%} expected")
    cv2.putText(image, detail, (10, h - 8), _FONT, 0.36 if small else 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return True
