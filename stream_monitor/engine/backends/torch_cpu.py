"""torch-cpu: the embedded default that always works — eager torch, tuned for inference on a CPU.

What makes it fast here (measured on the 2-core AVX-512 machine, benchmarks/results/):
- bfloat16 autocast of the backbone where the CPU has native bf16 dot products (AVX512-BF16 / AMX):
  oneDNN then runs convolutions at twice the float32 rate — the single largest gain (≈2× at batch 8);
- channels-last tensors, which oneDNN's convolutions want (no reorder per layer);
- `inference_mode` (no autograd bookkeeping);
- an explicit thread count: torch's OpenMP team spins at barriers, and on a loaded machine an
  over-subscribed team can be 10× slower than one thread, so `EngineOptions.threads` sets it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..fused import FusedNero
from .base import EngineBackend, EngineOptions

__all__ = ["TorchCpuBackend", "cpu_has_bf16"]


def cpu_has_bf16() -> bool:
    """True when oneDNN can run bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_cpu_precision(requested: str) -> str:
    """"auto" → "bf16" where the CPU has it, else "fp32"; fp16 is refused (no fast CPU path)."""
    if requested == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    if requested not in ("fp32", "bf16"):
        raise ValueError(f"CPU back-ends run the backbone in fp32 or bf16, not {requested!r}")
    return requested


class TorchCpuBackend(EngineBackend):
    """Eager torch on the CPU: channels-last, inference mode, bf16 autocast where native."""

    name = "torch-cpu"
    device_type = "cpu"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        super().__init__(fused, options)
        self.precision = resolve_cpu_precision(options.precision)
        if options.threads:
            torch.set_num_threads(options.threads)
        fused.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None
        self.module = fused.to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        x = x.contiguous(memory_format=torch.channels_last)
        return self.fused.named_outputs(self.module(x))

    @torch.inference_mode()
    def run_uint8(self, rgb: np.ndarray) -> dict[str, Tensor]:
        """(B, H, W, 3) uint8 → as `run`. The NHWC bytes are already channels-last NCHW once permuted,
        so normalising in torch gives oneDNN its layout with no reorder; same arithmetic as
        `preprocess.normalize_uint8` (× float32(1/255), − mean, / std)."""
        from ...preprocess import IMAGENET_MEAN, IMAGENET_STD

        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8)).permute(0, 3, 1, 2)
        mean = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1)
        x = ((x.to(torch.float32) * (1.0 / 255.0) - mean) / std).contiguous(memory_format=torch.channels_last)
        return self.fused.named_outputs(self.module(x))

    def describe(self) -> str:
        return f"{super().describe()}, channels-last, {torch.get_num_threads()} threads"
