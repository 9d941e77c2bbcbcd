"""One engine path for any served detector (engine/alert.py): the alert detector's score and flags on the
engine's own pooled features, NERO's explanation unchanged, on the reference scorer and the fast engine
(torch-cpu and OpenVINO), batch and uint8 input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.baselines.serving import fit_alert_detector
from stream_monitor.engine import EngineOptions, Scorer, create_scorer
from stream_monitor.engine.alert import AlertScoredBatch

from .conftest import Setup, _model_and_features, make_setup


@pytest.fixture(scope="module")
def served() -> tuple[Setup, object]:
    """NERO (parity) and a z-fusion of NERO's residual with NECO, fitted on the same 60 training images."""
    setup = make_setup()
    model, _, features = _model_and_features("resnet18", 108)
    weight, bias = model.head_arrays()
    alert = fit_alert_detector("fusion z(nero-r)+z(neco)", features[:60], np.arange(60) % 3, weight, bias,
                               features[60:100])
    return setup, alert


def _features(setup: Setup) -> np.ndarray:
    with torch.inference_mode():
        return setup.model(torch.from_numpy(setup.images))[1].double().numpy()


def test_the_reference_scorer_serves_the_alert_detector_exactly(served) -> None:
    setup, alert = served
    plain = Scorer(setup.model, setup.detector).score_batch(setup.images)
    scored = Scorer(setup.model, setup.detector, alert=alert).score_batch(setup.images)
    assert isinstance(scored, AlertScoredBatch) and scored.detector == alert.name
    np.testing.assert_array_equal(scored.score, alert.score(_features(setup)))
    np.testing.assert_array_equal(scored.over_threshold, scored.score > alert.threshold)
    np.testing.assert_array_equal(scored.nero_score, plain.score)  # NERO still scores ...
    for name in ("top_neurons", "deviations", "heatmaps", "distance", "bias_term", "rho", "probs"):
        np.testing.assert_array_equal(getattr(scored, name), getattr(plain, name), err_msg=name)  # ... and explains


@pytest.mark.parametrize("backend", ["torch-cpu", "openvino"])
def test_the_fast_engine_serves_it_as_the_reference_does(served, backend: str) -> None:
    """Exactly the detector on the engine's own fp32 features; against the float64 reference, within 1e-4 of
    the score's scale (looser than NERO's 1e-5: each fused part is divided by its small out-of-fold ID std,
    which magnifies the fp32 feature error; OpenVINO measured 2e-5)."""
    setup, alert = served
    ref = Scorer(setup.model, setup.detector, alert=alert).score_batch(setup.images)
    fast = create_scorer(setup.model, setup.detector, backend, options=EngineOptions(image_size=(64, 64), precision="fp32"),
                         alert=alert)
    assert fast.threshold == alert.threshold
    scored = fast.score_batch(setup.images)
    assert isinstance(scored, AlertScoredBatch)
    own_features = fast.engine.run(setup.images)["features"].numpy()
    np.testing.assert_array_equal(scored.score, alert.score(own_features))
    np.testing.assert_allclose(scored.score, ref.score, rtol=1e-4, atol=1e-4 * np.abs(ref.score).max())
    np.testing.assert_array_equal(scored.over_threshold, scored.score > alert.threshold)
    np.testing.assert_array_equal(scored.top_neurons, ref.top_neurons)


def test_uint8_input_is_served_the_same_way(served) -> None:
    setup, alert = served
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    from stream_monitor.preprocess import normalize_uint8

    fast = create_scorer(setup.model, setup.detector, "torch-cpu", options=EngineOptions(image_size=(64, 64), precision="fp32"),
                         alert=alert)
    a, b = fast.score_uint8(rgb), fast.score_batch(normalize_uint8(rgb))
    assert isinstance(a, AlertScoredBatch)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5 * np.abs(b.score).max())


def test_a_frame_with_non_finite_features_gets_no_score_and_no_flag(served) -> None:
    setup, alert = served
    images = setup.images.copy()
    images[1] = np.inf  # features overflow for this frame only
    fast = create_scorer(setup.model, setup.detector, "torch-cpu", options=EngineOptions(image_size=(64, 64), precision="fp32"),
                         alert=alert)
    scored = fast.score_batch(images)
    assert np.isnan(scored.score[1]) and not scored.over_threshold[1]
    assert np.isfinite(np.delete(scored.score, 1)).all()


def test_the_result_message_says_which_detector_raised_the_alert(served) -> None:
    setup, alert = served
    scored = Scorer(setup.model, setup.detector, alert=alert).score_batch(setup.images)
    for i in range(len(scored)):
        evidence = scored.evidence_message(i)
        assert evidence["detector"] == alert.name and evidence["detector_score"] == scored.score[i]
        assert evidence["fired"] == ([alert.name] if scored.over_threshold[i] else [])
        assert evidence["nero_score"] == scored.nero_score[i]
