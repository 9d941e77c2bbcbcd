"""The endoscope's black mask: find the lit scope image in a frame and crop to it.

An endoscopy tower's video output puts the round or octagonal scope image somewhere inside a larger black
frame (1920×1080 on a capture card), often with patient data, a clock or a scope-position box printed in
the black area. The classifier was trained on HyperKvasir images, which are already cut close to the scope
image (NERO.md §9 resizes them whole). Cropping a live frame to the bounding box of its lit region gives
the model the framing it was trained on. A frame that is already cut close to the scope (the box covers
at least `crop_below` of it, as on every HyperKvasir image) is passed on untouched: NERO scores are
sensitive to a few pixels of crop (benchmarks/border_trim.py: trimming 0.2 % of each side moved ID test
images across the threshold), so a frame framed like the training data must be preprocessed exactly
like it. Pixels outside the scope inside the box (the black corners, the green position box of some
HyperKvasir frames) are kept, as in training — see docs/architecture.md.

The box is found on a small grey copy: a row (column) belongs to the scope when at least `min_fraction`
of its pixels are brighter than `threshold`; the longest run of such rows (columns) wins, so that a line
of text or a clock in the black border does not stretch the box. The box is smoothed over frames because
the scope image does not move while a stream runs; a dark frame (lens against the mucosa, scope out of
the patient) keeps the last good box instead of collapsing onto noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["MASK_MODES", "ScopeBox", "ScopeMasker", "find_scope_box"]

MASK_MODES = ("auto", "always", "off")

_PROBE_WIDTH = 160  # pixels: the grey copy the box is searched on; 1920 → 160 is plenty for a margin of 2 %


@dataclass(frozen=True)
class ScopeBox:
    """A crop box in pixels of the full frame: rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return max(self.bottom - self.top, 0) * max(self.right - self.left, 0)

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """A view of `frame` (H, W, …) inside the box (no copy)."""
        return frame[self.top:self.bottom, self.left:self.right]


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True in a 1-D bool array; (0, 0) when there is none."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if len(edges) == 0:
        return 0, 0
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def find_scope_box(frame: np.ndarray, threshold: int = 20, min_fraction: float = 0.1,
                   margin: float = 0.01, min_area_fraction: float = 0.15) -> ScopeBox | None:
    """Bounding box of the lit scope image in one frame.

    Args:
        frame: (H, W, 3) BGR or (H, W) grey uint8.
        threshold: grey level (0–255) above which a pixel counts as lit; scope masks are 0–10.
        min_fraction: share of a row's (column's) pixels that must be lit for it to be part of the scope.
        margin: extra border kept on each side, as a fraction of the frame's side.
        min_area_fraction: a box smaller than this share of the frame is not trusted (dark frame).

    Returns:
        The box, or None when the frame is too dark to say.
    """
    height, width = frame.shape[:2]
    scale = min(1.0, _PROBE_WIDTH / width)
    small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
    lit = grey > threshold
    top, bottom = _longest_run(lit.mean(axis=1) >= min_fraction)
    left, right = _longest_run(lit.mean(axis=0) >= min_fraction)
    if bottom <= top or right <= left:
        return None
    pad_y, pad_x = margin * height, margin * width
    box = ScopeBox(top=max(0, int(top / scale - pad_y)), bottom=min(height, int(np.ceil(bottom / scale + pad_y))),
                   left=max(0, int(left / scale - pad_x)), right=min(width, int(np.ceil(right / scale + pad_x))))
    return box if box.area >= min_area_fraction * height * width else None


class ScopeMasker:
    """Per-stream scope crop with a box that is smoothed over frames.

    Args:
        mode: "auto" crops only when the scope covers less than `crop_below` of the frame; "always"
            crops to the box every frame; "off" passes frames through.
        threshold, min_fraction, margin: see `find_scope_box`.
        crop_below: area fraction (0–1) under which "auto" crops.
        smoothing: weight of the newest box in the running box (1 = no memory).

    The box is reset when the frame size changes (a source switched resolution).
    """

    def __init__(self, mode: str = "auto", threshold: int = 20, min_fraction: float = 0.1, margin: float = 0.01,
                 crop_below: float = 0.9, smoothing: float = 0.2) -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"scope mask mode must be one of {MASK_MODES}, got {mode!r}")
        self.mode = mode
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.margin = margin
        self.crop_below = crop_below
        self.smoothing = smoothing
        self._box: np.ndarray | None = None  # (top, bottom, left, right) float
        self._shape: tuple[int, int] | None = None

    @property
    def box(self) -> ScopeBox | None:
        """The running box, or None before the first lit frame."""
        if self._box is None:
            return None
        top, bottom, left, right = np.rint(self._box).astype(int)
        return ScopeBox(int(top), int(bottom), int(left), int(right))

    def update(self, frame: np.ndarray) -> ScopeBox:
        """Find this frame's box, blend it into the running one and return the box to crop with."""
        shape = frame.shape[:2]
        full = ScopeBox(0, shape[0], 0, shape[1])
        if self.mode == "off":
            return full
        if shape != self._shape:
            self._shape, self._box = shape, None
        found = find_scope_box(frame, self.threshold, self.min_fraction, self.margin)
        if found is not None:
            new = np.array([found.top, found.bottom, found.left, found.right], dtype=np.float64)
            self._box = new if self._box is None else (1 - self.smoothing) * self._box + self.smoothing * new
        box = self.box
        if box is None:
            return full
        if self.mode == "auto" and box.area >= self.crop_below * full.area:
            return full
        return box

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """`frame` cropped to the scope (a view; the frame itself when nothing is cropped)."""
        return self.update(frame).crop(frame)
