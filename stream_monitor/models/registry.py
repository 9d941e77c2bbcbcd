"""Model factories and checkpoint loading.

Checkpoints are read with `torch.load(weights_only=True)`: a plain state dict of tensors cannot run
code. Whole-model pickles (how the NERO paper released its classifiers) execute arbitrary code when
unpickled, so they load only when the caller opts in with `trust_pickle=True` (CLI `--trust-pickle`).
A state dict may carry the adapter's keys (`backbone.…`, what `stream_monitor.training.train` saves) or the bare
torchvision / timm model's keys (the paper's models); both load into the same adapter.

Architectures: the named ones (`list_models()`: ResNet-18, DeiT-S, EfficientNet-Lite0/1/2), any timm model as "timm:<name>", any
torchvision classifier as "torchvision:<name>" (built without weights: nothing is downloaded), a pickled
module of the user's own as "module" (needs trust_pickle and the dotted name of its final nn.Linear), and
`torch.export` programs (`.pt2` files, recognised by their suffix). `load_model_file` picks the right one.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stream_monitor.errors import CheckpointError, InputError, WeightsUnavailableError
from stream_monitor.models.base import ClassifierAdapter
from stream_monitor.models.deit import build_deit_small
from stream_monitor.models.efficientnet_lite import LITE_VARIANTS, build_efficientnet_lite
from stream_monitor.models.exported import EXPORT_SUFFIX, load_exported
from stream_monitor.models.linear_head import create_torchvision, wrap_linear_head
from stream_monitor.models.resnet import build_resnet18
from stream_monitor.models.timm_any import create_timm

__all__ = ["ARCH_HELP", "create_model", "list_models", "load_checkpoint", "load_classifier", "load_model_file",
           "read_state_dict", "sha256_file"]

_BUILDERS: dict[str, Callable[[int, bool], ClassifierAdapter]] = {
    **{name: partial(build_efficientnet_lite, name) for name in LITE_VARIANTS},
    "resnet18": lambda num_classes, _pretrained: build_resnet18(num_classes),
    "deit_small_patch16_224": lambda num_classes, _pretrained: build_deit_small(num_classes),
}
# Architectures whose ImageNet weights ship with an installed package (no downloads at run time).
_LOCAL_IMAGENET = set(LITE_VARIANTS)
_PREFIX = "backbone."
_TIMM, _TORCHVISION, _MODULE = "timm:", "torchvision:", "module"
ARCH_HELP = ("architecture: resnet18, deit_small_patch16_224, efficientnet_lite0 (or lite1, lite2), timm:NAME (any timm model, "
             "e.g. timm:convnext_tiny), torchvision:NAME (e.g. torchvision:resnet50) or 'module' (a whole pickled "
             "nn.Module of your own: needs --trust-pickle; --head names its final nn.Linear)")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def list_models() -> list[str]:
    """Names accepted by `create_model`, sorted."""
    return sorted(_BUILDERS)


def create_model(arch: str, num_classes: int, pretrained: bool = True, head: str | None = None) -> ClassifierAdapter:
    """Build a `ClassifierAdapter` in eval mode.

    Args:
        arch: one of `list_models()`, "timm:<name>" or "torchvision:<name>".
        num_classes: C, the width of the new head (≥ 1).
        pretrained: load ImageNet weights; only architectures whose weights ship locally allow it.
        head: torchvision only — dotted name of the final nn.Linear (default: found and verified).

    Raises:
        InputError: unknown arch or num_classes < 1.
        WeightsUnavailableError: `pretrained=True` for an architecture without local weights.
        UnsupportedModelError: the model's head is not one linear layer over a pooled feature.
    """
    by_name = arch.startswith((_TIMM, _TORCHVISION))
    if arch not in _BUILDERS and not by_name:
        raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(list_models())}, "
                         f"timm:NAME or torchvision:NAME")
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    if head is not None and not arch.startswith(_TORCHVISION):
        raise InputError(f"--head names the final nn.Linear of torchvision:NAME and module models; {arch} finds "
                         f"its own head (timm: get_classifier())")
    if pretrained and arch not in _LOCAL_IMAGENET:
        raise WeightsUnavailableError(
            f"no ImageNet weights ship for {arch!r} and nothing is downloaded at run time; create it "
            f"with pretrained=False and load your own checkpoint (CLI: --checkpoint PATH)")
    if arch.startswith(_TIMM):
        return create_timm(arch.removeprefix(_TIMM), num_classes).eval()
    if arch.startswith(_TORCHVISION):
        return create_torchvision(arch.removeprefix(_TORCHVISION), num_classes, head).eval()
    return _BUILDERS[arch](num_classes, pretrained).eval()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, Tensor]:
    """Read a checkpoint file as a flat state dict (wrappers and `module.` prefixes removed).

    Raises:
        CheckpointError: file missing or unreadable, a pickle refused (trust_pickle False), or content
        that is not a state dict. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} is a pickled Python object (e.g. a whole model), not a plain state dict. "
            f"Unpickling runs arbitrary code from the file; load it only if you trust its source, with "
            f"trust_pickle=True (CLI: --trust-pickle). Detail: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # torch raises many types for corrupt files; the operator needs the name
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return _as_state_dict(obj, path)


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in _WRAPPER_KEYS:  # common training-script wrappers: {"state_dict": {...}, "epoch": 3}
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict "
                              f"of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _fit_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # The paper's checkpoints are bare torchvision / timm models: give them the adapter's prefix.
    if any(k.startswith(_PREFIX) for k in state):
        return state
    return {_PREFIX + k: v for k, v in state.items()}


