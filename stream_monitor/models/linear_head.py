"""Any torch module whose last layer is an `nn.Linear`, as a `ClassifierAdapter`.

    >>> model = create_torchvision("resnet50", num_classes=3)            # `--arch torchvision:resnet50`
    >>> model = wrap_linear_head(my_module, head="classifier.3", arch="module")

NERO needs the head's input. The final linear layer is replaced in place by a `_FeatureTap`: an
`nn.Linear` with the very same parameters (so state-dict keys and checkpoints are unchanged) whose forward
passes its input through. The wrapped module's forward then returns the feature, with no hook and no
Python state, so it stays `torch.export`-clean; the adapter applies the linear map itself.

At construction a random batch checks the contract: the original module's output must equal the linear
map applied to the tapped feature, and that feature must be pooled (B, D). Anything else — a softmax
after the head, a second layer, a head applied to tokens — is refused with what to do instead.
Feature maps are not known for arbitrary modules, so these adapters have no heatmap.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from stream_monitor.errors import InputError, UnsupportedModelError
from stream_monitor.models.base import ClassifierAdapter

__all__ = ["LinearHeadAdapter", "create_torchvision", "find_final_linear", "wrap_linear_head"]

_PROBE_BATCH = 2


class _FeatureTap(nn.Linear):
    """Stands where the head was, holding its parameters; returns its input (the pooled feature)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class LinearHeadAdapter(ClassifierAdapter):
    """A module with its final `nn.Linear` (dotted name `head_name`) tapped: backbone(x) is the feature."""

    has_feature_map = False

    def __init__(self, net: nn.Module, head_name: str, arch: str, feature_dim: int, num_classes: int) -> None:
        super().__init__(net, arch=arch, feature_dim=feature_dim, num_classes=num_classes)
        self.head_name = head_name

    @property
    def _tap(self) -> _FeatureTap:
        return self.backbone.get_submodule(self.head_name)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.backbone(x), None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        # The parameters are read through the registered tap (not a detached view), so that
        # torch.export lifts them as the model's parameters.
        features, _ = self.forward_features(x)
        tap = self._tap
        return F.linear(features, tap.weight, tap.bias), features, None

    @property
    def head(self) -> nn.Linear:
        """A plain `nn.Linear` sharing the tap's parameters (rebuilt if a cast replaced them)."""
        tap = self._tap
        view = self.__dict__.get("_head_view")
        if view is None or view.weight is not tap.weight or view.bias is not tap.bias:
            view = nn.Linear(tap.in_features, tap.out_features, bias=tap.bias is not None, device="meta")
            view.weight, view.bias = tap.weight, tap.bias
            self.__dict__["_head_view"] = view  # plain attribute: not a submodule, no duplicate state-dict keys
        return view

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, head={self.head_name!r}"


def _linear_names(net: nn.Module) -> list[str]:
    return [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]


def find_final_linear(net: nn.Module, num_classes: int | None = None) -> str:
    """Dotted name of the last registered `nn.Linear` (with `num_classes` outputs, when given).

    Registration order is a good guess for torchvision-style models (the classifier is defined last); the
    adapter's probe then verifies that it really is the last operation.
    """
    names = [n for n in _linear_names(net)
             if num_classes is None or net.get_submodule(n).out_features == num_classes]
    if not names:
        raise UnsupportedModelError(
            f"{type(net).__name__} has no nn.Linear layer" + (f" with {num_classes} outputs" if num_classes else "")
            + "; NERO needs a linear head over a pooled feature. Export or wrap the model so that its last "
            "layer is an nn.Linear")
    return names[-1]


def _resolve_head(net: nn.Module, head: str) -> nn.Linear:
    try:
        module = net.get_submodule(head)
    except AttributeError:
        linear = _linear_names(net)
        raise UnsupportedModelError(
            f"{type(net).__name__} has no submodule {head!r}; pass the dotted name of its final nn.Linear"
            + (f" (its linear layers: {', '.join(linear[-6:])})" if linear else " (it has no nn.Linear at all)")
        ) from None
    if not isinstance(module, nn.Linear):
        linear = _linear_names(net)
        raise UnsupportedModelError(
            f"{head!r} is a {type(module).__name__}, not an nn.Linear: NERO's relevance needs a linear head "
            f"(logits = W·a + b). Pass the final nn.Linear's dotted name"
            + (f" (candidates: {', '.join(linear[-6:])})" if linear else "")
            + ", or replace a convolutional / MLP head by an nn.Linear over the pooled feature and fine-tune it")
    return module


@torch.no_grad()
def wrap_linear_head(net: nn.Module, head: str | None, arch: str, num_classes: int | None = None,
                     image_size: int = 224) -> LinearHeadAdapter:
    """Tap `net`'s final linear layer `head` (found automatically when None) and check the contract.

    The module is changed in place (its head replaced by the tap); pass a copy to keep the original.

    Raises:
        UnsupportedModelError: `head` missing or not linear, its input not (B, D), or the module's output
            is not that layer's output (something runs after it).
        InputError: the module cannot run on `image_size`² RGB input.
    """
    head = head or find_final_linear(net, num_classes)
    linear = _resolve_head(net, head)
    if num_classes is not None and linear.out_features != num_classes:
        raise UnsupportedModelError(f"{arch}: head {head!r} has {linear.out_features} outputs, expected {num_classes} "
                                    f"classes")
    was_training = net.training
    net.eval()
    x = torch.randn(_PROBE_BATCH, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    try:
        expected = net(x)
    except Exception as exc:
        raise InputError(f"{arch} cannot run on {image_size}×{image_size} RGB input ({type(exc).__name__}: "
                         f"{exc}); stream-monitor feeds {image_size}×{image_size}") from exc
    tap = _FeatureTap(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    tap.weight, tap.bias = linear.weight, linear.bias
    parent, _, leaf = head.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, tap)
    try:
        features = net(x)
    except Exception as exc:  # the layers after the head needed C outputs: it was not the last one
        setattr(net.get_submodule(parent) if parent else net, leaf, linear)
        raise UnsupportedModelError(f"{arch}: layers run after {head!r} ({type(exc).__name__}: {exc}); pass the "
                                    f"final nn.Linear, the one whose output is the model's output") from exc
    finally:
        net.train(was_training)
    if not isinstance(expected, Tensor) or not isinstance(features, Tensor) or features.ndim != 2 \
            or not torch.allclose(F.linear(features, linear.weight, linear.bias), expected, rtol=1e-4, atol=1e-5):
        setattr(net.get_submodule(parent) if parent else net, leaf, linear)
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise UnsupportedModelError(
            f"{arch}: the model's output is not {head!r} applied to a pooled feature (its input there: {shape}). "
            f"NERO needs logits = W·a + b with a of shape (B, D) as the very last step: remove what runs after "
            f"the head (softmax, another layer) or pool before it, or pass the right layer's name")
    return LinearHeadAdapter(net, head, arch, feature_dim=linear.in_features, num_classes=linear.out_features)


def create_torchvision(name: str, num_classes: int, head: str | None = None, image_size: int = 224) -> LinearHeadAdapter:
    """`torchvision.models.get_model(name, weights=None, num_classes=…)` as an adapter; arch
    "torchvision:<name>". Raises InputError for a name torchvision does not know."""
    available = torchvision.models.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=6, cutoff=0.7)
        raise InputError(f"torchvision has no model {name!r}" + (f"; close names: {', '.join(close)}" if close else ""))
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return wrap_linear_head(net, head, f"torchvision:{name}", num_classes, image_size)


