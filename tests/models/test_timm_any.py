"""Any timm architecture through one adapter built on timm's contract (issue 17).

Seven families (plus a mean-pooled ViT, whose token grid is a heatmap), built without weights at small
inputs so that the whole file runs in seconds with no download: logits are the head applied to the
pooled feature, the feature map pools to the feature where there is one, and `torch.export` works.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import timm
import torch

from stream_monitor.engine.fused import FusedNero
from stream_monitor.errors import InputError, UnsupportedModelError, WeightsUnavailableError
from stream_monitor.models import create_model
from stream_monitor.models.timm_any import TimmAdapter, wrap_timm
from stream_monitor.nero import NeroDetector

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download: a pretrained=True slip fails instead of fetching

NUM_CLASSES = 3
# name → (input side, extra timm kwargs, expected map layout). Few layers and small sides keep torch.export
# cheap (its cost grows with the number of ops); ViT/Swin are built for the small side.
_VIT = {"img_size": 32, "depth": 2}
FAMILIES = {
    "resnet10t": (64, {}, "nchw"),
    "test_convnext": (64, {}, None),  # head norm after pooling: the map does not pool to the feature
    "test_efficientnet": (64, {}, "nchw"),
    "mobilenetv3_small_050": (64, {}, None),  # conv_head projects the pooled feature again
    "regnetx_002": (64, {}, "nchw"),
    "vit_tiny_patch16_224": (32, _VIT, None),  # CLS token: not a pool of the patch tokens
    "vit_tiny_patch16_224-avg": (32, {**_VIT, "global_pool": "avg", "fc_norm": False}, "tokens"),
    "swin_tiny_patch4_window7_224": (56, {"img_size": 56, "window_size": 7, "embed_dim": 32, "depths": (1, 1),
                                          "num_heads": (1, 2)}, "nhwc"),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core runner an OpenMP team waits at every barrier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> tuple[TimmAdapter, int, str | None]:
    side, kwargs, layout = FAMILIES[request.param]
    torch.manual_seed(0)
    net = timm.create_model(request.param.split("-")[0], pretrained=False, num_classes=NUM_CLASSES, **kwargs)
    return wrap_timm(net, f"timm:{request.param}", NUM_CLASSES, image_size=side).eval(), side, layout


def _batch(side: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_logits_are_the_head_applied_to_the_pooled_feature(family) -> None:
    """NERO's relevance assumes f = W a + b with a the feature it is given; the model's own logits must agree."""
    adapter, side, _ = family
    x = _batch(side)
    with torch.inference_mode():
        logits, features, _ = adapter(x)
        own = adapter.backbone(x)  # timm's forward, untouched by the adapter
    weight, bias = adapter.head_arrays()
    assert features.shape == (2, adapter.feature_dim) and weight.shape == (NUM_CLASSES, adapter.feature_dim)
    np.testing.assert_allclose(features.double().numpy() @ weight.T + bias, own.double().numpy(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, own, rtol=1e-4, atol=1e-5)


def test_feature_map_pools_to_the_feature_where_defined(family) -> None:
    """A heatmap weights map channels as NERO neurons; the expected layouts are found by the probe."""
    adapter, side, layout = family
    assert (adapter.layout.kind if adapter.layout else None) == layout
    assert adapter.has_feature_map == (layout is not None)
    with torch.inference_mode():
        _, features, feature_map = adapter(_batch(side))
    if layout is None:
        assert feature_map is None
        return
    assert feature_map.ndim == 4 and feature_map.shape[:2] == (2, adapter.feature_dim)
    torch.testing.assert_close(feature_map.mean(dim=(2, 3)), features, rtol=1e-4, atol=1e-5)


def test_torch_export_reproduces_every_output(family) -> None:
    adapter, side, _ = family
    x = _batch(side, batch=1)
    exported = torch.export.export(adapter.eval(), (x,))
    with torch.inference_mode():
        expected, got = adapter(x), exported.module()(x)
    for want, have in zip(expected, got):
        if want is None:
            assert have is None
        else:
            torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)


def test_fused_engine_reads_the_adapter_attribute(family) -> None:
    """FusedNero emits a feature map exactly when the adapter has one (no isinstance on adapter classes)."""
    adapter, side, layout = family
    with torch.inference_mode():
        features = adapter(_batch(side, batch=12))[1].double().numpy()
    with warnings.catch_warnings():  # 12 samples clip the PCA components: said once, expected here
        warnings.simplefilter("ignore")
        detector = NeroDetector(mode="robust").fit(features, np.arange(12) % NUM_CLASSES, *adapter.head_arrays())
    fused = FusedNero(adapter, detector)
    assert ("feature_map" in fused.output_names) == (layout is not None)
    with torch.inference_mode():
        outputs = fused.named_outputs(fused(_batch(side)))
    torch.testing.assert_close(outputs["features"], torch.from_numpy(features[:2]).float(), rtol=1e-4, atol=1e-5)


def test_arch_by_name_builds_without_weights() -> None:
    model = create_model("timm:regnetx_002", NUM_CLASSES, pretrained=False)
    assert model.arch == "timm:regnetx_002" and model.num_classes == NUM_CLASSES and model.has_feature_map


def test_unknown_timm_name_suggests_close_ones() -> None:
    with pytest.raises(InputError, match="no architecture 'convnext_tinyy'.*convnext_tiny"):
        create_model("timm:convnext_tinyy", NUM_CLASSES, pretrained=False)


def test_pretrained_timm_is_refused_not_downloaded() -> None:
    with pytest.raises(WeightsUnavailableError, match="nothing is downloaded"):
        create_model("timm:resnet18", NUM_CLASSES, pretrained=True)


def test_distillation_head_is_refused_with_what_to_do() -> None:
    with pytest.raises(UnsupportedModelError, match="not an nn.Linear.*--head"):
        wrap_timm(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=3, img_size=32),
                  "timm:deit_tiny_distilled_patch16_224", 3, image_size=32)
