"""NERO-based fusions (stream_monitor/baselines/fusion.py) and the cross-seed selection rule over all methods."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stream_monitor.baselines import create_baseline
from stream_monitor.baselines.fusion import (
    WhitenedRelevanceDistance,
    ZScoreFusion,
    _stratified_halves,
    nero_residual,
)
from stream_monitor.errors import InputError
from stream_monitor.evaluation.methods import fusion_methods
from stream_monitor.evaluation.seeds import select_over_seeds
from stream_monitor.nero.functional import head_relevance
from tests.baselines.conftest import make_toy_problem


@pytest.fixture(scope="module")
def toy():
    return make_toy_problem(seed=2, n_train=300, n_test=150)


def _fit(det, toy):
    return det.fit(toy.train_features, toy.train_labels, toy.weight, toy.bias)


@pytest.mark.parametrize("method", fusion_methods(), ids=lambda m: m.name)
def test_every_fusion_separates_toy_ood(method, toy) -> None:
    # Block-statistics methods read [feature | statistics]: here the statistics are a copy of the features.
    view = (lambda x: np.hstack([x, x])) if method.block_stats else (lambda x: x)
    det = method.build().fit(view(toy.train_features), toy.train_labels, toy.weight, toy.bias)
    scores_id, scores_ood = det.score(view(toy.id_features)), det.score(view(toy.ood_features))
    auroc = roc_auc_score(np.r_[np.zeros(len(scores_id)), np.ones(len(scores_ood))], np.r_[scores_id, scores_ood])
    assert auroc >= 0.95, f"{method.name}: AUROC {auroc:.3f}"


def test_zscore_uses_out_of_fold_statistics(toy) -> None:
    """Each component's mean/std must come from scores of train frames it was NOT fitted on."""
    fusion = _fit(ZScoreFusion([lambda: create_baseline("knn", k=5), nero_residual]), toy)
    a, b = _stratified_halves(toy.train_labels, 0)
    x, y, w, bias = toy.train_features, toy.train_labels, toy.weight, toy.bias
    held = np.r_[create_baseline("knn", k=5).fit(x[a], y[a], w, bias).score(x[b]),
                 create_baseline("knn", k=5).fit(x[b], y[b], w, bias).score(x[a])]
    assert fusion.mean_[0] == pytest.approx(held.mean(), rel=1e-12)
    assert fusion.std_[0] == pytest.approx(held.std(), rel=1e-12)
    in_sample = create_baseline("knn", k=5).fit(x, y, w, bias).score(x)
    assert in_sample.mean() < held.mean()  # why out-of-fold: a detector scores its own train frames too well
    full = [create_baseline("knn", k=5).fit(x, y, w, bias), nero_residual().fit(x, y, w, bias)]
    expected = sum((d.score(toy.id_features) - m) / s for d, m, s in zip(full, fusion.mean_, fusion.std_))
    np.testing.assert_allclose(fusion.score(toy.id_features), expected, rtol=1e-12)


def test_whitened_relevance_distance_matches_formula(toy) -> None:
    det = _fit(WhitenedRelevanceDistance(components=5), toy)
    rel = head_relevance(toy.train_features, toy.weight, toy.bias, "sign", 1e-6).neurons
    mean = rel.mean(axis=0)
    u, s, vt = np.linalg.svd(rel - mean, full_matrices=False)
    std = s[:5] / np.sqrt(len(rel) - 1)
    white = lambda r: ((r - mean) @ vt[:5].T) / std  # noqa: E731 — sign of components does not matter
    centroids = [white(rel[toy.train_labels == c]).mean(axis=0) for c in range(3)]
    test_rel = head_relevance(toy.ood_features[:7], toy.weight, toy.bias, "sign", 1e-6).neurons
    expected = [min(np.linalg.norm(white(r[None])[0] - m) for m in centroids) for r in test_rel]
    np.testing.assert_allclose(det.score(toy.ood_features[:7]), expected, rtol=1e-9)


def test_fusion_needs_two_components() -> None:
    with pytest.raises(InputError, match="two components"):
        ZScoreFusion([nero_residual])


