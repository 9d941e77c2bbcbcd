"""Any timm classifier as a `ClassifierAdapter`, through timm's own public contract only.

    >>> model = create_timm("convnext_tiny", num_classes=3)       # random weights, `--arch timm:convnext_tiny`

timm exposes the same three calls for its ~1000 architectures: `forward_features(x)` (a CNN's last
feature map, a ViT's tokens, a Swin's NHWC map), `forward_head(out, pre_logits=True)` (the pooled feature
the classifier consumes) and `get_classifier()` (that classifier). Nothing here names an architecture.

The heatmap's feature map is offered only where it is exactly what was pooled: the spatial mean of the
map must equal the feature, so that channel d of the map is NERO's neuron d. Which layout that is
(NCHW, NHWC, or a token grid after the prefix tokens) is found once, at construction, by probing the
model on a random batch — a structural property, independent of the weights. Models whose head
normalises after pooling (ConvNeXt's head norm, ViTs pooling the CLS token or with `fc_norm`) or
projects again (MobileNetV3's `conv_head`) then have no heatmap; scoring is unaffected.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import timm
import torch
from torch import Tensor, nn

from stream_monitor.errors import InputError, UnsupportedModelError
from stream_monitor.models.base import ClassifierAdapter

__all__ = ["MapLayout", "TimmAdapter", "create_timm", "probe_map_layout", "wrap_timm"]

_PROBE_BATCH = 2


@dataclass(frozen=True)
class MapLayout:
    """How `forward_features`' output becomes a (B, D, h, w) map: kind "nchw", "nhwc" or "tokens"
    (drop `prefix` tokens, then a grid of input side // `stride` pixels per token)."""

    kind: str
    prefix: int = 0
    stride: tuple[int, int] = (1, 1)


class TimmAdapter(ClassifierAdapter):
    """A timm model: feature = `forward_head(forward_features(x), pre_logits=True)`, head =
    `get_classifier()`, feature map = `forward_features` output in the probed layout (or None)."""

    def __init__(self, net: nn.Module, arch: str, num_classes: int, layout: MapLayout | None) -> None:
        super().__init__(net, arch=arch, feature_dim=_classifier(net, arch).in_features, num_classes=num_classes)
        self.layout = layout
        self.has_feature_map = layout is not None

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.backbone.forward_features(x)
        features = self.backbone.forward_head(out, pre_logits=True)
        if self.layout is None:
            return features, None
        return features, _as_map(out, self.layout, x.shape[-2:])

    @property
    def head(self) -> nn.Linear:
        return self.backbone.get_classifier()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layout={self.layout}"


def _as_map(out: Tensor, layout: MapLayout, size: torch.Size) -> Tensor:
    if layout.kind == "nchw":
        return out
    if layout.kind == "nhwc":
        return out.permute(0, 3, 1, 2)
    tokens = out[:, layout.prefix:]
    height, width = size[0] // layout.stride[0], size[1] // layout.stride[1]
    return tokens.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)


def _classifier(net: nn.Module, arch: str) -> nn.Linear:
    head = net.get_classifier()
    if not isinstance(head, nn.Linear):
        raise UnsupportedModelError(
            f"{arch}: timm's get_classifier() is a {type(head).__name__}, not an nn.Linear; NERO needs a linear "
            f"head over a pooled feature. Build it with a linear classifier (num_classes >= 1, no distillation "
            f"head), or wrap it as your own module and pass the final nn.Linear's name with --head")
    return head


def _candidate_layouts(net: nn.Module, out: Tensor, dim: int, size: tuple[int, int]) -> list[MapLayout]:
    if out.ndim == 4:
        # Swin-like models say NHWC; a square map with D == w is then still read the right way round.
        order = ("nhwc", "nchw") if str(getattr(net, "output_fmt", "NCHW")) == "NHWC" else ("nchw", "nhwc")
        channels = {"nchw": out.shape[1], "nhwc": out.shape[3]}
        return [MapLayout(kind) for kind in order if channels[kind] == dim]
    if out.ndim == 3 and out.shape[2] == dim:
        prefix = int(getattr(net, "num_prefix_tokens", 0))
        grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
        n_tokens = out.shape[1] - prefix
        if grid is not None and grid[0] * grid[1] == n_tokens and size[0] % grid[0] == 0 and size[1] % grid[1] == 0:
            return [MapLayout("tokens", prefix, (size[0] // grid[0], size[1] // grid[1]))]
    return []


@torch.no_grad()
def probe_map_layout(net: nn.Module, arch: str, image_size: int) -> MapLayout | None:
    """The layout in which `forward_features` pools to `forward_head(pre_logits=True)`, or None.

    Also checks the contract NERO relies on: the model's logits are its classifier applied to that
    feature (a distillation head or a second projection would break relevance silently).

    Raises:
        InputError: the model cannot run on `image_size`² inputs (stream-monitor feeds 224×224).
        UnsupportedModelError: logits are not `get_classifier()(pre-logits feature)`.
    """
    was_training = net.training
    net.eval()
    try:
        x = torch.randn(_PROBE_BATCH, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
        try:
            out = net.forward_features(x)
        except Exception as exc:  # shape errors differ by model; the operator needs the input size named
            raise InputError(f"{arch} cannot run on {image_size}×{image_size} inputs ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); stream-monitor feeds "
                             f"{image_size}×{image_size} RGB — choose a variant built for that size") from exc
        features = net.forward_head(out, pre_logits=True)
        logits = net.forward_head(out)
        head = _classifier(net, arch)
        if features.ndim != 2 or not torch.allclose(head(features), logits, rtol=1e-4, atol=1e-5):
            raise UnsupportedModelError(
                f"{arch}: the logits are not get_classifier() applied to forward_head(pre_logits=True) "
                f"(feature shape {tuple(features.shape)}); NERO needs one linear layer over a pooled feature")
        scale = float(features.abs().max()) or 1.0
        for layout in _candidate_layouts(net, out, features.shape[1], (image_size, image_size)):
            pooled = _as_map(out, layout, x.shape[-2:]).mean(dim=(2, 3))
            if torch.allclose(pooled, features, rtol=1e-4, atol=1e-5 * scale):
                return layout
        return None
    finally:
        net.train(was_training)


def wrap_timm(net: nn.Module, arch: str, num_classes: int, image_size: int = 224) -> TimmAdapter:
    """An already built timm model as an adapter (probes its feature-map layout at `image_size`)."""
    layout = probe_map_layout(net, arch, image_size)
    return TimmAdapter(net, arch=arch, num_classes=num_classes, layout=layout)


def create_timm(name: str, num_classes: int, image_size: int = 224) -> TimmAdapter:
    """`timm.create_model(name, pretrained=False, num_classes=…)` as an adapter; `arch` is "timm:<name>".

    Raises:
        InputError: `name` is not a timm architecture (the message suggests close names).
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.7)
        raise InputError(f"timm has no architecture {name!r}" + (f"; close names: {', '.join(close)}" if close else "")
                         + f" (timm {timm.__version__}; list them with python -c 'import timm; print(timm.list_models())')")
    net = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return wrap_timm(net, f"timm:{name}", num_classes, image_size)
