"""Any torch module with a final nn.Linear: torchvision by name, a user's own pickled module with the dotted
name of its head, and torch.export programs (.pt2) — and clear refusals for what does not fit (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.export import Dim

from stream_monitor.errors import CheckpointError, InputError, UnsupportedModelError
from stream_monitor.models import create_model, load_checkpoint
from stream_monitor.models.linear_head import LinearHeadAdapter, wrap_linear_head
from stream_monitor.models.registry import load_model_file

NUM_CLASSES = 3
SIDE = 64


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(side: int = SIDE, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


class OwnNet(nn.Module):
    """A user's classifier: conv features, pooled, a two-layer MLP head whose last layer is `head.2`."""

    def __init__(self, num_classes: int = NUM_CLASSES, softmax: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, num_classes))
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))
        return logits.softmax(1) if self.softmax else logits


@pytest.mark.parametrize(("name", "head"), [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"),
                                            ("regnet_x_400mf", "fc")])
def test_torchvision_by_name_matches_the_untouched_model(name: str, head: str) -> None:
    """Logits = head(feature), and equal to the same weights in a plain torchvision model: the tap keeps
    every state-dict key, so bare torchvision checkpoints load unchanged."""
    torch.manual_seed(0)
    model = create_model(f"torchvision:{name}", NUM_CLASSES, pretrained=False)
    assert isinstance(model, LinearHeadAdapter) and model.head_name == head and not model.has_feature_map
    plain = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES).eval()
    plain.load_state_dict({k.removeprefix("backbone."): v for k, v in model.state_dict().items()}, strict=True)
    x = _batch()
    with torch.inference_mode():
        logits, features, feature_map = model(x)
        expected = plain(x)
    assert feature_map is None and features.shape == (2, model.feature_dim)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    weight, bias = model.head_arrays()
    np.testing.assert_allclose(features.double().numpy() @ weight.T + bias, expected.double().numpy(), rtol=1e-4,
                               atol=1e-5)


def test_bare_torchvision_checkpoint_loads_and_export_is_clean(tmp_path) -> None:
    torch.manual_seed(1)
    plain = torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES).eval()
    torch.save(plain.state_dict(), tmp_path / "r18.pt")
    model, meta = load_model_file(tmp_path / "r18.pt", arch="torchvision:resnet18", num_classes=NUM_CLASSES)
    assert meta == {"arch": "torchvision:resnet18", "num_classes": NUM_CLASSES, "head": "fc"}
    x = _batch(batch=1)
    exported = torch.export.export(model, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], plain(x), rtol=1e-5, atol=1e-5)
        for got, want in zip(exported.module()(x)[:2], model(x)[:2]):
            torch.testing.assert_close(got, want)


def test_skip_head_keeps_the_new_head_through_the_tap(tmp_path) -> None:
    """train --init-checkpoint loads a backbone and keeps the new head: the head's parameters must be found."""
    torch.manual_seed(2)
    model = create_model("torchvision:resnet18", NUM_CLASSES, pretrained=False)
    before = model.head.weight.detach().clone()
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), tmp_path / "other.pt")
    load_checkpoint(model, tmp_path / "other.pt", skip_head=True)
    torch.testing.assert_close(model.head.weight, before)


def test_own_pickled_module_with_a_dotted_head(tmp_path) -> None:
    torch.manual_seed(3)
    net = OwnNet().eval()
    torch.save(net, tmp_path / "own.pt")
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_model_file(tmp_path / "own.pt", arch="module", head="head.2")
    model, meta = load_model_file(tmp_path / "own.pt", arch="module", head="head.2", trust_pickle=True)
    assert meta["head"] == "head.2" and model.feature_dim == 16
    x = _batch()
    with torch.inference_mode():
        logits, features, _ = model(x)
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(features, net.head[:2](net.features(x)))
    automatic, _ = load_model_file(tmp_path / "own.pt", arch="module", trust_pickle=True)
    assert automatic.head_name == "head.2"


@pytest.mark.parametrize(("head", "message"), [
    ("head.9", r"no submodule 'head.9'.*head\.0, head\.2"),
    ("features.0", r"is a Conv2d, not an nn.Linear.*candidates: head\.0, head\.2"),
    ("head.0", r"layers run after 'head.0'|not 'head.0' applied"),
])
def test_what_does_not_fit_is_refused_with_what_to_do(head: str, message: str) -> None:
    net = OwnNet()
    with pytest.raises(UnsupportedModelError, match=message):
        wrap_linear_head(net, head, arch="module", image_size=SIDE)
    assert not any(type(m).__name__ == "_FeatureTap" for m in net.modules())  # the module is left as it was


def test_softmax_after_the_head_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="remove what runs after the head"):
        wrap_linear_head(OwnNet(softmax=True), "head.2", arch="module", image_size=SIDE)


def test_torchvision_without_linear_head_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="no nn.Linear layer with 3 outputs"):
        create_model("torchvision:squeezenet1_0", NUM_CLASSES, pretrained=False)
    with pytest.raises(InputError, match="no model 'resnet5'.*resnet50"):
        create_model("torchvision:resnet5", NUM_CLASSES, pretrained=False)
    with pytest.raises(InputError, match="timm: get_classifier"):
        create_model("timm:resnet10t", NUM_CLASSES, pretrained=False, head="fc")


def _export(net: nn.Module, path, dynamic: bool = True) -> None:
    x = torch.zeros(2, 3, 224, 224)
    shapes = {"x": {0: Dim("batch", min=1, max=256)}} if dynamic else None
    torch.export.save(torch.export.export(net.eval(), (x,), dynamic_shapes=shapes), path)


def test_exported_program_is_cut_before_its_final_linear(tmp_path) -> None:
    torch.manual_seed(4)
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=NUM_CLASSES).eval()
    _export(net, tmp_path / "m.pt2")
    model, meta = load_model_file(tmp_path / "m.pt2")
    assert meta["arch"] == "export:m.pt2" and (model.feature_dim, model.num_classes) == (1024, NUM_CLASSES)
    x = _batch(224, batch=3)
    with torch.inference_mode():
        logits, features, _ = model(x)
        torch.testing.assert_close(logits, net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(features, net.classifier[:3](torch.flatten(net.avgpool(net.features(x)), 1)))


def test_exported_program_that_does_not_fit_is_refused(tmp_path) -> None:
    _export(OwnNet(softmax=True), tmp_path / "soft.pt2")
    with pytest.raises(UnsupportedModelError, match="not by an nn.Linear"):
        load_model_file(tmp_path / "soft.pt2")
    _export(OwnNet(), tmp_path / "static.pt2", dynamic=False)
    with pytest.raises(InputError, match="dynamic batch"):
        load_model_file(tmp_path / "static.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    with pytest.raises(CheckpointError, match="junk.pt2"):
        load_model_file(tmp_path / "junk.pt2")
