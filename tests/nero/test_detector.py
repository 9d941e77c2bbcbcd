"""NeroDetector behaviour: it separates OOD from ID, its robust options work, and bad input is refused."""

import numpy as np
import pytest

from stream_monitor.errors import InputError, NotFittedError
from stream_monitor.evaluation.ood_metrics import auroc
from stream_monitor.nero import NeroConfig, NeroDetector

from .conftest import make_problem


def ood_features(n_features, n=100, seed=5):
    """Activations unlike any ID class: a different sparse pattern at a larger scale."""
    rng = np.random.default_rng(seed)
    pattern = np.maximum(rng.normal(size=n_features), 0) * 6
    return np.maximum(pattern + rng.normal(size=(n, n_features)), 0)


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "parity", "k": 20},
        {"mode": "robust"},
        {"mode": "robust", "centroids_per_class": 3},
        {"mode": "robust", "lambda_space": "pca"},
        {"mode": "robust", "stabilizer": "clamp", "epsilon": 1e-3},
        {"mode": "robust", "use_residual": True, "pca_components": 20},
    ],
)
def test_separable_toy_data_gives_auroc_at_least_095(problem, options):
    features, labels, weight, bias, _ = problem
    det = NeroDetector(**options).fit(features[:240], labels[:240], weight, bias)
    id_scores = det.score(features[240:])
    assert auroc(id_scores, det.score(ood_features(features.shape[1]))) >= 0.95


def test_each_term_can_be_switched_off(problem):
    features, labels, weight, bias, _ = problem
    full = NeroDetector("robust").fit(features, labels, weight, bias).score_parts(features[:10])
    for flag, expected in [
        ("use_rho", full.distance + full.bias_term),
        ("use_bias", full.distance * full.rho),
        ("use_distance", full.bias_term * full.rho),
    ]:
        ablated = NeroDetector("robust", **{flag: False}).fit(features, labels, weight, bias)
        np.testing.assert_allclose(ablated.score(features[:10]), expected, rtol=1e-12)
    with pytest.raises(InputError, match="at least one"):
        NeroDetector("robust", use_distance=False, use_bias=False)
    np.testing.assert_array_equal(full.residual.shape, (10,))


