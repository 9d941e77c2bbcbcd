"""The back-end interface: one way to run a `FusedNero`, one plugin file each.

A back-end takes a built `FusedNero` and `EngineOptions`, compiles or wraps it once, and then runs
batches: images (B, 3, H, W) float32 NumPy in host memory → the fused outputs as torch tensors on the
back-end's device (`FusedNero.output_names`). Scoring kernels and the `ScoredBatch` are the scorer's
job (`engine/fast.py`), so a back-end is only about running the graph fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..fused import FusedNero

__all__ = ["EngineBackend", "EngineOptions"]


@dataclass(frozen=True)
class EngineOptions:
    """How to build an engine.

    precision: "auto" (the back-end's fastest safe choice), "fp32", "fp16" or "bf16" — of the
        backbone only; the NERO head always runs in float32.
    max_batch: largest batch the engine is built for (frames).
    threads: CPU threads for torch and OpenVINO; None = all cores but one, chosen by
        `create_scorer`. The capture and transport processes run beside the engine, and an OpenMP team
        whose threads share cores with them waits at every barrier.
    cache_dir: where compiled engines are kept between runs (TensorRT, OpenVINO); None = no cache.
    image_size: (H, W) of the input frames, pixels.
    """

    precision: str = "auto"
    max_batch: int = 64
    threads: int | None = None
    cache_dir: Path | None = None
    image_size: tuple[int, int] = (224, 224)


class EngineBackend(ABC):
    """Runs a `FusedNero` on one device; subclasses are the plugins in this folder."""

    name: ClassVar[str]
    device_type: ClassVar[str]  # "cpu" or "cuda": where run()'s outputs live
    device: torch.device = torch.device("cpu")  # the exact device; GPU back-ends set their own
    precision: str  # the backbone precision actually used, set by __init__

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when this back-end can run here, else (False, the reason, for the start-up log)."""

    def __init__(self, fused: FusedNero, options: EngineOptions) -> None:
        self.fused = fused
        self.options = options

    @abstractmethod
    def run(self, images: np.ndarray) -> dict[str, Tensor]:
        """images (B, 3, H, W) float32, B ≤ max_batch → {output name: tensor on this back-end's device}."""

    def run_uint8(self, rgb: np.ndarray) -> dict[str, Tensor]:
        """rgb (B, H, W, 3) uint8 model-sized RGB (what capture puts in the ring) → as `run`.
        Back-ends that can normalise inside their graph or on their device override this; here the
        host normalises (`preprocess.normalize_uint8`)."""
        from ...preprocess import normalize_uint8

        return self.run(normalize_uint8(rgb))

    def describe(self) -> str:
        """One line for the start-up log: back-end, precision and anything else worth knowing."""
        return f"{self.name} ({self.precision} backbone, float32 NERO head)"
