"""Frame preprocessing: the NERO paper's protocol (NERO.md §9) as pure functions on NumPy arrays.

OpenCV BGR uint8 frame → RGB → resize to 224×224 (aspect-distorting, no crop) → ImageNet mean/std →
float32 CHW. Resizing uses `cv2.INTER_AREA`: endoscopy frames (384×288 … 1920×1080) are nearly always
downscaled, where INTER_AREA averages the source pixels like the antialiased bilinear resize of PIL that
the reference code used (torchvision `Resize` on PIL images); plain INTER_LINEAR would alias fine texture.

Training caches the uint8 output of `to_model_rgb` once and augments that, so training, offline
evaluation and the live pipeline share one resize. No scope-mask cropping is done here: the black
endoscope border and on-screen boxes stay part of the image, as in the paper. The live capture path crops
frames from a wider video output (capture card) to the scope first, with `stream_monitor.scope_mask`,
then calls `to_model_rgb`.

torch is imported only by `normalize_uint8_tensor`, so that capture processes, which call the NumPy
functions here, do not pay torch's import time and memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stream_monitor.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INPUT_SIZE", "normalize_uint8", "normalize_uint8_tensor",
           "preprocess_batch", "preprocess_frame", "to_model_rgb", "to_rgb_uint8"]

INPUT_SIZE = 224  # pixels, square: the paper resizes every image to 224×224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # RGB, on [0, 1]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_INTERPOLATION = cv2.INTER_AREA
# 65535 / 255: maps the full 16-bit range onto the full 8-bit range (257 · 255 = 65535).
_U16_TO_U8 = 257.0


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return np.round(frame.astype(np.float32) / _U16_TO_U8).astype(np.uint8)
    raise InputError(f"frame dtype {frame.dtype} is not supported; pass uint8 (or uint16) pixels as "
                     f"decoded by OpenCV")


def to_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    """Convert an OpenCV frame to RGB uint8.

    Args:
        frame: (H, W) or (H, W, 1) grayscale, (H, W, 3) BGR or (H, W, 4) BGRA; uint8 or uint16
            (16-bit is scaled to 8-bit over the full range, alpha is dropped).

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.

    Raises:
        InputError: empty frame, other dtypes (float, signed), or other shapes / channel counts.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a NumPy array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(f"frame shape {frame.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"frame is empty: shape {frame.shape}")
    frame = _to_uint8(frame)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGR2RGB if frame.shape[2] == 3 else cv2.COLOR_BGRA2RGB
    return cv2.cvtColor(np.ascontiguousarray(frame), code)


def to_model_rgb(frame: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Frame → model-sized RGB uint8 (the cacheable, pre-normalisation step).

    Args:
        frame: any frame `to_rgb_uint8` accepts, any size.
        size: output side in pixels.

    Returns:
        (size, size, 3) uint8 RGB, resized with `cv2.INTER_AREA` (aspect ratio not kept).
    """
    rgb = to_rgb_uint8(frame)
    return cv2.resize(rgb, (size, size), interpolation=_INTERPOLATION)


def normalize_uint8(rgb: np.ndarray) -> np.ndarray:
    """(…, H, W, 3) uint8 RGB → (…, 3, H, W) float32 with ImageNet mean/std."""
    scaled = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    normalised = (scaled - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(np.moveaxis(normalised, -1, -3))


def normalize_uint8_tensor(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB tensor → float32 ImageNet-normalised, on the tensor's device.

    The torch twin of `normalize_uint8`, for augmented training batches and GPU preprocessing.
    """
    import torch

    mean = torch.as_tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean) / std


def preprocess_frame(frame: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """One OpenCV frame → model input.

    Args:
        frame: (H, W, 3) BGR uint8 as OpenCV decodes it (grayscale, BGRA and uint16 are converted).
        size: output side in pixels.

    Returns:
        (3, size, size) float32, ImageNet-normalised RGB.
    """
    return normalize_uint8(to_model_rgb(frame, size))


def preprocess_batch(frames: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """Frames of any sizes → (B, 3, size, size) float32 model input (B = len(frames) ≥ 1)."""
    if len(frames) == 0:
        raise InputError("preprocess_batch needs at least one frame")
    resized = np.stack([to_model_rgb(frame, size) for frame in frames])
    return normalize_uint8(resized)