def _check_compatible(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], path: Path,
                      model: ClassifierAdapter) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit {model.arch}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    head_key = next(k for k, v in model.named_parameters() if v is model.head.weight)
    if head_key in state and state[head_key].shape != expected[head_key].shape:
        raise CheckpointError(
            f"checkpoint {path} has a head of shape {tuple(state[head_key].shape)} "
            f"({state[head_key].shape[0]} classes); the model expects {model.num_classes} classes")
    bad = [k for k in expected if state[k].shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"checkpoint {path}: shape mismatch for {len(bad)} tensors, first "
                              f"{bad[0]} {tuple(state[bad[0]].shape)} vs {tuple(expected[bad[0]].shape)}")


def load_checkpoint(model: ClassifierAdapter, path: str | Path, trust_pickle: bool = False,
                    skip_head: bool = False) -> ClassifierAdapter:
    """Load a checkpoint into `model` in place (float16 tensors are cast to the model's dtype).

    Args:
        model: the adapter to fill.
        path: a state dict (adapter or bare-model keys), or with `trust_pickle` a whole-model pickle.
        trust_pickle: allow unpickling arbitrary objects (runs code from the file).
        skip_head: keep the model's own head (initialise a backbone from e.g. an ImageNet checkpoint).

    Returns:
        `model`, for chaining.

    Raises:
        CheckpointError: see `read_state_dict`; missing / unexpected keys or wrong shapes (a wrong
        number of classes is named as such).
    """
    path = Path(path)
    state = _fit_keys(read_state_dict(path, trust_pickle))
    expected = model.state_dict()
    if skip_head:
        head = set(map(id, model.head.parameters()))
        head_keys = {k for k, v in model.named_parameters() if id(v) in head}
        state = {k: v for k, v in state.items() if k not in head_keys}
        state |= {k: expected[k] for k in head_keys}
    _check_compatible(state, expected, path, model)
    model.load_state_dict(state, strict=True)
    return model


def load_classifier(path: str | Path, trust_pickle: bool = False) -> tuple[ClassifierAdapter, dict]:
    """Build and load a classifier saved by `stream_monitor.training.train` from its JSON sidecar.

    The sidecar is `path` with the suffix `.json`; it names arch and num_classes and records the weights'
    sha256, which is checked so that a swapped weights file is an error, not a silent wrong model.

    Returns:
        (model in eval mode, sidecar dict).
    """
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read sidecar {sidecar_path} of checkpoint {path}: {exc}") from exc
    recorded = meta.get("weights_sha256")
    if recorded and sha256_file(path) != recorded:
        raise CheckpointError(f"checkpoint {path} does not match the sha256 in {sidecar_path}; "
                              f"the weights file was replaced or corrupted")
    if "arch" not in meta or "num_classes" not in meta:
        raise CheckpointError(f"sidecar {sidecar_path} does not name arch and num_classes")
    model = create_model(meta["arch"], int(meta["num_classes"]), pretrained=False, head=meta.get("head"))
    return load_checkpoint(model, path, trust_pickle=trust_pickle).eval(), meta


def _load_pickled_module(path: Path, head: str | None, trust_pickle: bool) -> ClassifierAdapter:
    if not trust_pickle:
        raise CheckpointError(
            f"--arch module loads {path} as a whole pickled nn.Module, which runs code from the file; pass "
            f"--trust-pickle (config: model.trust_pickle: true) only if you trust its source. Without pickles: "
            f"save it with torch.export as a .pt2 file, or use timm:NAME / torchvision:NAME with a state dict")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(obj, nn.Module):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a whole nn.Module; a state dict needs "
                              f"its architecture: --arch timm:NAME or torchvision:NAME")
    return wrap_linear_head(obj.float(), head, arch=_MODULE).eval()


def load_model_file(path: str | Path, arch: str | None = None, num_classes: int | None = None,
                    head: str | None = None, trust_pickle: bool = False) -> tuple[ClassifierAdapter, dict]:
    """Any supported classifier file, as an adapter in eval mode, and what is known about it.

    - `.pt2`: a torch.export program (no pickle; arch, num_classes, head are read from the graph);
    - arch None: a stream-monitor checkpoint with its `.json` sidecar (`stream-monitor train` writes one);
    - arch "module": a whole pickled nn.Module (needs `trust_pickle`), head = its final nn.Linear's name
      (found and verified when None);
    - any other arch: a state dict (adapter or bare-model keys) for `create_model(arch, num_classes)`.

    Returns:
        (model, metadata: the sidecar, or {"arch", "num_classes", "head"} for the other kinds).
    """
    path = Path(path)
    if path.suffix == EXPORT_SUFFIX:
        model = load_exported(path)
    elif arch is None:
        return load_classifier(path, trust_pickle=trust_pickle)
    elif arch == _MODULE:
        model = _load_pickled_module(path, head, trust_pickle)
    else:
        if not num_classes:
            raise InputError(f"--arch {arch} needs --num-classes (the width of the checkpoint's head)")
        model = create_model(arch, num_classes, pretrained=False, head=head)
        load_checkpoint(model, path, trust_pickle=trust_pickle).eval()
    return model, {"arch": model.arch, "num_classes": model.num_classes, "head": getattr(model, "head_name", head)}
