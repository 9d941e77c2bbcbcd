"""Spatial explanation maps on the bundled model and real frames (explanations/maps.py).

The decomposition's promise is in its docstring: the per-location parts of the relevance-residual
score sum to the score itself. It is checked on real feature maps of real polyp frames, against the
detector's own scoring of the model's pooled features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_monitor import bundled
from stream_monitor.data.images import list_images, read_image
from stream_monitor.errors import InputError
from stream_monitor.explanations.maps import (
    block_stats_decomposition,
    centre_prior,
    gradcam_map,
    residual_decomposition,
)
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.preprocess import preprocess_batch

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def real_maps():
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    paths = list_images(DATA / "hyperkvasir-lgi" / "polyp")[:2] + list_images(DATA / "hyperkvasir-lgi" / "normal-cecum")[:2]
    images = torch.from_numpy(preprocess_batch([read_image(p) for p in paths]))
    with torch.inference_mode():
        logits, features, feature_map = model(images)
    return model, detector, features.double().numpy(), feature_map.numpy(), logits.numpy()


def test_score_decomposition_sums_to_the_shipped_score_on_real_features(real_maps):
    _, detector, features, feature_maps, _ = real_maps
    assert detector.config.use_residual  # the shipped score is the relevance residual
    shipped = detector.score(features)
    for i, feature_map in enumerate(feature_maps):
        parts = residual_decomposition(feature_map, detector)
        assert parts.shape == feature_map.shape[1:]
        pooled = feature_map.astype(np.float64).reshape(len(feature_map), -1).mean(axis=1)[None]
        assert parts.sum() == pytest.approx(detector.score(pooled)[0], rel=1e-10)
        # the model pools in float32: the same score up to that rounding
        assert parts.sum() == pytest.approx(shipped[i], rel=1e-6)
        assert np.ptp(parts) > 0.05 * abs(parts.sum()) / parts.size  # it is a map, not a constant


def test_block_stats_decomposition_sums_to_the_shipped_alerts_statistics_distance(real_maps):
    """The bundled alert's block-statistics component, split over block 5's locations of real frames: the parts
    sum to the distance the served detector computes from the model's own statistics."""
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.models.block_stats import STATS_BLOCK, block_statistics, forward_with_blocks

    model = real_maps[0]
    alert = load_alert_detector(bundled.DETECTOR)
    stats_detector = alert.detector.detectors_[alert.detector.names.index("bstats")]
    paths = list_images(DATA / "hyperkvasir-lgi" / "polyp")[:3] + list_images(DATA / "hyperkvasir-lgi" / "bbps-2-3")[:2]
    images = torch.from_numpy(preprocess_batch([read_image(p) for p in paths]))
    with torch.inference_mode():
        features, _, (block,) = forward_with_blocks(model, images, (STATS_BLOCK,))
        stats = block_statistics(block)
    extended = torch.cat([features, stats], dim=1).double().numpy()
    distances = stats_detector.score(extended)
    for i, block_output in enumerate(block.numpy()):
        parts = block_stats_decomposition(block_output, stats_detector)
        assert parts.shape == block_output.shape[1:]
        exact = block_statistics(torch.from_numpy(block_output[None]).double()).numpy()
        exact_extended = np.concatenate([extended[i:i + 1, :-exact.shape[1]], exact], axis=1)
        assert parts.sum() == pytest.approx(stats_detector.score(exact_extended)[0], rel=1e-7)  # P is ill-conditioned
        assert parts.sum() == pytest.approx(distances[i], rel=1e-4)  # the model's float32 statistics
        assert np.ptp(parts) > 0.05 * abs(parts.sum()) / parts.size  # it is a map, not a constant
    with pytest.raises(InputError, match="block output"):
        block_stats_decomposition(block.numpy()[0, :10], stats_detector)


def test_score_decomposition_refuses_a_detector_that_does_not_score_the_residual(real_maps):
    _, detector, _, feature_maps, _ = real_maps
    parity = NeroDetector(mode="parity")
    arrays = detector.fitted_arrays()
    rng = np.random.default_rng(0)
    features = np.abs(rng.normal(size=(40, detector.feature_dim)))
    with pytest.warns(UserWarning, match="clipped"):  # 40 samples cannot span floor(2D/3) components
        parity.fit(features, np.arange(40) % 3, arrays["weight"], arrays["bias"])
    with pytest.raises(InputError, match="residual"):
        residual_decomposition(feature_maps[0], parity)


def test_closed_form_gradcam_equals_autograd_gradcam(real_maps):
    """Grad-CAM by backpropagation through the real head agrees with the closed form W_c / L."""
    model, detector, _, feature_maps, logits = real_maps
    feature_map = torch.from_numpy(feature_maps[0]).unsqueeze(0).requires_grad_(True)
    predicted = int(logits[0].argmax())
    out = model.head(model.backbone.forward_head(feature_map, pre_logits=True))
    out[0, predicted].backward()
    alpha = feature_map.grad[0].mean(dim=(1, 2))
    expected = torch.relu(torch.einsum("k,khw->hw", alpha, feature_map[0])).detach().double().numpy()
    weight = detector.fitted_arrays()["weight"]
    np.testing.assert_allclose(gradcam_map(feature_maps[0], weight, predicted), expected, rtol=1e-4, atol=1e-7)


def test_centre_prior_peaks_at_the_centre():
    prior = centre_prior(57, 57, 0.2)
    assert np.unravel_index(prior.argmax(), prior.shape) == (28, 28)
    assert prior[0, 0] < prior[28, 10] < prior[28, 28]
