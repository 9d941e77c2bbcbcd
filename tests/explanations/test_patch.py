"""The patch explanation map (explanations/patch.py) on the bundled model and real frames: its descriptors
come out of the engine's own forward pass and must equal the shared PatchFeatureExtractor's; the engine
must then publish exactly the map the offline explainer computes; the fitted map survives a save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_monitor import bundled
from stream_monitor.data.images import list_images, read_image
from stream_monitor.engine import Scorer, create_scorer
from stream_monitor.engine.backends import EngineOptions
from stream_monitor.engine.fused import FusedNero
from stream_monitor.errors import ArtifactError
from stream_monitor.explanations.assets import ExplanationAssets
from stream_monitor.explanations.neurons import NeuronAtlas, residual_drivers
from stream_monitor.explanations.patch import (
    PatchExplainer,
    PatchMapSettings,
    denormalize,
    forward_with_blocks,
    patch_descriptors,
)
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.preprocess import normalize_uint8, to_model_rgb
from stream_monitor.site.patch_memory import PatchFeatureExtractor

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _frames(folder: str, n: int) -> np.ndarray:
    return normalize_uint8(np.stack([to_model_rgb(read_image(p)) for p in list_images(DATA / "hyperkvasir-lgi" / folder)[:n]]))


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    train, held_out = _frames("normal-cecum", 6), _frames("bbps-2-3", 4)
    explainer = PatchExplainer.fit(model, train, held_out, PatchMapSettings(layer="blocks.3", coreset=200, sigma=1.0,
                                                                            quantile=0.9))
    return model, detector, explainer, _frames("polyp", 3)


def test_denormalize_inverts_the_model_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(denormalize(normalize_uint8(rgb)), rgb)


@pytest.mark.parametrize("layer, blocks", [("blocks.3", (3,)), ("blocks.2+blocks.4", (2, 4))])
def test_descriptors_from_the_models_own_forward_equal_the_shared_extractor(fitted, layer, blocks):
    model, _, _, images = fitted
    x = torch.from_numpy(images)
    with torch.inference_mode():
        features, feature_map, kept = forward_with_blocks(model, x, blocks)
        expected_features, expected_map = model.forward_features(x)
        torch.testing.assert_close(features, expected_features, rtol=0, atol=0)
        torch.testing.assert_close(feature_map, expected_map, rtol=0, atol=0)
        torch.testing.assert_close(patch_descriptors(kept), PatchFeatureExtractor(model, layer=layer)(x))


def test_fused_module_returns_the_descriptors_without_changing_the_other_outputs(fitted):
    model, detector, explainer, images = fitted
    x = torch.from_numpy(images)
    plain, with_patches = FusedNero(model, detector), FusedNero(model, detector, patch_blocks=explainer.blocks)
    with torch.inference_mode():
        a, b = plain.named_outputs(plain(x)), with_patches.named_outputs(with_patches(x))
        assert set(b) - set(a) == {"patch_features"}
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
        torch.testing.assert_close(b["patch_features"], PatchFeatureExtractor(model, layer="blocks.3")(x))


@pytest.mark.parametrize("backend", ["torch-cpu", "torch-cpu-reference"])
def test_the_engine_publishes_the_patch_map_and_the_score_drivers(fitted, backend):
    """The engine (and the reference scorer) with explanations: the heatmap is the patch map the offline
    explainer computes, the top neurons are the residual score's drivers, the score is untouched."""
    model, detector, explainer, images = fitted
    atlas = NeuronAtlas.fit(np.abs(np.random.default_rng(0).normal(size=(4, detector.feature_dim, 7, 7))),
                            np.zeros((4, 224, 224, 3), np.uint8))
    assets = ExplanationAssets(explainer, atlas, "test")
    options = EngineOptions(precision="fp32", threads=1)
    if backend == "torch-cpu":
        scorer = create_scorer(model, detector, backend, explanation=assets, options=options)
    else:
        scorer = Scorer(model, detector, explanation=assets)
    scored = scorer.score_batch(images)
    reference = create_scorer(model, detector, "torch-cpu", options=options).score_batch(images)
    assert scored.heatmaps.shape == (3, 14, 14)
    np.testing.assert_allclose(scored.heatmaps, explainer.heatmaps(explainer.maps(model, images)), atol=1e-5)
    np.testing.assert_allclose(scored.score, reference.score, rtol=1e-5)  # the score is untouched
    assert scored.heatmaps.max() > 0  # these polyp frames have patches unlike the normal ones
    with torch.inference_mode():
        features = model.forward_features(torch.from_numpy(images))[0].double().numpy()
    parts = detector.score_parts(features)
    drivers = residual_drivers(parts.relevance, detector.fitted_arrays()["pca_mean"],
                               detector.fitted_arrays()["pca_components"])
    np.testing.assert_array_equal(scored.top_neurons[:, 0], drivers.argmax(axis=1))
    np.testing.assert_allclose(np.abs(scored.deviations), np.sort(drivers, axis=1)[:, ::-1][:, :5], rtol=1e-3)


def test_a_saved_explainer_loads_with_the_same_map(fitted, tmp_path):
    model, _, explainer, images = fitted
    explainer.save(tmp_path / "explain.npz")
    loaded = PatchExplainer.load(tmp_path / "explain.npz")
    assert (loaded.layer, loaded.offset, loaded.sigma) == (explainer.layer, explainer.offset, explainer.sigma)
    np.testing.assert_array_equal(loaded.maps(model, images), explainer.maps(model, images))
    with pytest.raises(ArtifactError, match="not a patch explainer"):
        PatchExplainer.load(bundled.DETECTOR)


def _measured(patch_pointing: float) -> dict:
    def family(name, pointing, lift, auroc, chosen=None):
        parts = {"report": {"pointing_game": pointing, "mass_lift": lift, "auroc_inside": auroc}}
        return {"family": name, "chosen": chosen or {}, "measures": {"hyperkvasir-polyp": parts, "cvc-clinicdb": parts}}

    chosen = {"layer": "blocks.3", "coreset": 1000, "sigma": 1.0, "quantile": 0.9}
    return {"results": [family("deviation heatmap (current live map)", 0.5, 2.0, 0.8),
                        family("centre prior (Gaussian)", 0.45, 3.0, 0.82),
                        family("patch map (ID patch memory, lit scope region)", patch_pointing, 3.5, 0.9, chosen)]}


def test_the_patch_map_goes_live_only_when_it_beats_every_baseline_on_every_measure():
    from stream_monitor.explanations.assets import validated_patch_settings

    assert validated_patch_settings(_measured(0.75)) == PatchMapSettings("blocks.3", 1000, 1.0, 0.9)
    assert validated_patch_settings(_measured(0.5)) is None  # ties the current map's pointing game: not better