def test_selection_over_seeds_takes_the_best_mean_validation_auroc() -> None:
    """B wins on one seed only; A has the higher mean, so A is chosen. C lacks a seed and is not a candidate."""
    seeds = [{"A": {"auroc": 0.90, "fpr95": 0.3}, "B": {"auroc": 0.95, "fpr95": 0.2}, "C": {"auroc": 0.99, "fpr95": 0.0}},
             {"A": {"auroc": 0.92, "fpr95": 0.3}, "B": {"auroc": 0.80, "fpr95": 0.5}}]
    chosen = select_over_seeds(seeds, {"A", "B", "C"})
    assert chosen["chosen"] == "A" and set(chosen["candidates"]) == {"A", "B"}
    assert chosen["candidates"]["A"]["auroc"] == pytest.approx(0.91)


def test_a_seed_report_is_reused_only_for_the_same_weights_and_sets(tmp_path) -> None:
    import json

    from stream_monitor.evaluation.seeds import _finished_report

    report = {"meta": {"model_sha256": "abc"}, "results": {"knn": {"hk-polyp": {}, "cvc": {}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert _finished_report(tmp_path, "abc", ["cvc", "hk-polyp"]) == report
    assert _finished_report(tmp_path, "abd", ["cvc", "hk-polyp"]) is None  # other weights
    assert _finished_report(tmp_path, "abc", ["cvc", "hk-polyp", "new-set"]) is None  # an OOD set was added
    assert _finished_report(tmp_path / "missing", "abc", ["cvc"]) is None


def test_halves_without_groups_are_the_per_sample_halves(toy) -> None:
    """groups=None must draw exactly the halves of one group per sample (the bundled fusion's statistics)."""
    plain = _stratified_halves(toy.train_labels, 0)
    explicit = _stratified_halves(toy.train_labels, 0, np.arange(len(toy.train_labels)))
    for got, expected in zip(plain, explicit):
        np.testing.assert_array_equal(got, expected)


def test_grouped_halves_keep_every_copy_with_its_source(toy) -> None:
    n = len(toy.train_labels)
    labels, groups = np.tile(toy.train_labels, 3), np.tile(np.arange(n), 3)
    a, b = _stratified_halves(labels, 0, groups)
    assert not set(groups[a]) & set(groups[b])
    assert len(a) + len(b) == 3 * n
    for c in np.unique(toy.train_labels):  # still stratified: about half of every class's sources per side
        sources = np.flatnonzero(toy.train_labels == c)
        assert len(set(groups[a]) & set(sources)) == len(sources) // 2


def test_zscore_with_groups_standardises_copies_out_of_fold(toy) -> None:
    """Exact copies of the train set: without groups about half the copies have their twin in the other half,
    where KNN (k = 1) finds it at distance 0, so the held-out scores look too normal; with groups they are
    the out-of-fold scores of source images the fitted half never saw."""
    x, y, w, bias = toy.train_features, toy.train_labels, toy.weight, toy.bias
    doubled, labels, groups = np.vstack([x, x]), np.r_[y, y], np.r_[np.arange(len(y)), np.arange(len(y))]
    knn = lambda: create_baseline("knn", k=1)  # noqa: E731
    grouped = ZScoreFusion([knn, nero_residual]).fit(doubled, labels, w, bias, groups=groups)
    leaky = ZScoreFusion([knn, nero_residual]).fit(doubled, labels, w, bias)
    assert leaky.mean_[0] < 0.7 * grouped.mean_[0]
    a, b = _stratified_halves(labels, 0, groups)
    held = np.r_[knn().fit(doubled[a], labels[a], w, bias).score(doubled[b]),
                 knn().fit(doubled[b], labels[b], w, bias).score(doubled[a])]
    assert grouped.mean_[0] == pytest.approx(held.mean(), rel=1e-12)


def test_groups_must_match_the_samples_and_their_classes(toy) -> None:
    y = toy.train_labels
    with pytest.raises(InputError, match="one id per train sample"):
        _stratified_halves(y, 0, np.arange(len(y) - 1))
    mixed = np.zeros(len(y), dtype=int)  # one group holding every class
    with pytest.raises(InputError, match="group's class"):
        _stratified_halves(y, 0, mixed)
