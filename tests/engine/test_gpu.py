"""GPU back-ends and the CUDA kernels on real CUDA tensors. Skipped, saying why, where there is no GPU
or no torch-tensorrt; `benchmarks/gpu_check.sh` runs them on a GPU machine (`pytest -m gpu`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor import kernels
from stream_monitor.engine import EngineOptions, Scorer, create_scorer
from stream_monitor.kernels import reference

from .conftest import Setup

NO_GPU = "no CUDA device: torch.cuda.is_available() is False"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)]


def _has_tensorrt() -> bool:
    try:
        import torch_tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _options(**kw: object) -> EngineOptions:
    return EngineOptions(image_size=(64, 64), max_batch=16, **kw)  # type: ignore[arg-type]


def test_cuda_kernels_take_torch_tensors_zero_copy() -> None:
    """Outputs are CUDA tensors written by the Numba kernels in place: nothing visits host memory."""
    rng = np.random.default_rng(0)
    samples, centroids = rng.normal(size=(300, 341)).astype(np.float32), rng.normal(size=(5, 341)).astype(np.float32)
    distance, index = kernels.nearest_l1(torch.from_numpy(samples).cuda(), torch.from_numpy(centroids).cuda())
    assert distance.is_cuda and index.is_cuda and kernels.implementation_for(distance) == "numba-cuda"
    expected, expected_index = reference.nearest_l1(samples, centroids)
    np.testing.assert_allclose(distance.cpu().numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(index.cpu().numpy(), expected_index)
    score, _ = kernels.fuse_scores(distance, distance * 0.01, distance * 0 + 0.5, 2.0)
    flags = kernels.threshold_flags(score, float(score.median()))
    assert flags.is_cuda and int((flags.cpu().numpy() & 1).sum()) in (149, 150)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_engine_against_the_reference(resnet: Setup, precision: str) -> None:
    """fp32: the GPU's convolutions sum in another order than the CPU's (cuDNN vs oneDNN, TF32 off), so
    end to end ≤ 1e-3 relative; fp16 backbone: median ≤ 3%, worst ≤ 15% (as bf16 on the CPU)."""
    scorer = create_scorer(resnet.model, resnet.detector, "torch-cuda", options=_options(precision=precision))
    got = scorer.score_batch(resnet.images)
    ref = Scorer(resnet.model, resnet.detector).score_batch(resnet.images)
    relative = np.abs(got.score / ref.score - 1)
    if precision == "fp32":
        assert relative.max() <= 1e-3, relative
        np.testing.assert_array_equal(got.top_neurons[:, :2], ref.top_neurons[:, :2])
    else:
        assert np.median(relative) <= 3e-2 and relative.max() <= 0.15, relative


def test_fused_head_on_gpu_matches_the_detector_on_its_own_features(resnet: Setup) -> None:
    """Isolates the head and kernels from cuDNN: the GPU engine's score equals NeroDetector's float64
    math applied to the features the GPU computed, to 1e-5 relative."""
    scorer = create_scorer(resnet.model, resnet.detector, "torch-cuda", options=_options(precision="fp32"))
    out = scorer.engine.run(resnet.images)
    features = out["features"].double().cpu().numpy()
    got = scorer.score_batch(resnet.images)
    np.testing.assert_allclose(got.score, resnet.detector.score(features), rtol=1e-5)


def test_repeated_calls_never_see_a_previous_batch(resnet: Setup) -> None:
    """The engine keeps output buffers and Numba views of its static CUDA-graph tensors between calls:
    each call's results must still be its own frames' (same batch size, different frames, in turn)."""
    scorer = create_scorer(resnet.model, resnet.detector, "torch-cuda", options=_options(precision="fp32"))
    half = len(resnet.images) // 2
    first, second = resnet.images[:half], resnet.images[half:2 * half]
    expected = [scorer.score_batch(x).score.copy() for x in (first, second)]
    for _ in range(3):
        for x, want in zip((first, second), expected):
            np.testing.assert_array_equal(scorer.score_batch(x).score, want)
    assert not np.allclose(expected[0], expected[1])
    np.testing.assert_allclose(expected[0], resnet.detector.score(
        scorer.engine.run(first)["features"].double().cpu().numpy()), rtol=1e-5)


def test_uint8_frames_normalised_on_the_gpu_score_as_host_normalised(resnet: Setup) -> None:
    """score_uint8 uploads uint8 frames and normalises on the device: the same scores as score_batch on
    host-normalised frames, to float32 rounding of the same graph (written without a GPU; first run by
    benchmarks/gpu_check.sh)."""
    from stream_monitor.preprocess import normalize_uint8

    scorer = create_scorer(resnet.model, resnet.detector, "torch-cuda", options=_options(precision="fp32"))
    rgb = np.random.default_rng(1).integers(0, 256, size=(5, *resnet.images.shape[2:], 3), dtype=np.uint8)
    np.testing.assert_allclose(scorer.score_uint8(rgb).score, scorer.score_batch(normalize_uint8(rgb)).score,
                               rtol=1e-6)


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="torch_tensorrt is not installed (it cannot be, in CI)")
def test_tensorrt_engine_builds_caches_and_matches(resnet: Setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    options = _options(precision="fp16", cache_dir=tmp_path)
    first = create_scorer(resnet.model, resnet.detector, "tensorrt", options=options)
    got = first.score_batch(resnet.images)
    ref = Scorer(resnet.model, resnet.detector).score_batch(resnet.images)
    relative = np.abs(got.score / ref.score - 1)
    assert np.median(relative) <= 3e-2 and relative.max() <= 0.15, relative
    second = create_scorer(resnet.model, resnet.detector, "tensorrt", options=options)
    assert "loaded" in second.engine.describe()
    np.testing.assert_allclose(second.score_batch(resnet.images).score, got.score, rtol=1e-5)


def test_torch_cuda_engine_serves_the_bundled_block_statistics_fusion() -> None:
    """The shipped alert (z(neco)+z(bstats)) on the GPU: FusedNero's `block_stats` output comes out of the same
    CUDA pass, and the alert is the detector applied to the GPU's own features and statistics (1e-5, as the
    fused head above: two runs of cuDNN); its components sum to it. Against the CPU reference: 1e-2 of the
    score's scale, ten times NERO's 1e-3, because z-scoring divides NECO by its small ID spread (std 0.089 around
    a mean of -0.71) and so magnifies the convolution-order differences between cuDNN and the CPU. 8 real frames."""
    from stream_monitor import bundled
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.preprocess import normalize_uint8

    from .conftest import bundled_with_real_frames

    model, detector, rgb = bundled_with_real_frames()
    alert = load_alert_detector(bundled.DETECTOR)
    images = normalize_uint8(rgb)
    scorer = create_scorer(model, detector, "torch-cuda", options=EngineOptions(precision="fp32"), alert=alert)
    out = scorer.engine.run(images)
    own = np.concatenate([out["features"].double().cpu().numpy(), out["block_stats"].double().cpu().numpy()], axis=1)
    got = scorer.score_batch(images)
    scale = np.abs(got.score).max()
    np.testing.assert_allclose(got.score, alert.score(own), rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(sum(got.components.values()), got.score, rtol=1e-12, atol=1e-12)
    ref = Scorer(model, detector, alert=alert).score_batch(images)
    np.testing.assert_allclose(got.score, ref.score, rtol=1e-2, atol=1e-2 * np.abs(ref.score).max())
