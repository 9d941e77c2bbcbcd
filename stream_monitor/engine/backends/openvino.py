"""openvino: the backbone compiled by OpenVINO's CPU plugin, the NERO head in float32 torch.

Adopted because it measured clearly faster than torch eager and ONNX Runtime on the same model
(benchmarks/results/cpu_backbone-*.md): its bf16 path on AVX512-BF16 roughly doubles ResNet-18 at
batch 1, where the live path runs. Optional: `pip install stream-monitor[cpu-fast]`.

The split is deliberate. OpenVINO's `INFERENCE_PRECISION_HINT=bf16` applies to every MatMul in the
model, and NERO's relevance divides by the logits — so only the backbone (features and last feature
map) goes through OpenVINO, and `NeroHead` (≈0.1% of the FLOPs) runs after it in float32 torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..fused import FusedNero
from .base import EngineBackend, EngineOptions
from .torch_cpu import resolve_cpu_precision

__all__ = ["OpenVinoBackend"]


class _Backbone(nn.Module):
    """The adapter's `forward_features` as a module with plain tensor outputs, for conversion."""

    def __init__(self, fused: FusedNero) -> None:
        super().__init__()
        self.model = fused.model
        self.with_map = fused.with_feature_map
        self.patch_blocks = fused.patch_blocks

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if not self.patch_blocks:
            features, feature_map = self.model.forward_features(images)
            return (features, feature_map) if self.with_map else (features,)
        from ...explain_patch import forward_with_blocks, patch_descriptors  # the patch map's descriptors

        features, feature_map, kept = forward_with_blocks(self.model, images, self.patch_blocks)
        return ((features, feature_map) if self.with_map else (features,)) + (patch_descriptors(kept),)


class OpenVinoBackend(EngineBackend):
    """OpenVINO CPU plugin for the backbone (bf16 where native), float32 torch for the NERO head."""

    name = "openvino"
    device_type = "cpu"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "openvino is not installed (pip install 'stream-monitor[cpu-fast]')"
        return True, ""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        super().__init__(fused, options)
        import openvino as ov

        self.precision = resolve_cpu_precision(options.precision)
        core = ov.Core()
        if options.cache_dir is not None:  # OpenVINO caches its compiled blobs keyed by model and config
            options.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(options.cache_dir)})
        height, width = options.image_size
        with torch.inference_mode():
            converted = ov.convert_model(_Backbone(fused).eval(), example_input=torch.zeros(1, 3, height, width),
                                         input=[ov.PartialShape([-1, 3, height, width])])
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        self.compiled = core.compile_model(converted, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.version = ov.__version__
        if options.threads:
            torch.set_num_threads(options.threads)

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        x = np.ascontiguousarray(images, dtype=np.float32)
        results = self.request.infer({0: x})
        outputs = [torch.from_numpy(np.array(results[i], copy=True)) for i in range(len(self.compiled.outputs))]
        features = outputs[0]
        head = self.fused.head(features)
        out = head[:2] + (features,) + head[2:]
        if self.fused.with_feature_map:
            out = out + (outputs[1],)
        if self.fused.patch_blocks:
            out = out + (outputs[-1],)
        return self.fused.named_outputs(out)

    def describe(self) -> str:
        return f"{super().describe()}, OpenVINO {self.version.split('-')[0]}, {self.threads} threads"

