"""Engine back-ends as plugins: a registry, and the automatic choice logged at start-up.

Order of preference for `backend="auto"`: tensorrt → torch-cuda → openvino → torch-cpu. Each plugin
module is imported only when asked about, so a missing optional library costs nothing but a line in
the start-up log saying why that back-end was skipped.
"""

from __future__ import annotations

import importlib

from .base import EngineBackend, EngineOptions

__all__ = ["BACKENDS", "EngineBackend", "EngineOptions", "backend_class", "list_backends", "select_backend"]

# name → "module:Class", in the order "auto" tries them.
BACKENDS: dict[str, str] = {
    "tensorrt": "tensorrt:TensorRTBackend",
    "torch-cuda": "torch_cuda:TorchCudaBackend",
    "openvino": "openvino:OpenVinoBackend",
    "torch-cpu": "torch_cpu:TorchCpuBackend",
}


def list_backends() -> list[str]:
    """Back-end names in the order `auto` tries them."""
    return list(BACKENDS)


def backend_class(name: str) -> type[EngineBackend]:
    """The plugin class registered under `name` (ValueError for an unknown name)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown engine back-end {name!r}; choose auto or one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def select_backend(name: str = "auto", device: str = "auto") -> tuple[type[EngineBackend], list[str]]:
    """The back-end to build, and why the ones before it were skipped (for the start-up log).

    name: "auto" or a registered name (an explicit name that is unavailable is an error, not a fallback).
    device: "auto", "cpu" or "cuda" — limits `auto` to back-ends on that device.
    """
    if name != "auto":
        cls = backend_class(name)
        ok, why = cls.available()
        if not ok:
            raise RuntimeError(f"engine back-end {name!r} was asked for but is unavailable: {why}")
        return cls, []
    skipped = []
    for candidate in BACKENDS:
        cls = backend_class(candidate)
        if device != "auto" and cls.device_type != device:
            continue
        ok, why = cls.available()
        if ok:
            return cls, skipped
        skipped.append(f"{candidate}: {why}")
    raise RuntimeError(f"no engine back-end is available on device {device!r}: {'; '.join(skipped)}")
