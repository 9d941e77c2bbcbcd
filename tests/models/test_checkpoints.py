"""Checkpoint loading: state dicts round-trip, wrong files are named, pickles need an explicit opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stream_monitor.errors import CheckpointError
from stream_monitor.models import create_model, load_checkpoint, read_state_dict

ARCH = "resnet18"  # the smallest to build; the loading code is architecture-independent


def _model(num_classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return create_model(ARCH, num_classes, pretrained=False)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_state_dict_round_trip(tmp_path: Path) -> None:
    source, target = _model(seed=0), _model(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    assert not _same_weights(source, target)
    load_checkpoint(target, path)
    assert _same_weights(source, target)


def test_bare_backbone_state_dict_loads(tmp_path: Path) -> None:
    """The paper's checkpoints are plain torchvision / timm models, without the adapter's prefix."""
    source, target = _model(seed=0), _model(seed=1)
    torch.save(source.backbone.state_dict(), tmp_path / "bare.pt")
    load_checkpoint(target, tmp_path / "bare.pt")
    assert _same_weights(source, target)


def test_float16_checkpoint_loads_into_float32_model(tmp_path: Path) -> None:
    source = _model()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()},
               tmp_path / "half.pt")
    target = load_checkpoint(_model(seed=1), tmp_path / "half.pt")
    assert target.head.weight.dtype == torch.float32
    torch.testing.assert_close(target.head.weight, source.head.weight, rtol=1e-3, atol=1e-3)


def test_wrong_num_classes_is_named(tmp_path: Path) -> None:
    path = tmp_path / "five_classes.pt"
    torch.save(_model(num_classes=5).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"five_classes\.pt.*5 classes.*expects 3"):
        load_checkpoint(_model(), path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = _model().state_dict()
    state.pop("backbone.layer1.0.conv1.weight")
    state["backbone.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"broken\.pt.*1 missing keys.*1 unexpected keys"):
        load_checkpoint(_model(), path)


def test_skip_head_keeps_the_new_head(tmp_path: Path) -> None:
    """ImageNet (1000-class) backbones initialise a 3-class model; only the head is left alone."""
    imagenet_like, target = _model(num_classes=1000), _model(seed=1)
    head_before = target.head.weight.clone()
    torch.save(imagenet_like.backbone.state_dict(), tmp_path / "imagenet.pt")
    load_checkpoint(target, tmp_path / "imagenet.pt", skip_head=True)
    assert torch.equal(target.head.weight, head_before)
    assert torch.equal(target.backbone.conv1.weight, imagenet_like.backbone.conv1.weight)


def test_whole_model_pickle_refused_without_trust(tmp_path: Path) -> None:
    """Unpickling runs code from the file: the paper's whole-model releases need --trust-pickle."""
    source = _model()
    path = tmp_path / "whole_model.pt"
    torch.save(source.backbone, path)
    with pytest.raises(CheckpointError, match=r"whole_model\.pt.*--trust-pickle"):
        load_checkpoint(_model(seed=1), path)
    target = load_checkpoint(_model(seed=1), path, trust_pickle=True)
    assert _same_weights(source, target)


def test_missing_and_non_checkpoint_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pt"):
        read_state_dict(tmp_path / "text.pt")
    torch.save({"epoch": 3}, tmp_path / "no_tensors.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "no_tensors.pt")
