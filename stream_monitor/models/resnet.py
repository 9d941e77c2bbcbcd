"""torchvision ResNet-18 as a `ClassifierAdapter` (D = 512, feature map = `layer4` output)."""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn

from stream_monitor.models.base import ClassifierAdapter

__all__ = ["ResNetAdapter", "build_resnet18"]


class ResNetAdapter(ClassifierAdapter):
    """torchvision ResNet through its named layers: stem → layer1..4 → avgpool → fc.

    The NERO paper's feature is the flattened `avgpool` output; the feature map is `layer4`'s output,
    whose channels are the same D neurons (so a channel map is a neuron's heatmap).
    """

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        net = self.backbone
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feature_map = net.layer4(net.layer3(net.layer2(net.layer1(y))))
        features = torch.flatten(net.avgpool(feature_map), 1)
        return features, feature_map

    @property
    def head(self) -> nn.Linear:
        return self.backbone.fc


def build_resnet18(num_classes: int) -> ResNetAdapter:
    """ResNet-18 with random weights and a `num_classes`-way head (no ImageNet weights ship here)."""
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    return ResNetAdapter(net, arch="resnet18", feature_dim=net.fc.in_features, num_classes=num_classes)
