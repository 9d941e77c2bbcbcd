"""Classifier adapters: every supported model as (logits, features, feature map) plus its linear head.

    >>> from stream_monitor.models import create_model
    >>> model = create_model("efficientnet_lite0", num_classes=3)        # ImageNet backbone, new head
    >>> logits, features, feature_map = model(batch)                     # (B,3), (B,1280), (B,1280,7,7)
    >>> W, b = model.head_arrays()                                        # float64 (3,1280), (3,)
    >>> model = create_model("timm:convnext_tiny", 3, pretrained=False)  # any timm / torchvision:NAME model
    >>> model, meta = load_model_file("my_model.pt2")                    # torch.export program, sidecar, ...
"""

from stream_monitor.models.base import ClassifierAdapter
from stream_monitor.models.registry import (
    create_model,
    list_models,
    load_checkpoint,
    load_classifier,
    load_model_file,
    read_state_dict,
    sha256_file,
)

__all__ = ["ClassifierAdapter", "create_model", "list_models", "load_checkpoint", "load_classifier",
           "load_model_file", "read_state_dict", "sha256_file"]
