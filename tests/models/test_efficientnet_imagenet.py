"""The EfficientNet-PyTorch → timm key mapping gives a working ImageNet classifier.

A mapping that is off by one pair, or transposes two same-shaped tensors, still loads without error;
only the predictions show it. So the packaged weights must classify real photos of known classes.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from skimage import data as skdata

from stream_monitor.errors import CheckpointError
from stream_monitor.models import create_model
from stream_monitor.models.efficientnet_lite import LITE_VARIANTS, map_efficientnet_pytorch_state
from stream_monitor.preprocess import preprocess_batch

# ImageNet-1k class indices: 281–285 domestic cats; 967 espresso, 968 cup.
EXPECTED = {"chelsea": set(range(281, 286)), "coffee": {967, 968}}


@pytest.fixture(scope="module")
def imagenet_model():
    return create_model("efficientnet_lite0", num_classes=1000, pretrained=True)


@pytest.mark.parametrize("arch", LITE_VARIANTS)
def test_top5_contains_the_right_class(arch) -> None:
    imagenet_model = create_model(arch, num_classes=1000, pretrained=True)
    # scikit-image gives RGB; the preprocessing contract takes OpenCV's BGR.
    frames = [getattr(skdata, name)()[:, :, ::-1] for name in EXPECTED]
    with torch.inference_mode():
        logits, _, _ = imagenet_model(torch.from_numpy(preprocess_batch(frames)))
    top5 = logits.topk(5, dim=1).indices.numpy()
    for (name, classes), row in zip(EXPECTED.items(), top5):
        assert classes & set(row.tolist()), f"{name}: top-5 {row} misses {sorted(classes)}"
    assert int(top5[0, 0]) in EXPECTED["chelsea"]  # the cat should be top-1, not merely top-5


def test_new_head_keeps_the_imagenet_backbone(imagenet_model) -> None:
    three_class = create_model("efficientnet_lite0", num_classes=3, pretrained=True)
    assert three_class.head.weight.shape == (3, 1280)
    stem = three_class.backbone.conv_stem.weight
    torch.testing.assert_close(stem, imagenet_model.backbone.conv_stem.weight)


def test_mapping_fails_loudly_on_a_shape_mismatch() -> None:
    source = OrderedDict({"_a.weight": torch.zeros(2, 3), "_a.bias": torch.zeros(4)})
    target = OrderedDict({"x.weight": torch.zeros(2, 3), "x.bias": torch.zeros(5)})
    with pytest.raises(CheckpointError, match="pair 1"):
        map_efficientnet_pytorch_state(source, target)
    with pytest.raises(CheckpointError, match="2 tensors"):
        map_efficientnet_pytorch_state(source, OrderedDict({"x.weight": torch.zeros(2, 3)}))
    with pytest.raises(CheckpointError, match="pair 0"):  # same shape, different kind of tensor
        map_efficientnet_pytorch_state(OrderedDict({"m.weight": torch.zeros(4)}),
                                       OrderedDict({"n.bias": torch.zeros(4)}))
    mapped = map_efficientnet_pytorch_state(OrderedDict({"_fc.weight": torch.ones(2)}),
                                            OrderedDict({"classifier.weight": torch.zeros(2)}))
    assert list(mapped) == ["classifier.weight"] and torch.equal(mapped["classifier.weight"], torch.ones(2))
