"""openvino: the backbone compiled by OpenVINO's CPU plugin, the NERO head in float32 torch.

Adopted because it measured clearly faster than torch eager and ONNX Runtime on the same model
(benchmarks/results/cpu_backbone-*.md): its bf16 path on AVX512-BF16 roughly doubles ResNet-18 at
batch 1, where the live path runs. A runtime dependency, so `backend: auto` picks it on every CPU.

The split is deliberate. OpenVINO's `INFERENCE_PRECISION_HINT=bf16` applies to every MatMul in the
model, and NERO's relevance divides by the logits — so only the backbone (features and last feature
map) goes through OpenVINO, and `NeroHead` (≈0.1% of the FLOPs) runs after it in float32 torch.

`run_uint8` takes the capture process's model-sized RGB uint8 frames as they are: a second compiled
copy of the backbone converts, re-lays-out (NHWC → NCHW) and normalises them inside the graph, where it
costs next to nothing, instead of five NumPy passes over the batch in the inference process.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

from ..fused import FusedNero, backbone_outputs
from .base import EngineBackend, EngineOptions
from .torch_cpu import resolve_cpu_precision

__all__ = ["OpenVinoBackend", "convert_for_cpu", "cpu_config"]


def convert_for_cpu(module: nn.Module, height: int, width: int):  # type: ignore[no-untyped-def]
    """`module` (images (B, 3, height, width) → tensors) converted by OpenVINO, any batch size."""
    import openvino as ov

    # OpenVINO's converter traces with torch.jit, whose deprecation FutureWarnings are torch's note to
    # OpenVINO, not to an operator reading the monitor's log at every start.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return ov.convert_model(module.eval(), example_input=torch.zeros(1, 3, height, width),
                                input=[ov.PartialShape([-1, 3, height, width])])


def cpu_config(precision: str, threads: int | None) -> dict:
    """The CPU plugin's compile options: the precision stated explicitly (left alone, OpenVINO picks bf16
    on CPUs that have it), latency first, and the thread count when given."""
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class _Backbone(nn.Module):
    """The adapter's backbone outputs (features, then the map, patch descriptors, block statistics where
    the fused module has them) as a module with plain tensor outputs, for conversion."""

    def __init__(self, fused: FusedNero) -> None:
        super().__init__()
        self.model = fused.model
        self.with_map = fused.with_feature_map
        self.patch_blocks = fused.patch_blocks
        self.stats_block = fused.stats_block

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features, feature_map, patches, stats = backbone_outputs(self.model, images, self.patch_blocks,
                                                                 self.stats_block)
        out = (features, feature_map) if self.with_map else (features,)
        return out + tuple(t for t in (patches, stats) if t is not None)


class OpenVinoBackend(EngineBackend):
    """OpenVINO CPU plugin for the backbone (bf16 where native), float32 torch for the NERO head."""

    name = "openvino"
    device_type = "cpu"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "openvino is not installed (it is a runtime dependency: pip install -e . again)"
        return True, ""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        super().__init__(fused, options)
        import openvino as ov

        self.precision = resolve_cpu_precision(options.precision)
        core = ov.Core()
        if options.cache_dir is not None:  # OpenVINO caches its compiled blobs keyed by model and config
            options.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(options.cache_dir)})
        converted = convert_for_cpu(_Backbone(fused), *options.image_size)
        config = cpu_config(self.precision, options.threads)
        # Each input form is compiled on its first use: the live loop only ever feeds uint8 frames (and
        # warms that path up before `ready`), tests and benchmarks mostly float32 — half the start-up.
        self._compile = lambda model: core.compile_model(model, "CPU", config).create_infer_request()  # noqa: E731
        self._models = {"float32": converted, "uint8": _with_uint8_input(converted)}
        self._requests: dict[str, object] = {}
        self.threads = int(options.threads or core.get_property("CPU", "INFERENCE_NUM_THREADS"))
        self.version = ov.__version__
        if options.threads:
            torch.set_num_threads(options.threads)

    def _request(self, form: str):  # type: ignore[no-untyped-def]
        if form not in self._requests:
            self._requests[form] = self._compile(self._models[form])
        return self._requests[form]

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        request = self._request("float32")
        return self._finish(request, request.infer({0: np.ascontiguousarray(images, dtype=np.float32)}))

    @torch.inference_mode()
    def run_uint8(self, rgb: np.ndarray) -> dict[str, Tensor]:
        request = self._request("uint8")
        return self._finish(request, request.infer({0: np.ascontiguousarray(rgb, dtype=np.uint8)}))

    def _finish(self, request, results) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
        outputs = [torch.from_numpy(np.array(results[i], copy=True)) for i in range(len(request.model_outputs))]
        features = outputs[0]
        head = self.fused.head(features)
        out = head[:2] + (features,) + head[2:]
        # The converted outputs keep _Backbone's order: features, [map], [patch descriptors], [statistics].
        return self.fused.named_outputs(out + tuple(outputs[1:]))

    def describe(self) -> str:
        return f"{super().describe()}, OpenVINO {self.version.split('-')[0]}, {self.threads} threads"



def _with_uint8_input(model):  # type: ignore[no-untyped-def]
    """A copy of the converted backbone that takes (B, H, W, 3) RGB uint8 and normalises it itself, as
    `preprocess.normalize_uint8` does: /255, − ImageNet mean, / std (folded into one mean and scale)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    from ...preprocess import IMAGENET_MEAN, IMAGENET_STD

    ppp = PrePostProcessor(model.clone())
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess()
    steps.convert_element_type(ov.Type.f32).mean((IMAGENET_MEAN * 255).tolist()).scale((IMAGENET_STD * 255).tolist())
    return ppp.build()
