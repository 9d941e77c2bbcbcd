"""Preprocessing: the paper's resize + ImageNet normalisation, and clear errors for unusable frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.errors import InputError
from stream_monitor.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize_uint8,
    normalize_uint8_tensor,
    preprocess_batch,
    preprocess_frame,
    to_model_rgb,
    to_rgb_uint8,
)


def _solid_bgr(b: int, g: int, r: int, shape: tuple[int, int] = (530, 630)) -> np.ndarray:
    frame = np.empty((*shape, 3), dtype=np.uint8)
    frame[:] = (b, g, r)
    return frame


def test_shape_dtype_and_channel_order() -> None:
    out = preprocess_frame(_solid_bgr(0, 0, 255))  # pure red in OpenCV's BGR
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = (np.array([1.0, 0.0, 0.0], dtype=np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out.mean(axis=(1, 2)), expected, rtol=1e-6)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 0.0, atol=1e-6)


def test_normalisation_of_mid_grey_matches_the_formula() -> None:
    out = preprocess_frame(_solid_bgr(128, 128, 128, shape=(10, 20)))
    np.testing.assert_allclose(out[:, 0, 0], (128 / 255 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)


def test_resize_distorts_aspect_and_keeps_content_position() -> None:
    """No crop: the left half of a wide frame stays the left half of the model input."""
    frame = _solid_bgr(0, 0, 0, shape=(288, 384))
    frame[:, 192:] = 255
    rgb = to_model_rgb(frame)
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
    assert rgb[:, :110].max() == 0 and rgb[:, 114:].min() == 255


def test_batch_equals_single_frames_and_mixes_sizes() -> None:
    frames = [_solid_bgr(10, 20, 30), _solid_bgr(200, 100, 0, shape=(1080, 1920))]
    batch = preprocess_batch(frames)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    for row, frame in zip(batch, frames):
        np.testing.assert_array_equal(row, preprocess_frame(frame))


def test_torch_normalisation_matches_numpy() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    expected = normalize_uint8(rgb)
    got = normalize_uint8_tensor(torch.from_numpy(rgb).permute(0, 3, 1, 2))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 1)])
def test_grayscale_becomes_three_equal_channels(shape: tuple[int, ...]) -> None:
    gray = np.full(shape, 77, dtype=np.uint8)
    rgb = to_rgb_uint8(gray)
    assert rgb.shape == (40, 50, 3) and (rgb == 77).all()


def test_bgra_drops_alpha_and_reorders() -> None:
    bgra = np.zeros((8, 8, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 0  # blue, fully transparent: alpha must be ignored
    assert (to_rgb_uint8(bgra)[..., 2] == 255).all() and (to_rgb_uint8(bgra)[..., :2] == 0).all()


def test_uint16_is_scaled_over_the_full_range() -> None:
    frame = np.zeros((4, 4, 3), dtype=np.uint16)
    frame[0, 0] = 65535
    rgb = to_rgb_uint8(frame)
    assert rgb.dtype == np.uint8 and rgb[0, 0].tolist() == [255, 255, 255] and rgb[1, 1].max() == 0


@pytest.mark.parametrize("frame, message", [
    (np.zeros((4, 4, 3), dtype=np.float32), "dtype float32"),
    (np.zeros((4, 4, 3), dtype=np.int16), "dtype int16"),
    (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
    (np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape"),
    (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
    ([[0, 0, 0]], "NumPy array"),
])
def test_bad_frames_are_rejected_clearly(frame: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        preprocess_frame(frame)  # type: ignore[arg-type]


def test_empty_batch_is_rejected() -> None:
    with pytest.raises(InputError, match="at least one"):
        preprocess_batch([])
