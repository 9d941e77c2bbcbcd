"""`score_uint8`: the capture process's RGB uint8 frames scored with normalisation inside the back-end
(OpenVINO's graph, torch on the CPU) — the same ScoredBatch as normalising on the host first."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.engine import EngineOptions, Scorer, create_scorer
from stream_monitor.engine.backends.base import EngineBackend
from stream_monitor.preprocess import normalize_uint8

from .conftest import SIDE, Setup
from .test_fast_scorer import assert_same_batch


def _rgb(n: int = 5) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(n, SIDE, SIDE, 3), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["openvino", "torch-cpu"])
def test_uint8_frames_score_as_host_normalised_frames(resnet: Setup, backend: str) -> None:
    """fp32: within 1e-5 of the host-normalised path and of the float64 reference, every field."""
    scorer = create_scorer(resnet.model, resnet.detector, backend,
                           options=EngineOptions(image_size=(SIDE, SIDE), precision="fp32", max_batch=4))
    rgb = _rgb()  # 5 frames, max_batch 4: the chunking is covered too
    got = scorer.score_uint8(rgb)
    assert_same_batch(got, scorer.score_batch(normalize_uint8(rgb)), rtol=1e-5)
    assert_same_batch(got, Scorer(resnet.model, resnet.detector).score_batch(normalize_uint8(rgb)), rtol=1e-5)
    # The back-end really took the uint8 path (it overrides the host-normalising default).
    assert type(scorer.engine).run_uint8 is not EngineBackend.run_uint8


def test_the_default_uint8_path_normalises_on_the_host(resnet: Setup) -> None:
    """Back-ends without their own (torch-cuda, tensorrt) fall back to host normalisation: checked on
    torch-cpu with its override removed."""
    scorer = create_scorer(resnet.model, resnet.detector, "torch-cpu",
                           options=EngineOptions(image_size=(SIDE, SIDE), precision="fp32"))
    rgb = _rgb(3)
    fallback = EngineBackend.run_uint8(scorer.engine, rgb)
    direct = scorer.engine.run(normalize_uint8(rgb))
    for name, tensor in direct.items():
        np.testing.assert_array_equal(fallback[name].numpy(), tensor.numpy(), err_msg=name)


def test_the_gpu_upload_normalises_like_the_host() -> None:
    """torch-cuda's uint8 upload (UploadUint8) on CPU tensors: the same float32 input, bit for bit, as
    `normalize_uint8` — the arithmetic CI can check without a GPU (tests/engine/test_gpu.py runs it there)."""
    import torch

    from stream_monitor.engine.backends.torch_cuda import UploadUint8

    rgb = _rgb(3)
    upload = UploadUint8((4, 3, SIDE, SIDE), torch.device("cpu"))
    target = torch.full((4, 3, SIDE, SIDE), -7.0)
    upload(rgb, target)
    np.testing.assert_array_equal(target[:3].numpy(), normalize_uint8(rgb))
    assert (target[3] == -7.0).all()  # rows past the batch are left alone
