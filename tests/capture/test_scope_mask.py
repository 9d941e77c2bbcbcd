"""The endoscope's black mask: crop a capture card's wide frame to the scope, leave HyperKvasir-framed
frames exactly as the model was trained on them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream_monitor.capture.scope_mask import ScopeMasker, find_scope_box
from stream_monitor.data.images import list_images, read_image


@pytest.fixture(scope="module")
def endoscopy(shared_data) -> np.ndarray:
    return read_image(list_images(shared_data / "hyperkvasir-lgi" / "normal-cecum")[0])


def _capture_card(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image at 900 px high inside a 1920 × 1080 black frame, with patient data printed beside it."""
    frame = np.zeros((1080, 1920, 3), np.uint8)
    scale = 900 / image.shape[0]
    resized = cv2.resize(image, (round(image.shape[1] * scale), 900))
    top, left = 90, 300
    frame[top:top + 900, left:left + resized.shape[1]] = resized
    cv2.putText(frame, "PATIENT 0042  2024-05-01 10:31:07", (1250, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return frame, (top, top + 900, left, left + resized.shape[1])


def test_the_box_finds_the_scope_and_ignores_text_in_the_border(endoscopy):
    frame, (top, bottom, left, right) = _capture_card(endoscopy)
    box = find_scope_box(frame, margin=0.0)
    # Within 2 % of the side: the box is found on a 160-px-wide copy, and the scope's own black
    # corners may trim it; the text line at the top right must not stretch it.
    assert abs(box.top - top) < 25 and abs(box.bottom - bottom) < 25
    assert abs(box.left - left) < 40 and abs(box.right - right) < 40


def test_auto_crops_a_capture_card_frame_but_not_a_hyperkvasir_frame(endoscopy):
    frame, _ = _capture_card(endoscopy)
    cropped = ScopeMasker("auto").apply(frame)
    assert cropped.shape[0] < 1000 and cropped.shape[1] < 1300
    untouched = ScopeMasker("auto").apply(endoscopy)
    assert untouched is endoscopy or untouched.shape == endoscopy.shape


def test_off_and_always(endoscopy):
    assert ScopeMasker("off").apply(endoscopy).shape == endoscopy.shape
    box = ScopeMasker("always").update(endoscopy)
    assert box.area <= endoscopy.shape[0] * endoscopy.shape[1]
    with pytest.raises(ValueError):
        ScopeMasker("crop")


def test_a_dark_frame_keeps_the_last_good_box(endoscopy):
    """Lens against the mucosa or scope out of the patient: the crop must not collapse onto noise."""
    frame, _ = _capture_card(endoscopy)
    masker = ScopeMasker("auto", smoothing=1.0)
    good = masker.update(frame)
    assert masker.update(np.zeros_like(frame)) == good
    assert find_scope_box(np.zeros_like(frame)) is None


def test_a_new_frame_size_resets_the_box(endoscopy):
    frame, _ = _capture_card(endoscopy)
    masker = ScopeMasker("always", smoothing=1.0)
    masker.update(frame)
    small = cv2.resize(endoscopy, (320, 270))
    box = masker.update(small)
    assert box.bottom <= 270 and box.right <= 320
