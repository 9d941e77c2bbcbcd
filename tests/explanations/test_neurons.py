"""Neurons a person can read (explanations/neurons.py, explanations/assets.py): the drivers of the shipped score
add up to it on real features, each neuron's thumbnails come from where it fires most, and the atlas
travels in the explanation artifact without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_monitor import bundled
from stream_monitor.data.images import list_images, read_image
from stream_monitor.errors import ArtifactError
from stream_monitor.explanations.assets import ExplanationAssets, explanation_path, load_beside
from stream_monitor.explanations.neurons import NeuronAtlas, residual_drivers
from stream_monitor.explanations.patch import PatchExplainer
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.preprocess import preprocess_batch
from stream_monitor.site.patch_memory import PatchMemory

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_score_drivers_sum_to_the_shipped_score_on_real_features():
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    paths = list_images(DATA / "hyperkvasir-lgi" / "polyp")[:3] + list_images(DATA / "hyperkvasir-lgi" / "bbps-0-1")[:3]
    with torch.inference_mode():
        _, features, _ = model(torch.from_numpy(preprocess_batch([read_image(p) for p in paths])))
    parts = detector.score_parts(features.double().numpy())
    arrays = detector.fitted_arrays()
    drivers = residual_drivers(parts.relevance, arrays["pca_mean"], arrays["pca_components"])
    np.testing.assert_allclose(drivers.sum(axis=1), parts.score, rtol=1e-10)
    top5 = np.sort(drivers, axis=1)[:, ::-1][:, :5].sum(axis=1)
    assert np.all(top5 > 0.05 * parts.score)  # a few neurons carry a visible share: worth naming


def _atlas_with_known_peaks():
    """Neuron d fires most in image d at cell (d, 6 − d) of a 7×7 map; image i is a flat colour 40·i."""
    maps = np.zeros((5, 4, 7, 7), np.float32)
    for d in range(4):
        maps[d, d, d, 6 - d] = 10.0
        maps[(d + 1) % 5, d, 0, 0] = 5.0  # second best elsewhere
    rgb = np.stack([np.full((224, 224, 3), 40 * i, np.uint8) for i in range(5)])
    rgb[2, 64:96, 128:160] = (250, 0, 0)  # neuron 2's peak cell (2, 4) holds a red square
    return NeuronAtlas.fit(maps, rgb, per_neuron=2, thumb=16, crop=32)


def test_each_neurons_first_thumbnail_is_cropped_where_it_fires_most():
    atlas = _atlas_with_known_peaks()
    strip = atlas.strip(2)  # BGR
    assert strip.shape == (16, 32, 3)
    first = strip[:, :16].reshape(-1, 3).mean(axis=0)
    assert first[2] > 200 and first[0] < 40  # red: the crop sits on the peak cell
    second = atlas.strip(0)[:, 16:].reshape(-1, 3).mean(axis=0)
    assert abs(second.mean() - 40) < 6  # neuron 0's second-best image is image 1 (grey 40)


def test_drivers_are_worded_more_or_less_against_the_training_mean():
    atlas = NeuronAtlas(np.array([1.0, 1.0, 1.0]), np.zeros(0, np.uint8), np.zeros(4, np.int64), 16, 1)
    relevance = np.array([[3.0, -2.0, 0.1]])
    components = np.array([[0.0, 0.0, 1.0]])  # neurons 0 and 1 lie outside the subspace
    top, signed = atlas.signed_drivers(relevance, np.array([[2.0, 0.5, 1.0]]), np.zeros(3), components, top_n=2)
    assert top.tolist() == [[0, 1]]
    assert signed[0, 0] > 0 > signed[0, 1]  # neuron 0 fires more than usual, neuron 1 less


def test_explanations_round_trip_beside_the_detector_and_refuse_another_head(tmp_path):
    atlas = _atlas_with_known_peaks()
    patch = PatchExplainer("blocks.3", PatchMemory(np.ones((4, 80), np.float32)), offset=0.5, sigma=1.0)
    weight, bias = np.ones((3, 4)), np.zeros(3)
    from stream_monitor import artifact

    assets = ExplanationAssets(patch, atlas, artifact.head_sha256(weight, bias))
    path = explanation_path(tmp_path / "det.npz")
    assert path.name == "det.explain.npz"
    assets.save(path)
    loaded = load_beside(tmp_path / "det.npz", weight, bias)
    np.testing.assert_array_equal(loaded.atlas.strip(2), atlas.strip(2))
    assert (loaded.patch.layer, loaded.patch.offset) == ("blocks.3", 0.5)
    with pytest.raises(ArtifactError, match="another classifier head"):
        load_beside(tmp_path / "det.npz", weight * 2, bias)
    assert load_beside(tmp_path / "other.npz") is None
    with np.load(path, allow_pickle=False) as raw:  # plain arrays: readable without pickle
        assert "atlas_jpeg" in raw.files


def test_the_bundled_explanations_fit_the_bundled_model_and_follow_the_measured_verdict():
    """nero_default.explain.npz belongs to the shipped head, names a thumbnail strip for every neuron, and
    carries a patch map exactly when docs/results/explanations says it beats every other map."""
    import json

    from stream_monitor.explanations.assets import validated_patch_settings

    model, _ = load_classifier(bundled.MODEL)
    assets = load_beside(bundled.DETECTOR, *model.head_arrays())
    assert assets is not None and assets.atlas.size == model.feature_dim and assets.score_terms == ("residual",)
    assert assets.atlas.strip(model.feature_dim - 1).shape == (assets.atlas.thumb, 3 * assets.atlas.thumb, 3)
    measured = json.loads((Path(__file__).resolve().parents[2] / "docs" / "results" / "explanations" / "maps.json").read_text())
    assert (assets.patch is None) == (validated_patch_settings(measured) is None)
