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

from .conftest import Setup, _model_and_features, bundled_with_real_frames, make_setup


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


# ------------------------------------------------------------------ detectors that read block statistics
def _extended(model, images: np.ndarray) -> np.ndarray:
    """`[feature | block statistics]` of `images`, float64, from one pass of the reference model."""
    from stream_monitor.models.block_stats import forward_with_stats

    with torch.inference_mode():
        features, _, stats = forward_with_stats(model, torch.from_numpy(images))
    return torch.cat([features, stats], dim=1).double().numpy()


@pytest.fixture(scope="module")
def served_bstats() -> tuple[Setup, object]:
    """An EfficientNet-Lite0 (random weights, 64 px) and z(neco)+z(bstats) fitted on its own extended
    features `[feature | block statistics]` of 60 training images."""
    setup = make_setup("efficientnet_lite0")
    model, images, _ = _model_and_features("efficientnet_lite0", 108)
    extended = _extended(model, images)
    weight, bias = model.head_arrays()
    alert = fit_alert_detector("fusion z(neco)+z(bstats)", extended[:60], np.arange(60) % 3, weight, bias,
                               extended[60:100])
    return setup, alert


def test_the_reference_scorer_serves_a_block_statistics_detector_exactly(served_bstats) -> None:
    setup, alert = served_bstats
    assert alert.needs_block_stats
    plain = Scorer(setup.model, setup.detector).score_batch(setup.images)
    scored = Scorer(setup.model, setup.detector, alert=alert).score_batch(setup.images)
    np.testing.assert_array_equal(scored.score, alert.score(_extended(setup.model, setup.images)))
    np.testing.assert_array_equal(scored.nero_score, plain.score)
    np.testing.assert_array_equal(scored.top_neurons, plain.top_neurons)


@pytest.mark.parametrize("backend", ["torch-cpu", "openvino"])
def test_the_fast_engine_computes_the_statistics_in_its_own_pass(served_bstats, backend: str) -> None:
    """The engine returns block 5's statistics beside the features (one pass) and alerts on them as the
    reference does (same 1e-4-of-scale tolerance as the fusion above)."""
    setup, alert = served_bstats
    ref = Scorer(setup.model, setup.detector, alert=alert).score_batch(setup.images)
    fast = create_scorer(setup.model, setup.detector, backend, options=EngineOptions(image_size=(64, 64), precision="fp32"),
                         alert=alert)
    out = fast.engine.run(setup.images)
    np.testing.assert_allclose(out["block_stats"].numpy(), _extended(setup.model, setup.images)[:, setup.model.feature_dim:], rtol=1e-4,
                               atol=1e-5)
    scored = fast.score_batch(setup.images)
    own = np.concatenate([out["features"].numpy(), out["block_stats"].numpy()], axis=1)
    np.testing.assert_array_equal(scored.score, alert.score(own))
    np.testing.assert_allclose(scored.score, ref.score, rtol=1e-4, atol=1e-4 * np.abs(ref.score).max())
    np.testing.assert_array_equal(scored.over_threshold, scored.score > alert.threshold)


def test_a_model_without_block_statistics_cannot_serve_such_a_detector(served_bstats) -> None:
    _, alert = served_bstats
    resnet = make_setup()
    from stream_monitor.errors import InputError

    with pytest.raises(InputError, match="block statistics"):
        create_scorer(resnet.model, resnet.detector, "torch-cpu", options=EngineOptions(image_size=(64, 64)), alert=alert)
    with pytest.raises(InputError, match="block statistics"):
        Scorer(resnet.model, resnet.detector, alert=alert)


# ------------------------------------------------------------------ what a served fusion is made of
@pytest.fixture(scope="module")
def bundled_served() -> tuple:
    """The bundled model, NERO and its served alert (z(neco)+z(bstats)), and 8 real frames: 4 ID test images,
    4 HyperKvasir polyps."""
    from stream_monitor import bundled
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.preprocess import normalize_uint8

    model, detector, rgb = bundled_with_real_frames()
    return model, detector, load_alert_detector(bundled.DETECTOR), normalize_uint8(rgb)


def test_a_served_fusions_components_sum_to_its_score_on_real_frames(bundled_served) -> None:
    """The result's evidence and the alert's audit record carry each fused component's standardised
    score; they are the fusion's own parts (they sum to the alert score), so the overlay can say which
    evidence drove an alert."""
    from stream_monitor.explanations.record import alert_explanation

    model, detector, alert, images = bundled_served
    assert alert.name == "fusion z(neco)+z(bstats)"
    scored = Scorer(model, detector, alert=alert).score_batch(images)
    assert list(scored.components) == ["neco", "bstats"]
    np.testing.assert_allclose(scored.components["neco"] + scored.components["bstats"], scored.score,
                               rtol=1e-12, atol=1e-12)
    assert np.ptp(scored.components["bstats"]) > 0 and np.ptp(scored.components["neco"]) > 0
    for i in range(len(images)):
        evidence = scored.evidence_message(i)
        assert evidence["components"] == {name: z[i] for name, z in scored.components.items()}
        assert alert_explanation(scored, i)["components"] == evidence["components"]
    plain = Scorer(model, detector).score_batch(images)
    assert "components" not in alert_explanation(plain, 0)  # NERO alone: no fused parts to record
