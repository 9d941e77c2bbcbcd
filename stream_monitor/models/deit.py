"""timm DeiT-S (`deit_small_patch16_224`) as a `ClassifierAdapter` (D = 384, no feature map)."""

from __future__ import annotations

import timm
from torch import Tensor, nn

from stream_monitor.models.base import ClassifierAdapter

__all__ = ["TimmViTAdapter", "build_deit_small"]


class TimmViTAdapter(ClassifierAdapter):
    """A timm Vision Transformer: the feature is the CLS token after the final norm — what the head
    consumes (`forward_head(pre_logits=True)`). A ViT has no spatial feature map, so it is None."""

    has_feature_map = False

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        tokens = self.backbone.forward_features(x)
        features = self.backbone.forward_head(tokens, pre_logits=True)
        return features, None

    @property
    def head(self) -> nn.Linear:
        return self.backbone.get_classifier()


def build_deit_small(num_classes: int) -> TimmViTAdapter:
    """DeiT-S/16 at 224×224 with random weights (no ImageNet weights ship here)."""
    net = timm.create_model("deit_small_patch16_224", pretrained=False, num_classes=num_classes)
    return TimmViTAdapter(net, arch="deit_small_patch16_224", feature_dim=net.num_features,
                          num_classes=num_classes)
