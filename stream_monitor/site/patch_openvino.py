"""The site model's patch features compiled with OpenVINO for the CPU.

Same module as PatchFeatureExtractor runs (patch_memory.PatchNet), converted and compiled as the engine's
OpenVINO back-end does (engine/backends/openvino.py), at fp32: the site threshold was calibrated on fp32
descriptors. Measured side by side with the torch extractor in
benchmarks/results/site_model_cost-*. The live site scorer uses it when the engine runs on OpenVINO;
enrollment keeps the torch extractor (tests/site/test_patch_memory.py checks that the two agree).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..engine.backends.openvino import convert_for_cpu, cpu_config
from ..errors import InputError
from .patch_memory import PatchFeatureExtractor, check_images

__all__ = ["OpenVinoPatchExtractor"]


class OpenVinoPatchExtractor:
    """Callable like PatchFeatureExtractor (images (B, 3, H, W) → (B, C, h, w) float32) for one input size."""

    def __init__(self, extractor: PatchFeatureExtractor, image_size: tuple[int, int] = (224, 224),
                 threads: int | None = None) -> None:
        import openvino as ov

        height, width = image_size
        converted = convert_for_cpu(extractor.module, height, width)
        self._request = ov.Core().compile_model(converted, "CPU", cpu_config("fp32", threads)).create_infer_request()
        self.image_size = (height, width)
        self.layer, self.channels = extractor.layer, extractor.channels

    def __call__(self, images: Tensor) -> Tensor:
        check_images(images)
        if tuple(images.shape[-2:]) != self.image_size:
            raise InputError(f"this extractor was compiled for {self.image_size} images, "
                             f"got {tuple(images.shape[-2:])}")
        out = self._request.infer({0: np.ascontiguousarray(images.numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))
