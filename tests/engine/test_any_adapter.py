"""The fast engine builds for every kind of adapter (issue 17): timm CNN, NHWC and token-grid maps, a CLS
ViT without a map, a torchvision model with its head tapped, and a torch.export program — on torch-cpu and,
where it is installed, OpenVINO — and scores as the reference Scorer does, heatmaps exactly where the
adapter has a feature map."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch.export import Dim

from stream_monitor.engine import EngineOptions, Scorer, create_scorer
from stream_monitor.models.base import ClassifierAdapter
from stream_monitor.models.exported import load_exported
from stream_monitor.models.linear_head import wrap_linear_head
from stream_monitor.models.timm_any import wrap_timm
from stream_monitor.nero import NeroDetector

C = 3


def _timm(name: str, side: int, **kwargs: object) -> ClassifierAdapter:
    return wrap_timm(timm.create_model(name, pretrained=False, num_classes=C, **kwargs), f"timm:{name}", C, side)


def _exported(side: int, tmp_path_factory) -> ClassifierAdapter:
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=C).eval()
    path = tmp_path_factory.mktemp("pt2") / "mobilenet.pt2"
    program = torch.export.export(net, (torch.zeros(2, 3, side, side),), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    torch.export.save(program, path)
    return load_exported(path, image_size=side)


BUILDERS = {  # name → (input side, builder)
    "timm-cnn-nchw": (64, lambda f: _timm("regnetx_002", 64)),
    "timm-swin-nhwc": (56, lambda f: _timm("swin_tiny_patch4_window7_224", 56, img_size=56, embed_dim=32,
                                           depths=(1, 1), num_heads=(1, 2))),
    "timm-vit-tokens": (32, lambda f: _timm("vit_tiny_patch16_224", 32, img_size=32, depth=2, global_pool="avg",
                                            fc_norm=False)),
    "timm-vit-cls": (32, lambda f: _timm("vit_tiny_patch16_224", 32, img_size=32, depth=2)),
    "torchvision-tap": (64, lambda f: wrap_linear_head(torchvision.models.resnet18(weights=None, num_classes=C),
                                                       None, "torchvision:resnet18", C, 64)),
    "torch-export": (64, lambda f: _exported(64, f)),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def setup(request, tmp_path_factory) -> tuple[ClassifierAdapter, NeroDetector, np.ndarray, int]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    side, build = BUILDERS[request.param]
    model = build(tmp_path_factory).eval()
    images = np.random.default_rng(0).normal(size=(40, 3, side, side)).astype(np.float32)
    with torch.inference_mode():
        features = model(torch.from_numpy(images))[1].double().numpy()
    with warnings.catch_warnings():  # 24 samples clip the PCA components
        warnings.simplefilter("ignore")
        detector = NeroDetector(mode="robust").fit(features[:24], np.arange(24) % C, *model.head_arrays())
        detector.calibrate(features[24:36])
    yield model, detector, images[36:], side
    torch.set_num_threads(threads)


@pytest.mark.parametrize("backend", ["torch-cpu", "openvino"])
def test_fast_engine_equals_the_reference_for_any_adapter(setup, backend: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is optional (extra 'cpu-fast')")
    model, detector, images, side = setup
    fast = create_scorer(model, detector, backend, options=EngineOptions(precision="fp32", image_size=(side, side),
                                                                        threads=1))
    got, ref = fast.score_batch(images), Scorer(model, detector).score_batch(images)
    for name in ("score", "distance", "bias_term", "rho", "probs"):
        want = getattr(ref, name)
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)
    np.testing.assert_array_equal(got.top_neurons, ref.top_neurons)
    assert (got.heatmaps is not None) == (ref.heatmaps is not None) == model.has_feature_map
    if model.has_feature_map:
        np.testing.assert_allclose(got.heatmaps, ref.heatmaps, atol=1e-3)
