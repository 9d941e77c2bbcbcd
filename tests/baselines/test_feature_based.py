"""Feature-space baselines (Mahalanobis, ViM, NECO, KNN) against direct restatements.

The restatements follow the papers' own code paths (explicit inverse, sklearn covariance / scaler / PCA,
brute-force sort) rather than this package's eigh / chunked formulations.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from stream_monitor.baselines import KNN, NECO, Mahalanobis, ViM, vim_default_dim
from stream_monitor.baselines.feature_based import kth_neighbour_distance
from stream_monitor.errors import InputError

RTOL = 1e-9


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Correlated, full-rank features (N=120, D=10), C=4, a random head, and 15 test rows."""
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(10, 10))
    labels = np.arange(120) % 4
    centres = rng.normal(0.0, 3.0, (4, 10))
    train = centres[labels] + rng.normal(size=(120, 10)) @ mixing
    test = rng.normal(0.0, 4.0, (15, 10)) @ mixing
    return {"train": train, "labels": labels, "weight": rng.normal(size=(4, 10)), "bias": rng.normal(size=4),
            "test": test}  # fmt: skip


def _fit(det, d: dict[str, np.ndarray]):
    return det.fit(d["train"], d["labels"], d["weight"], d["bias"])


def test_mahalanobis_matches_explicit_inverse_per_sample(data) -> None:
    train, labels = data["train"], data["labels"]
    means = np.array([train[labels == c].mean(axis=0) for c in range(4)])
    cov = sum(np.outer(a - means[y], a - means[y]) for a, y in zip(train, labels)) / len(train)
    precision = np.linalg.inv(cov)
    expected = [min((a - m) @ precision @ (a - m) for m in means) for a in data["test"]]
    np.testing.assert_allclose(_fit(Mahalanobis(), data).score(data["test"]), expected, rtol=RTOL)


def test_mahalanobis_singular_covariance_uses_pseudo_inverse() -> None:
    """A dead unit (always 0) makes the covariance singular; pinv ignores it instead of failing."""
    rng = np.random.default_rng(2)
    train = np.c_[rng.normal(size=(50, 3)), np.zeros(50)]
    weight, labels = rng.normal(size=(2, 4)), np.arange(50) % 2
    det = Mahalanobis().fit(train, labels, weight, np.zeros(2))
    test = rng.normal(size=(5, 4))
    # Without the dead unit the covariance is invertible; the dead unit's test values must not count.
    expected = Mahalanobis().fit(train[:, :3], labels, weight[:, :3], np.zeros(2)).score(test[:, :3])
    np.testing.assert_allclose(det.score(test), expected, rtol=RTOL)


def test_mahalanobis_rejects_a_class_without_samples(data) -> None:
    with pytest.raises(InputError, match=r"classes \[3\] have no training samples"):
        Mahalanobis().fit(data["train"], data["labels"] % 3, data["weight"], data["bias"])


def vim_official(train, test, weight, bias, dim) -> np.ndarray:
    """Wang et al. 2022's code path: sklearn covariance, np.linalg.eig, argsort."""
    u = -np.matmul(np.linalg.pinv(weight), bias)
    ec = EmpiricalCovariance(assume_centered=True).fit(train - u)
    eig_vals, eigen_vectors = np.linalg.eig(ec.covariance_)
    ns = np.ascontiguousarray((eigen_vectors.real.T[np.argsort(eig_vals.real * -1)[dim:]]).T)
    logit_train, logit_test = train @ weight.T + bias, test @ weight.T + bias
    alpha = logit_train.max(axis=-1).mean() / np.linalg.norm((train - u) @ ns, axis=-1).mean()
    vlogit = np.linalg.norm((test - u) @ ns, axis=-1) * alpha
    return -(scipy_logsumexp(logit_test, axis=-1) - vlogit)


@pytest.mark.parametrize("dim", [None, 1, 7])
def test_vim_matches_official_code_path(data, dim) -> None:
    det = _fit(ViM(dim=dim), data)
    expected = vim_official(data["train"], data["test"], data["weight"], data["bias"], det.dim_)
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


