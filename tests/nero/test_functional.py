"""The pure NERO functions: conservation, batched = per-sample, ρ's tie handling, PCA determinism."""

import numpy as np
import pytest

from stream_monitor.errors import InputError
from stream_monitor.nero import functional as F

from .conftest import make_problem
from .reference_nero import relevance_one


@pytest.mark.parametrize("n_classes,n_features", [(3, 384), (11, 512), (3, 1280)])
def test_relevance_sums_to_one_at_epsilon_zero(n_classes, n_features):
    features, _, weight, bias, _ = make_problem(n_classes, n_features, 50)
    rel = F.head_relevance(features, weight, bias)
    totals = rel.neurons.sum(axis=1) + rel.bias
    np.testing.assert_allclose(totals, 1.0, rtol=0, atol=1e-9)


def test_batched_relevance_equals_per_sample_loop():
    features, _, weight, bias, _ = make_problem(11, 128, 40, seed=3)
    rel = F.head_relevance(features, weight, bias)
    looped = np.array([relevance_one(a, weight, bias) for a in features])
    np.testing.assert_allclose(rel.neurons, looped[:, :-1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rel.bias, looped[:, -1], rtol=1e-10, atol=1e-13)


def test_sign_rule_keeps_relevance_finite_where_a_logit_is_zero():
    features, _, weight, bias, _ = make_problem(3, 32, 5)
    bias = bias.copy()
    bias[1] = -(weight[1] @ features[0])  # logit 1 of sample 0 is 0 up to rounding (~1e-17)
    raw = F.head_relevance(features, weight, bias)
    assert np.abs(raw.neurons[0]).max() > 1e12, "ε = 0 must reproduce the reference's blow-up"
    robust = F.head_relevance(features, weight, bias, rule="sign", epsilon=1e-3)
    assert np.isfinite(robust.neurons).all()
    assert np.abs(robust.neurons[0]).max() < 1e5
    assert robust.stabilized >= 1
    clamped = F.head_relevance(features, weight, bias, rule="clamp", epsilon=1e-3)
    assert np.abs(clamped.neurons[0]).max() < 1e5 and clamped.stabilized >= 1
    # far from zero the clamp changes nothing
    np.testing.assert_allclose(clamped.neurons[1:], raw.neurons[1:], rtol=1e-12)


def test_rho_ignores_tie_order_among_dead_units():
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(size=(20, 64)), 0)  # about half the units are dead (0)
    relevance = features * rng.normal(size=(1, 64))  # dead units have relevance exactly 0
    rho = F.low_relevance_norm_ratio(features, relevance, k=30)
    permutation = rng.permutation(64)
    rho_permuted = F.low_relevance_norm_ratio(features[:, permutation], relevance[:, permutation], k=30)
    np.testing.assert_allclose(rho, rho_permuted, rtol=1e-12)
    by_sort = [np.abs(a[np.argsort(r, kind="stable")[:30]]).sum() / np.abs(a).sum() for a, r in zip(features, relevance)]
    np.testing.assert_allclose(rho, by_sort, rtol=1e-12)


def test_rho_edges():
    features = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    relevance = np.array([[0.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(F.low_relevance_norm_ratio(features, relevance, 3), [0.0, 1.0])
    np.testing.assert_allclose(F.low_relevance_norm_ratio(features, relevance, 1), [0.0, 0.5])
    with pytest.raises(InputError, match="k must be in"):
        F.low_relevance_norm_ratio(features, relevance, 4)


def test_pca_is_deterministic_and_sign_fixed():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(100, 20)) @ rng.normal(size=(20, 20))
    first = F.fit_pca(samples, 10)
    second = F.fit_pca(samples[rng.permutation(100)], 10)
    np.testing.assert_allclose(np.abs(first.components), np.abs(second.components), atol=1e-10)
    np.testing.assert_allclose(first.components, second.components, atol=1e-10)
    largest = np.abs(first.components).argmax(axis=1)
    assert (first.components[np.arange(10), largest] > 0).all()
    np.testing.assert_allclose(first.components @ first.components.T, np.eye(10), atol=1e-12)
    with pytest.raises(InputError, match="components"):
        F.fit_pca(samples, 21)


def test_l1_distances_match_brute_force_and_chunking():
    rng = np.random.default_rng(0)
    samples, centroids = rng.normal(size=(601, 7)), rng.normal(size=(5, 7))
    brute = np.array([[np.abs(s - c).sum() for c in centroids] for s in samples])
    np.testing.assert_allclose(F.l1_distances(samples, centroids, chunk=64), brute, rtol=1e-12)


def test_kmeans_is_seeded_and_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.concatenate([c + rng.normal(size=(50, 2)) * 0.1 for c in centres])
    found = F.kmeans(samples, 3, seed=4)
    np.testing.assert_array_equal(found, F.kmeans(samples, 3, seed=4))
    assert np.abs(np.sort(found, axis=0) - np.sort(centres, axis=0)).max() < 0.1
    assert len(F.kmeans(np.ones((5, 2)), 3, seed=0)) == 1  # no more clusters than distinct points


def test_fuse_score_switches():
    d, b, r = np.array([2.0]), np.array([1.0]), np.array([0.5])
    assert F.fuse_score(d, b, r)[0] == 1.5
    assert F.fuse_score(d, b, r, use_bias=False)[0] == 1.0
    assert F.fuse_score(d, b, r, use_distance=False)[0] == 0.5
    assert F.fuse_score(d, b, r, use_rho=False)[0] == 3.0


def test_residual_ratio_is_zero_inside_the_subspace_and_one_orthogonal_to_it():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(10, 3)))[0].T  # 3 orthonormal directions in R^10
    samples = rng.normal(size=(50, 3)) @ basis + 5.0
    pca = F.fit_pca(samples, 3)
    inside = rng.normal(size=(4, 3)) @ basis + 5.0
    np.testing.assert_allclose(F.residual_ratio(inside, pca), 0.0, atol=1e-12)
    orthogonal = np.linalg.qr(np.c_[basis.T, rng.normal(size=(10, 1))])[0][:, 3]
    np.testing.assert_allclose(F.residual_ratio(pca.mean + 2 * orthogonal[None, :], pca), 1.0, atol=1e-12)
    assert F.residual_ratio(pca.mean[None, :], pca)[0] == 0.0
