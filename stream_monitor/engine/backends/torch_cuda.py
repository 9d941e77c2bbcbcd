"""torch-cuda: the fused module on a GPU, replayed from CUDA graphs, outputs left on the device.

Per batch-size bucket (1, 2, 4, …, max_batch) the forward is captured once into a CUDA graph with a
static input buffer; a batch is copied host → pinned staging → device (one asynchronous copy), padded
to its bucket, and the graph is replayed — one launch instead of ~100 kernel launches, which is what
bounds a ResNet-18 at small batch on a fast GPU. The backbone runs in float16 by default (weights
cast, channels-last), the NERO head in float32. Outputs are views of the graph's static outputs: valid
until the next `run`, which is how the scorer consumes them (kernels, then one copy to the host).

`run_uint8` uploads the ring's (B, H, W, 3) uint8 frames — a quarter of the float32 bytes — and
normalises them on the device into the graph's static input (`UploadUint8`). NOT YET RUN ON A GPU: its
arithmetic is tested on CPU tensors (tests/engine/test_uint8_input.py); benchmarks/gpu_check.sh times it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..fused import FusedNero
from .base import EngineBackend, EngineOptions

__all__ = ["HostToDevice", "TorchCudaBackend", "UploadUint8", "batch_buckets", "resolve_cuda_precision"]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_cuda_precision(requested: str) -> str:
    """"auto" → "fp16" (tensor cores on every GPU this project targets)."""
    if requested == "auto":
        return "fp16"
    if requested not in _DTYPES:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {requested!r}")
    return requested


def batch_buckets(max_batch: int) -> list[int]:
    """Powers of two up to max_batch, and max_batch itself: [1, 2, 4, …, max_batch]."""
    buckets = [1]
    while buckets[-1] * 2 < max_batch:
        buckets.append(buckets[-1] * 2)
    return sorted(set(buckets + [max_batch]))


class HostToDevice:
    """Copies NumPy batches into a device buffer through pinned memory (asynchronous, on the current stream)."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.pinned = torch.empty(shape, dtype=torch.float32).pin_memory()
        self.device_buffer = torch.empty(shape, dtype=torch.float32, device=device)

    def __call__(self, images: np.ndarray, rows: int) -> Tensor:
        """Copy images (B ≤ rows) into the first B rows of the device buffer; returns its first `rows`."""
        batch = len(images)
        np.copyto(self.pinned[:batch].numpy(), images, casting="same_kind")
        self.device_buffer[:batch].copy_(self.pinned[:batch], non_blocking=True)
        return self.device_buffer[:rows]


class UploadUint8:
    """Copies (B, H, W, 3) uint8 RGB batches to the device (through pinned memory when it is a GPU) and
    normalises them there, as `preprocess.normalize_uint8` does, into a (rows, 3, H, W) float32 target.
    Device-agnostic so that CI checks the arithmetic on CPU tensors."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        from ...preprocess import IMAGENET_MEAN, IMAGENET_STD

        rows, height, width = shape[0], shape[2], shape[3]
        host = torch.empty((rows, height, width, 3), dtype=torch.uint8)
        self.pinned = host.pin_memory() if device.type == "cuda" else host
        self.device_buffer = torch.empty((rows, height, width, 3), dtype=torch.uint8, device=device)
        self.mean = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1).to(device)
        self.std = torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1).to(device)

    def __call__(self, rgb: np.ndarray, target: Tensor) -> None:
        """Normalise rgb (B ≤ len(target)) into the first B rows of target (float32, on the device)."""
        batch = len(rgb)
        np.copyto(self.pinned[:batch].numpy(), rgb, casting="no")
        self.device_buffer[:batch].copy_(self.pinned[:batch], non_blocking=True)
        x = self.device_buffer[:batch].permute(0, 3, 1, 2).to(torch.float32)
        target[:batch].copy_((x * (1.0 / 255.0) - self.mean) / self.std)


class TorchCudaBackend(EngineBackend):
    """The fused module in CUDA graphs, one per batch bucket, captured on first use."""

    name = "torch-cuda"
    device_type = "cuda"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device"
        return True, ""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        super().__init__(fused, options)
        self.precision = resolve_cuda_precision(options.precision)
        self.device = torch.device("cuda", torch.cuda.current_device())
        if self.precision == "fp32":  # asked for fp32, get fp32: TF32 convolutions carry a 10-bit mantissa
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        fused.backbone_dtype = None if self.precision == "fp32" else _DTYPES[self.precision]
        if fused.backbone_dtype is not None:
            fused.model = fused.model.to(fused.backbone_dtype)
        self.module = fused.to(self.device, memory_format=torch.channels_last).eval()
        height, width = options.image_size
        self.buckets = batch_buckets(options.max_batch)
        self.upload = HostToDevice((options.max_batch, 3, height, width), self.device)
        self.upload_uint8 = UploadUint8((options.max_batch, 3, height, width), self.device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...]]] = {}

    def _graph(self, bucket: int) -> tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...]]:
        if bucket not in self.graphs:
            static_in = self.upload.device_buffer[:bucket]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):  # warm-up outside the graph: cuDNN picks its algorithms here
                    self.module(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                outputs = self.module(static_in)
            self.graphs[bucket] = (graph, outputs)
        return self.graphs[bucket]

    def warmup(self) -> None:
        """Capture every bucket now, so the first frames do not pay for it."""
        for bucket in self.buckets:
            self._graph(bucket)

    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        batch = len(images)
        bucket = next(b for b in self.buckets if b >= batch)
        self.upload(images, bucket)
        graph, outputs = self._graph(bucket)
        graph.replay()
        return self.fused.named_outputs(tuple(t[:batch] for t in outputs))

    def run_uint8(self, rgb: np.ndarray) -> dict[str, Tensor]:
        batch = len(rgb)
        bucket = next(b for b in self.buckets if b >= batch)
        self.upload_uint8(rgb, self.upload.device_buffer)
        graph, outputs = self._graph(bucket)
        graph.replay()
        return self.fused.named_outputs(tuple(t[:batch] for t in outputs))

    def describe(self) -> str:
        return f"{super().describe()}, CUDA graphs for batches {self.buckets} on {torch.cuda.get_device_name()}"
