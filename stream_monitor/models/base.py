"""The one contract every classifier satisfies: a linear head over a pooled feature.

NERO and every baseline only need the penultimate feature `a` (D), the logits `f = W a + b` (C) and the
head `(W, b)`; CNNs also give the last feature map (D channels) for the overlay's heatmap. Each
architecture is one small subclass that says how to get the feature map and the pooled feature through
the model's public API (timm `forward_features` / `forward_head(pre_logits=True)`, torchvision ResNet's
named layers) — never through hooks on layer indices, which silently break when a model changes.

`forward` is `torch.export`-clean (no Python control flow on tensor values) because a later stage compiles
it with torch-tensorrt together with the NERO head.
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ClassifierAdapter"]


class ClassifierAdapter(nn.Module, abc.ABC):
    """A classifier seen as `backbone → pooled feature (B, D) → linear head → logits (B, C)`.

    Subclasses set `arch`, `feature_dim`, `num_classes`, hold the wrapped model as `self.backbone`
    (so that state-dict keys are `backbone.<the model's own keys>`) and implement `forward_features`
    and `head`. The logits are always computed here as `head(features)`, so `features @ W.T + b`
    reproduces them exactly — the property NERO's relevance relies on.
    """

    arch: str
    feature_dim: int
    num_classes: int
    # Whether `forward_features` returns a (B, D, h, w) map whose spatial mean is the feature (the heatmap's
    # source). Engines read this attribute instead of testing adapter classes.
    has_feature_map: bool = True

    def __init__(self, backbone: nn.Module, arch: str, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.arch = arch
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    @abc.abstractmethod
    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Pooled feature and last feature map.

        Args:
            x: (B, 3, H, W) float32, ImageNet-normalised RGB (see `stream_monitor.preprocess`).

        Returns:
            features (B, D) float32 — exactly what the head consumes;
            feature_map (B, D, h, w) float32 for CNNs (features = its spatial mean), None for ViTs.
        """

    @property
    @abc.abstractmethod
    def head(self) -> nn.Linear:
        """The classifier head: weight (C, D), bias (C,)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits (B, C), features (B, D) and feature map (B, D, h, w) or None, all float32."""
        features, feature_map = self.forward_features(x)
        logits = self.head(features)
        return logits, features, feature_map

    def head_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The head as float64 arrays for the NumPy reference math: W (C, D), b (C,)."""
        head = self.head
        weight = head.weight.detach().to("cpu", torch.float64).numpy().copy()
        if head.bias is None:
            # A bias-free head is still linear; NERO's bias relevance is then exactly zero.
            bias = np.zeros(weight.shape[0], dtype=np.float64)
        else:
            bias = head.bias.detach().to("cpu", torch.float64).numpy().copy()
        return weight, bias

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, feature_dim={self.feature_dim}, num_classes={self.num_classes}"
