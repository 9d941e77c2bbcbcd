"""A real model and a detector fitted on its own features, small enough for the 2-core CI machine.

ResNet-18 with random weights (no ImageNet weights ship for it) at 64×64 px: the same graph as at
224 px — every layer, the 2×2 last feature map, D = 512 — at a twelfth of the cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest
import torch

from stream_monitor.models import ClassifierAdapter, create_model
from stream_monitor.nero import NeroDetector

SIDE = 64


@dataclass
class Setup:
    model: ClassifierAdapter
    detector: NeroDetector
    images: np.ndarray  # (8, 3, SIDE, SIDE) float32, not used for fitting


@lru_cache(maxsize=4)
def _model_and_features(arch: str, n_images: int) -> tuple[ClassifierAdapter, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = create_model(arch, 3, pretrained=False).eval()
    images = np.random.default_rng(0).normal(size=(n_images, 3, SIDE, SIDE)).astype(np.float32)
    with torch.inference_mode():
        features = model(torch.from_numpy(images))[1].double().numpy()
    return model, images, features


def make_setup(arch: str = "resnet18", mode: str = "parity", n_train: int = 60, **overrides: object) -> Setup:
    """A calibrated detector on `arch`'s features of n_train images; model and features are cached."""
    model, images, features = _model_and_features(arch, n_train + 48)
    labels = np.arange(n_train) % 3
    weight, bias = model.head_arrays()
    with warnings.catch_warnings():  # 60 samples cannot support floor(2D/3) components: clipped, said once
        warnings.simplefilter("ignore")
        detector = NeroDetector(mode=mode, **overrides).fit(features[:n_train], labels, weight, bias)
    detector.calibrate(features[n_train:n_train + 40])
    return Setup(model, detector, images[n_train + 40:])


@pytest.fixture(autouse=True)
def _restore_thread_counts() -> Iterator[None]:
    """create_scorer sets torch's process-wide thread count; later tests must not inherit it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def resnet() -> Setup:
    return make_setup()


def bundled_with_real_frames() -> tuple:
    """The bundled EfficientNet-Lite0 + its NERO detector, and 8 real frames as capture writes them to the
    ring ((8, 224, 224, 3) uint8 RGB): 4 ID test images of the committed split, 4 HyperKvasir polyps."""
    import cv2

    from stream_monitor import bundled
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
    from stream_monitor.models.registry import load_classifier
    from stream_monitor.preprocess import to_model_rgb

    split = load_split(DEFAULT_SPLIT)
    polyps = [p for p in split.paths("ood") if p.parent.name == "polyp"]
    paths = split.paths("test")[::40][:4] + polyps[::50][:4]
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    return model, detector, np.stack([to_model_rgb(cv2.imread(str(p))) for p in paths])
