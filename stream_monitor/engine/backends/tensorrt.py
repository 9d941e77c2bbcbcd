"""tensorrt: the fused module compiled by torch-tensorrt (dynamo, from `torch.export`), engines cached.

Build: `torch.export` of the fused module with a dynamic batch dimension, then
`torch_tensorrt.dynamo.compile` with explicit typing — the backbone's weights are cast to float16 in
the graph and the NERO head stays float32, so TensorRT keeps exactly those precisions (a blanket
`enabled_precisions={fp16}` would let it run the relevance division in half precision too).
Compiling takes minutes, so the result is saved with `torch_tensorrt.save` under `cache_dir`, keyed by
`engine_cache_key`: model and NERO state, input shape, precision, GPU and library versions. Any change
to one of those builds a new engine; a stale one is never loaded.

torch-tensorrt is not installable in CI (no GPU, no TensorRT wheels there): this module imports it
only when the back-end is built, and CI tests the export it consumes (`export_fused`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..fused import FusedNero
from .base import EngineBackend, EngineOptions
from .torch_cuda import _DTYPES, HostToDevice, resolve_cuda_precision

__all__ = ["TensorRTBackend", "engine_cache_key", "export_fused", "model_digest"]

log = logging.getLogger("stream_monitor.engine")


def model_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes, bytes) — what the engine was built from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def engine_cache_key(fused: FusedNero, options: EngineOptions, precision: str, versions: dict[str, str]) -> str:
    """Hex key of everything a compiled engine depends on; equal keys mean a reusable engine."""
    head = fused.head
    meta = {
        "model": model_digest(fused),  # backbone and NERO buffers (W, b, PCA) together
        "nero": [head.stabilizer, head.epsilon, head.k, head.project, head.with_rho],
        "outputs": list(fused.output_names),
        "input": [options.max_batch, 3, *options.image_size],
        "precision": precision,
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def export_fused(fused: FusedNero, example: Tensor, max_batch: int) -> torch.export.ExportedProgram:
    """`torch.export` of the fused module with batch dimension 1…max_batch — what torch-tensorrt compiles."""
    dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},) if max_batch > 1 else None
    with torch.inference_mode(False), torch.no_grad():
        return torch.export.export(fused.eval(), (example,), dynamic_shapes=dynamic, strict=False)


def _versions() -> dict[str, str]:
    import tensorrt
    import torch_tensorrt

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__,
            "tensorrt": tensorrt.__version__, "gpu": f"{props.name} sm_{props.major}{props.minor}"}


class TensorRTBackend(EngineBackend):
    """torch-tensorrt engine of the whole fused module; float16 backbone, float32 head."""

    name = "tensorrt"
    device_type = "cuda"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device"
        try:
            import torch_tensorrt  # noqa: F401
        except Exception as exc:  # ImportError, or TensorRT libraries missing underneath
            return False, f"torch_tensorrt cannot be imported ({type(exc).__name__}: {exc})"
        return True, ""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        super().__init__(fused, options)
        import torch_tensorrt

        self.precision = resolve_cuda_precision(options.precision)
        self.device = torch.device("cuda", torch.cuda.current_device())
        if self.precision != "fp32":
            fused.backbone_dtype = _DTYPES[self.precision]
            fused.model = fused.model.to(fused.backbone_dtype)
        fused.to(self.device).eval()
        height, width = options.image_size
        self.upload = HostToDevice((options.max_batch, 3, height, width), self.device)
        self.key = engine_cache_key(fused, options, self.precision, _versions())
        # arch may be "timm:NAME" or "export:FILE.pt2": no ':' or '/' in a file name.
        name = fused.model.arch.replace(":", "-").replace("/", "-")
        path = Path(options.cache_dir) / f"{name}-{self.key[:24]}.ep" if options.cache_dir else None
        if path is not None and path.is_file():
            self.module, self.cache = torch_tensorrt.load(str(path)).module(), f"loaded {path}"
        else:
            self.module = self._compile(torch_tensorrt, fused, options)
            self.cache = "not cached"
            if path is not None:
                self._save(torch_tensorrt, path, options)
        log.info("tensorrt engine %s (%s)", self.key[:12], self.cache)

    def _compile(self, torch_tensorrt: Any, fused: FusedNero, options: EngineOptions) -> Any:
        height, width = options.image_size
        example = torch.zeros(min(8, options.max_batch), 3, height, width, device=self.device)
        program = export_fused(fused, example, options.max_batch)
        spec = torch_tensorrt.Input(min_shape=(1, 3, height, width), opt_shape=tuple(example.shape),
                                    max_shape=(options.max_batch, 3, height, width), dtype=torch.float32)
        accepted = inspect.signature(torch_tensorrt.dynamo.compile).parameters
        inputs_name = "arg_inputs" if "arg_inputs" in accepted else "inputs"  # renamed in torch-tensorrt 2.4
        settings: dict[str, Any] = {inputs_name: [spec], "min_block_size": 1, "truncate_double": True}
        if "disable_tf32" in accepted:  # the float32 head must be float32, not TF32's 10-bit mantissa
            settings["disable_tf32"] = True
        if "use_explicit_typing" in accepted:  # torch-tensorrt ≥ 2.5: precisions come from the graph's dtypes
            settings["use_explicit_typing"] = True
        else:  # older releases: allow fp16 kernels; the head's float32 casts are then only a request
            settings["enabled_precisions"] = {torch.float32, _DTYPES[self.precision]}
        return torch_tensorrt.dynamo.compile(program, **settings)

    def _save(self, torch_tensorrt: Any, path: Path, options: EngineOptions) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".tmp{os.getpid()}")
        height, width = options.image_size
        example = torch.zeros(1, 3, height, width, device=self.device)
        inputs_name = "arg_inputs" if "arg_inputs" in inspect.signature(torch_tensorrt.save).parameters else "inputs"
        torch_tensorrt.save(self.module, str(partial), **{inputs_name: [example]})
        os.replace(partial, path)  # a crash mid-write leaves no half engine under the real name
        self.cache = f"saved {path}"

    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        outputs = self.module(self.upload(images, len(images)))
        return self.fused.named_outputs(tuple(outputs))

    def describe(self) -> str:
        return f"{super().describe()}, engine {self.key[:12]} ({self.cache})"