def test_robust_k_scales_with_feature_width(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("robust").fit(features, labels, weight, bias)
    assert det.k_ == round(175 / 512 * 64)
    assert NeroDetector("parity").config.k == 175


def test_kmeans_centroids_belong_to_their_class(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("robust", centroids_per_class=4).fit(features, labels, weight, bias)
    owners = det._state["centroid_labels"]
    assert sorted(set(owners.tolist())) == [0, 1, 2] and len(owners) == 12
    parts = det.score_parts(features)
    assert (parts.nearest_class == labels).mean() > 0.9


def test_score_parts_are_consistent(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("parity", k=20).fit(features, labels, weight, bias)
    parts = det.score_parts(features[:7])
    np.testing.assert_allclose(parts.score, (parts.distance + parts.bias_term) * parts.rho)
    np.testing.assert_allclose(parts.relevance.sum(1) + parts.bias_relevance, 1.0, atol=1e-9)
    np.testing.assert_allclose(parts.logits, features[:7] @ weight.T + bias)
    assert parts.score.dtype == np.float64 and parts.score.shape == (7,)


def test_explanation_names_the_most_deviating_neurons(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("parity", k=20).fit(features, labels, weight, bias)
    exp = det.explain(features[:5], top_n=8)
    raw_means = det._state["raw_class_means"]
    for i in range(5):
        raw = np.append(exp.parts.relevance[i], exp.parts.bias_relevance[i])
        nearest = int(np.argmin(np.abs(raw - raw_means).sum(1)))
        assert exp.reference_class[i] == nearest
        deviation = exp.parts.relevance[i] - raw_means[nearest, :-1]
        expected = np.argsort(-np.abs(deviation), kind="stable")[:8]
        np.testing.assert_array_equal(exp.top_neurons[i], expected)
        np.testing.assert_allclose(exp.deviations[i], deviation[expected])


def test_pca_components_clip_to_the_train_rank_with_a_warning():
    features, labels, weight, bias, _ = make_problem(3, 64, 30)
    with pytest.warns(UserWarning, match="clipped to 29"):
        det = NeroDetector("parity", k=20).fit(features, labels, weight, bias)
    assert det.fit_info["pca_components"] == 29
    with pytest.raises(InputError, match="exceeds"):
        NeroDetector("parity", k=20, pca_components=40).fit(features, labels, weight, bias)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda f, y, w, b: (f[:, :-1], y, w, b), "width D = 63"),
        (lambda f, y, w, b: (np.where(np.arange(f.size).reshape(f.shape) == 5, np.nan, f), y, w, b), "NaN or inf"),
        (lambda f, y, w, b: (f[:0], y[:0], w, b), "empty"),
        (lambda f, y, w, b: (f, y, w[:1], b[:1]), "at least 2 classes"),
        (lambda f, y, w, b: (f, np.zeros_like(y), w, b), r"class\(es\) \[1, 2\] have no training samples"),
        (lambda f, y, w, b: (f, y + 5, w, b), "labels must be in"),
        (lambda f, y, w, b: (f, y.astype(float), w, b), "integer"),
        (lambda f, y, w, b: (f, y, w, b[:2]), "bias"),
    ],
)
def test_fit_refuses_bad_input_with_a_clear_error(problem, mutate, message):
    features, labels, weight, bias, _ = problem
    with pytest.raises(InputError, match=message):
        NeroDetector("parity", k=20).fit(*mutate(features, labels, weight, bias))


def test_k_larger_than_feature_width_is_an_error(problem):
    features, labels, weight, bias, _ = problem
    with pytest.raises(InputError, match="k = 175 least-relevant neurons, but the features have only D = 64"):
        NeroDetector("parity").fit(features, labels, weight, bias)


def test_score_refuses_nan_inf_and_wrong_width(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("robust").fit(features, labels, weight, bias)
    bad = features[:4].copy()
    bad[2, 3] = np.inf
    with pytest.raises(InputError, match="1 row\\(s\\), first at row 2"):
        det.score(bad)
    with pytest.raises(InputError, match="width"):
        det.score(features[:, :10])
    with pytest.raises(InputError, match="2-D"):
        det.score(features[0])


def test_unfitted_detector_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        NeroDetector().score(np.zeros((1, 4)))
    with pytest.raises(InputError, match="unknown NERO hyperparameter"):
        NeroDetector(mode="robust", kk=3)
    with pytest.raises(InputError, match="mode"):
        NeroConfig.preset("fast")


def test_calibrated_threshold_flags_the_expected_share_of_id(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("robust").fit(features[:200], labels[:200], weight, bias)
    cal = det.calibrate(features[200:], target_tpr=0.95)
    flagged = det.predict(features[200:]).mean()
    assert flagged <= 0.05 and cal.achieved_tpr >= 0.95 and cal.n_validation == 100
    assert det.predict(ood_features(64)).mean() > 0.9


def test_residual_term_multiplies_the_score_and_is_robust_only(problem):
    features, labels, weight, bias, _ = problem
    base = NeroDetector("robust", pca_components=10).fit(features, labels, weight, bias).score_parts(features[:10])
    with_residual = NeroDetector("robust", pca_components=10, use_residual=True).fit(features, labels, weight, bias)
    np.testing.assert_allclose(with_residual.score(features[:10]), base.score * base.residual, rtol=1e-12)
    alone = NeroDetector("robust", pca_components=10, use_residual=True, use_distance=False, use_bias=False, use_rho=False)
    np.testing.assert_allclose(alone.fit(features, labels, weight, bias).score(features[:10]), base.residual, rtol=1e-12)
    assert ((base.residual >= 0) & (base.residual <= 1)).all()
    with pytest.raises(InputError, match="robust"):
        NeroDetector("parity", use_residual=True)
