"""Pooled statistics of one intermediate block: the mid-level evidence beside the penultimate feature.

The penultimate feature of a fine-tuned classifier keeps what separates its classes and drops much of
the colour and texture that tells, say, impacted stool from a poorly prepared but normal colon. The
per-channel spatial mean and standard deviation of a mid-level block keep it (the "style" statistics of
Gatys / Huang & Belongie, used for OOD by Lee et al. 2018 and Sastry & Oore 2020). Measured over five
split seeds, a Mahalanobis distance on block 5's statistics fused with NECO leads every method on the
validation OOD split (docs/results/dev-benchmark-seeds-e20; the block: docs/results/block-stats-sweep).

    stats(x) = [ mean_hw(B(x)) | std_hw(B(x)) ]      (2 · C_B,)  population std over the h × w grid

Both come out of the backbone pass the monitor runs anyway (`forward_with_blocks`: no hooks, no second
run). Only timm EfficientNet adapters expose their blocks this way; `supports_block_stats` says so, and
detectors that need the statistics are refused for other models with that reason.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["STATS_BLOCK", "block_statistics", "forward_with_blocks", "forward_with_stats", "require_block_stats",
           "supports_block_stats"]

STATS_BLOCK = 5
"""EfficientNet-Lite0's sixth stage (192 channels at 7 × 7): the block chosen on validation data over
seeds (docs/results/block-stats-sweep, validation numbers only)."""


def supports_block_stats(model) -> bool:  # type: ignore[no-untyped-def]
    """Whether `model` (a ClassifierAdapter) is a timm EfficientNet whose blocks `forward_with_blocks` runs."""
    net = getattr(model, "backbone", None)
    return all(hasattr(net, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head"))


def require_block_stats(model, detector: str = "the served alert detector") -> None:  # type: ignore[no-untyped-def]
    """Refuse, with the reason, to serve `detector` (which reads block statistics) with a model without them."""
    if not supports_block_stats(model):
        raise InputError(f"{detector} needs block statistics, which {model.arch} does not "
                         "give (EfficientNet adapters only); serve another detector with this model")


def forward_with_blocks(adapter, images: Tensor, blocks: tuple[int, ...]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """A timm EfficientNet adapter's `forward_features` that also returns the named blocks' outputs:
    (features (B, D), feature map (B, D, h, w), [block outputs]) — one forward pass, no hooks."""
    net = adapter.backbone
    x = net.bn1(net.conv_stem(images))
    kept = []
    for index, block in enumerate(net.blocks):
        x = block(x)
        if index in blocks:
            kept.append(x)
    feature_map = net.bn2(net.conv_head(x))
    return net.forward_head(feature_map, pre_logits=True), feature_map, kept


def block_statistics(block_output: Tensor) -> Tensor:
    """(B, C, h, w) → (B, 2C) float32: per-channel spatial mean, then population standard deviation.
    Export-clean (no control flow on values)."""
    x = block_output.float().flatten(2)
    mean = x.mean(dim=2)
    std = (x - mean.unsqueeze(2)).square().mean(dim=2).sqrt()
    return torch.cat([mean, std], dim=1)


def forward_with_stats(adapter, images: Tensor, block: int = STATS_BLOCK) -> tuple[Tensor, Tensor, Tensor]:
    """(features (B, D), feature map, block statistics (B, 2C)) from one forward pass."""
    features, feature_map, kept = forward_with_blocks(adapter, images, (block,))
    return features, feature_map, block_statistics(kept[0])
