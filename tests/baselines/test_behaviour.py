"""Behaviour of every registered baseline on separable toy data, and the registry itself."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.baselines import BASELINES, HeadDetector, create_baseline, list_baselines
from stream_monitor.errors import InputError

# NECO's default dim=100 is clipped to D=24 on the toy problem, so it would project onto the whole space
# and the ratio would be 1 for every sample. dim=2 is the span of the 3 class means, the "collapsed"
# ID subspace the method relies on.
TOY_KWARGS: dict[str, dict[str, object]] = {"neco": {"dim": 2}}

EXPECTED_NAMES = {
    "msp", "energy", "entropy", "max_logit", "gen", "mahalanobis", "vim", "neco", "knn",
    "react", "ash", "scale", "gradnorm", "residual", "rmds", "fdbd", "nnguide", "nci",
}  # fmt: skip


def _fitted(name: str, toy) -> HeadDetector:
    det = create_baseline(name, **TOY_KWARGS.get(name, {}))
    return det.fit(toy.train_features, toy.train_labels, toy.weight, toy.bias)


def test_registry_lists_every_baseline_under_its_own_name() -> None:
    assert set(list_baselines()) == EXPECTED_NAMES
    assert list_baselines() == sorted(list_baselines())
    for name, cls in BASELINES.items():
        assert cls.name == name
        assert isinstance(create_baseline(name), cls)


def test_create_baseline_rejects_unknown_names_and_arguments() -> None:
    with pytest.raises(InputError, match="unknown baseline 'nero'.*energy"):
        create_baseline("nero")
    with pytest.raises(InputError, match="bad arguments for baseline 'energy'"):
        create_baseline("energy", temprature=2.0)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_separable_toy_data_gives_auroc_at_least_095(name: str, toy, auroc_ood_positive) -> None:
    det = _fitted(name, toy)
    auroc = auroc_ood_positive(det.score(toy.id_features), det.score(toy.ood_features))
    assert auroc >= 0.95, f"{name}: AUROC(OOD positive) = {auroc:.4f}"


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_fit_returns_self_and_score_is_float64_per_row(name: str, toy) -> None:
    det = create_baseline(name, **TOY_KWARGS.get(name, {}))
    assert det.fit(toy.train_features, toy.train_labels, toy.weight, toy.bias) is det
    scores = det.score(toy.id_features[:7])
    assert scores.shape == (7,) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_each_row_is_scored_independently_of_its_batch(name: str, toy) -> None:
    """A frame's score must not depend on what else is in the batch (batch of one included)."""
    det = _fitted(name, toy)
    batch = np.vstack([toy.id_features[:5], toy.ood_features[:5]])
    one_by_one = np.concatenate([det.score(row[None, :]) for row in batch])
    np.testing.assert_allclose(det.score(batch), one_by_one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_float32_and_list_inputs_score_like_float64(name: str, toy) -> None:
    """The engine hands over float32 features; scores are computed in float64 all the same."""
    det = _fitted(name, toy)
    x32 = toy.id_features[:4].astype(np.float32)
    np.testing.assert_array_equal(det.score(x32), det.score(x32.astype(np.float64)))
    np.testing.assert_array_equal(det.score(x32.tolist()), det.score(x32))


def test_labels_do_not_matter_to_label_free_detectors(toy) -> None:
    """Only Mahalanobis and RMDS (class means) use train labels; the others must ignore them."""
    shuffled = np.random.default_rng(1).permutation(toy.train_labels)
    x = np.vstack([toy.id_features[:10], toy.ood_features[:10]])
    for name in sorted(EXPECTED_NAMES - {"mahalanobis", "rmds"}):
        a = _fitted(name, toy).score(x)
        det = create_baseline(name, **TOY_KWARGS.get(name, {}))
        b = det.fit(toy.train_features, shuffled, toy.weight, toy.bias).score(x)
        np.testing.assert_array_equal(a, b, err_msg=name)