def test_vim_default_dim_rule() -> None:
    assert [vim_default_dim(d) for d in (10, 384, 512, 767, 768, 1280, 2047, 2048)] == [
        5, 192, 256, 383, 512, 512, 512, 1000,
    ]  # fmt: skip


def test_vim_needs_a_residual_space(data) -> None:
    with pytest.raises(InputError, match="dim < D"):
        _fit(ViM(dim=10), data)


def test_vim_warns_when_the_train_rows_leave_no_residual(real) -> None:
    """30 bundled-model train rows against the default dim 512 of D = 1280: the train residual is noise."""
    with pytest.warns(UserWarning, match="every train row lies in the principal space"):
        ViM().fit(real["train"], real["labels"], real["weight"], real["bias"])


def test_vim_fits_silently_with_more_rows_than_dim(data, recwarn) -> None:
    _fit(ViM(), data)  # N = 120 rows, dim 5
    assert not [w for w in recwarn if "principal space" in str(w.message)]


def neco_official(train, test, weight, bias, dim, max_logit) -> np.ndarray:
    """Ben Ammar et al. 2024's code path: sklearn StandardScaler and PCA, then a per-sample loop."""
    ss = StandardScaler()
    z_train, z_test = ss.fit_transform(train), ss.transform(test)
    pca = PCA(train.shape[1], svd_solver="full").fit(z_train)
    reduced = pca.transform(z_test)[:, :dim]
    ratio = np.array([np.linalg.norm(reduced[i]) / np.linalg.norm(z_test[i]) for i in range(len(test))])
    if max_logit:
        ratio *= (test @ weight.T + bias).max(axis=1)
    return -ratio


@pytest.mark.parametrize(("dim", "max_logit"), [(3, False), (100, False), (5, True)])
def test_neco_matches_official_code_path(data, dim, max_logit) -> None:
    det = _fit(NECO(dim=dim, scale_by_max_logit=max_logit), data)
    assert det.dim_ == min(dim, 10)
    expected = neco_official(data["train"], data["test"], data["weight"], data["bias"], det.dim_, max_logit)
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


def knn_brute_force(train, test, k) -> np.ndarray:
    def normalise(x):
        return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-10)

    bank = normalise(train)
    return np.array([np.sort(np.linalg.norm(bank - q, axis=1))[k - 1] for q in normalise(test)])


@pytest.mark.parametrize("k", [1, 5, 50, 120])
def test_knn_matches_brute_force_sort(data, k) -> None:
    det = _fit(KNN(k=k), data)
    expected = knn_brute_force(data["train"], data["test"], k)
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


def test_knn_clips_k_to_the_train_size(data) -> None:
    det = _fit(KNN(k=500), data)
    assert det.k_ == 120
    np.testing.assert_allclose(det.score(data["test"]), knn_brute_force(data["train"], data["test"], 120), rtol=RTOL)


def test_knn_chunking_does_not_change_scores(data) -> None:
    """A tiny memory budget forces one query per chunk; results must be identical."""
    bank = data["train"] / np.linalg.norm(data["train"], axis=1, keepdims=True)
    queries = data["test"] / np.linalg.norm(data["test"], axis=1, keepdims=True)
    whole = kth_neighbour_distance(queries, bank, 7)
    np.testing.assert_array_equal(kth_neighbour_distance(queries, bank, 7, max_chunk_bytes=1), whole)
    np.testing.assert_array_equal(kth_neighbour_distance(queries, bank, 7, max_chunk_bytes=3 * 8 * 120 * 4), whole)


def test_knn_distance_is_exact_for_near_duplicates() -> None:
    """|q|^2 + |b|^2 - 2q.b cancels for near-duplicates; the recomputed distance must not."""
    bank = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 1e-9]])
    np.testing.assert_allclose(kth_neighbour_distance(q, bank, 1), [1e-9], rtol=1e-6)
