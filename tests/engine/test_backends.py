"""The plugin registry, automatic selection, and the TensorRT engine cache key (testable without TensorRT)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stream_monitor.engine import EngineOptions, FusedNero, list_backends
from stream_monitor.engine.backends import backend_class, select_backend
from stream_monitor.engine.backends.tensorrt import TensorRTBackend, engine_cache_key
from stream_monitor.engine.backends.torch_cuda import batch_buckets

from .conftest import Setup

VERSIONS = {"torch": "2.x", "torch_tensorrt": "2.y", "tensorrt": "10.z", "gpu": "H100 sm_90"}


def test_auto_prefers_gpu_backends_then_openvino_then_torch_cpu() -> None:
    assert list_backends() == ["tensorrt", "torch-cuda", "openvino", "torch-cpu"]


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="unknown engine back-end 'onnx'"):
        backend_class("onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_without_a_gpu_auto_says_why_it_skipped_the_gpu_backends() -> None:
    cls, skipped = select_backend("auto")
    assert cls.device_type == "cpu"
    assert any(s.startswith("tensorrt:") for s in skipped) and any(s.startswith("torch-cuda:") for s in skipped)
    with pytest.raises(RuntimeError, match="tensorrt.*unavailable"):
        select_backend("tensorrt")


def test_cpu_only_auto_never_picks_a_gpu_backend() -> None:
    cls, _ = select_backend("auto", device="cpu")
    assert cls.name in ("openvino", "torch-cpu")


def test_engine_cache_key_covers_what_the_engine_depends_on(resnet: Setup) -> None:
    fused = FusedNero(resnet.model, resnet.detector)
    options = EngineOptions(max_batch=32)
    key = engine_cache_key(fused, options, "fp16", VERSIONS)
    assert key == engine_cache_key(FusedNero(resnet.model, resnet.detector), options, "fp16", VERSIONS)
    changed = [
        engine_cache_key(fused, dataclasses.replace(options, max_batch=64), "fp16", VERSIONS),
        engine_cache_key(fused, dataclasses.replace(options, image_size=(256, 256)), "fp16", VERSIONS),
        engine_cache_key(fused, options, "fp32", VERSIONS),
        engine_cache_key(fused, options, "fp16", {**VERSIONS, "tensorrt": "10.w"}),
        engine_cache_key(fused, options, "fp16", {**VERSIONS, "gpu": "L4 sm_89"}),
        engine_cache_key(FusedNero(resnet.model, resnet.detector, rho=False), options, "fp16", VERSIONS),
    ]
    with torch.no_grad():
        fused.head.projection_offset[0] += 1e-3  # a re-fitted detector
    changed.append(engine_cache_key(fused, options, "fp16", VERSIONS))
    assert len({key, *changed}) == len(changed) + 1


def test_tensorrt_is_unavailable_with_a_reason_here_or_available() -> None:
    ok, why = TensorRTBackend.available()
    assert ok or why


def test_batch_buckets() -> None:
    assert batch_buckets(1) == [1]
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_buckets(48) == [1, 2, 4, 8, 16, 32, 48]
