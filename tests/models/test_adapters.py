"""Adapters: the (logits, features, feature map) contract for every registered architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.errors import InputError, WeightsUnavailableError
from stream_monitor.models import ClassifierAdapter, create_model, list_models

# DeiT's patch embedding is built for 224×224; the CNNs take any size, so they run small and fast.
INPUT_SIDE = {"resnet18": 64, "efficientnet_lite0": 64, "efficientnet_lite1": 64, "efficientnet_lite2": 64,
              "deit_small_patch16_224": 224}
FEATURE_DIM = {"resnet18": 512, "efficientnet_lite0": 1280, "efficientnet_lite1": 1280, "efficientnet_lite2": 1280,
               "deit_small_patch16_224": 384}
NUM_CLASSES = 3


@pytest.fixture(scope="module", params=sorted(INPUT_SIDE))
def adapter(request: pytest.FixtureRequest) -> ClassifierAdapter:
    torch.manual_seed(0)
    return create_model(request.param, NUM_CLASSES, pretrained=False)


def _batch(arch: str, batch: int = 2) -> torch.Tensor:
    side = INPUT_SIDE[arch]
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_registry_lists_the_named_architectures() -> None:
    assert list_models() == sorted(INPUT_SIDE)


def test_output_shapes(adapter: ClassifierAdapter) -> None:
    with torch.inference_mode():
        logits, features, feature_map = adapter(_batch(adapter.arch))
    dim = FEATURE_DIM[adapter.arch]
    assert (adapter.feature_dim, adapter.num_classes) == (dim, NUM_CLASSES)
    assert logits.shape == (2, NUM_CLASSES) and features.shape == (2, dim)
    assert logits.dtype == features.dtype == torch.float32
    if adapter.arch.startswith("deit"):
        assert feature_map is None
    else:
        assert feature_map.shape[:2] == (2, dim) and feature_map.ndim == 4


def test_head_arrays_reproduce_the_logits(adapter: ClassifierAdapter) -> None:
    """NERO's relevance assumes logits = W a + b exactly; the head must be the one applied."""
    with torch.inference_mode():
        logits, features, _ = adapter(_batch(adapter.arch))
    weight, bias = adapter.head_arrays()
    assert weight.dtype == bias.dtype == np.float64
    assert weight.shape == (NUM_CLASSES, adapter.feature_dim) and bias.shape == (NUM_CLASSES,)
    assert adapter.head.weight.shape == weight.shape
    recomputed = features.double().numpy() @ weight.T + bias
    np.testing.assert_allclose(recomputed, logits.double().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_lite0", "efficientnet_lite2"])
def test_cnn_feature_is_the_spatial_mean_of_the_feature_map(arch: str) -> None:
    """Heatmaps weight feature-map channels as NERO neurons: they must be the same D units."""
    adapter = create_model(arch, NUM_CLASSES, pretrained=False)
    with torch.inference_mode():
        _, features, feature_map = adapter(_batch(adapter.arch))
    torch.testing.assert_close(features, feature_map.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


def test_torch_export_is_clean(adapter: ClassifierAdapter) -> None:
    """torch-tensorrt compiles the exported graph later; data-dependent control flow would break it."""
    x = _batch(adapter.arch, batch=1)
    exported = torch.export.export(adapter.eval(), (x,))
    with torch.inference_mode():
        expected = adapter(x)
        got = exported.module()(x)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


@pytest.mark.parametrize("arch", ["resnet18", "deit_small_patch16_224"])
def test_pretrained_without_local_weights_is_a_clear_error(arch: str) -> None:
    with pytest.raises(WeightsUnavailableError, match="checkpoint"):
        create_model(arch, NUM_CLASSES, pretrained=True)


def test_unknown_arch_and_bad_num_classes() -> None:
    with pytest.raises(InputError, match="unknown architecture"):
        create_model("vgg16", NUM_CLASSES, pretrained=False)
    with pytest.raises(InputError, match="num_classes"):
        create_model("resnet18", 0, pretrained=False)
