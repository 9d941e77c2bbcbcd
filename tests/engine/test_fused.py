"""FusedNero against NeroDetector's float64 math, and the export torch-tensorrt consumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.engine import FusedNero
from stream_monitor.engine.backends.tensorrt import export_fused
from stream_monitor.nero import functional as F

from .conftest import Setup, make_setup


def _run(fused: FusedNero, images: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return fused.named_outputs(fused(torch.from_numpy(images)))


def _close(actual: torch.Tensor, expected: np.ndarray, rtol: float = 1e-5) -> None:
    """float32 against float64: relative to each array's scale (elementwise rtol is meaningless near 0)."""
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual.double().numpy(), expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("overrides", [{}, {"mode": "robust"}, {"mode": "robust", "stabilizer": "clamp",
                                                                 "epsilon": 0.5}])
def test_fused_head_matches_the_detector_in_float32(overrides: dict) -> None:
    """Every output of the fused forward equals NeroDetector.score_parts on the same features,
    fp32 vs float64, within 1e-5 of each array's scale — for the parity preset and both stabilizers."""
    setup = make_setup(**overrides) if overrides else make_setup()
    fused = FusedNero(setup.model, setup.detector, project=True, rho=True)
    out = _run(fused, setup.images)
    with torch.inference_mode():
        _, features, feature_map = setup.model(torch.from_numpy(setup.images))
    torch.testing.assert_close(out["features"], features, rtol=0, atol=0)  # same graph, same numbers
    torch.testing.assert_close(out["feature_map"], feature_map, rtol=0, atol=0)
    parts = setup.detector.score_parts(features.double().numpy())
    state = setup.detector.fitted_arrays()
    for name, expected in (("logits", parts.logits), ("probs", parts.probs), ("relevance", parts.relevance),
                           ("bias_relevance", parts.bias_relevance), ("rho", parts.rho)):
        _close(out[name], expected)
    projected = F.pca_transform(parts.relevance, F.PCA(state["pca_mean"], state["pca_components"], np.empty(0)))
    _close(out["projected"], projected)


@pytest.mark.parametrize("overrides", [
    {"use_residual": True},
    # the bundled default's shape: the residual alone, on a small PCA subspace
    {"use_residual": True, "use_distance": False, "use_bias": False, "use_rho": False, "pca_components": 20},
])
def test_fused_residual_matches_the_detector(overrides: dict) -> None:
    """Robust mode's relevance-residual term (the share of the centred relevance outside the PCA
    subspace) equals NeroDetector's float64 one within 1e-5 of its scale."""
    setup = make_setup(mode="robust", **overrides)
    out = _run(FusedNero(setup.model, setup.detector), setup.images)
    parts = setup.detector.score_parts(out["features"].double().numpy())
    _close(out["residual"], parts.residual)


def test_fused_efficientnet_lite0_wide_features() -> None:
    """D = 1280 (k = 175 of 1280): the same parity on the other CNN the product ships."""
    setup = make_setup("efficientnet_lite0", n_train=40)
    out = _run(FusedNero(setup.model, setup.detector), setup.images)
    parts = setup.detector.score_parts(out["features"].double().numpy())
    _close(out["relevance"], parts.relevance)
    _close(out["rho"], parts.rho)
    assert out["feature_map"].shape[1] == 1280


def test_output_names_follow_the_options(resnet: Setup) -> None:
    fused = FusedNero(resnet.model, resnet.detector, project=False, rho=False, feature_map=False)
    assert fused.output_names == ("logits", "probs", "features", "relevance", "bias_relevance")
    assert len(_run(fused, resnet.images[:2])) == 5


def test_the_callers_model_is_not_changed(resnet: Setup) -> None:
    before = next(resnet.model.parameters()).dtype
    FusedNero(resnet.model, resnet.detector, backbone_dtype=torch.float16)
    assert next(resnet.model.parameters()).dtype == before == torch.float32


def test_export_is_clean_and_equal_to_eager(resnet: Setup) -> None:
    """torch.export with a dynamic batch (what torch-tensorrt compiles): no graph breaks, and the
    exported program computes exactly what the eager module does, at batch sizes it was not traced at."""
    fused = FusedNero(resnet.model, resnet.detector, project=True, rho=True)
    program = export_fused(fused, torch.from_numpy(resnet.images[:2]), max_batch=16)
    exported = program.module()
    for batch in (1, 5):
        x = torch.from_numpy(resnet.images[:batch])
        with torch.no_grad():
            eager, traced = fused(x), exported(x)
        for name, a, b in zip(fused.output_names, eager, traced, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6, msg=name)


def test_half_precision_export_keeps_the_head_in_float32(resnet: Setup) -> None:
    """The fp16 graph TensorRT gets: backbone in float16, every output float32 (explicit typing
    then builds exactly that mix)."""
    fused = FusedNero(resnet.model, resnet.detector, backbone_dtype=torch.float16)
    program = export_fused(fused, torch.from_numpy(resnet.images[:2]), max_batch=8)
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    dtypes = [arg.meta["val"].dtype for arg in output_node.args[0]]
    assert dtypes == [torch.float32] * len(fused.output_names)
    conv_dtypes = {n.meta["val"].dtype for n in program.graph.nodes
                   if n.op == "call_function" and "conv" in str(n.target)}
    assert conv_dtypes == {torch.float16}


def test_fitted_arrays_are_read_only_views(resnet: Setup) -> None:
    """The accessor engines compile from cannot be used to corrupt the detector's state."""
    arrays = resnet.detector.fitted_arrays()
    assert set(arrays) == {"weight", "bias", "pca_mean", "pca_components", "centroids", "centroid_labels",
                           "raw_class_means"}
    with pytest.raises(ValueError):
        arrays["centroids"][0, 0] = 1.0
