"""OOD metrics against scikit-learn, with ties, constant scores and imbalance; the two FPR95
conventions on hand-worked examples."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from stream_monitor.errors import InputError
from stream_monitor.evaluation import ood_metrics as M


def cases():
    rng = np.random.default_rng(0)
    yield "continuous", rng.normal(size=200), rng.normal(1.0, size=50)
    yield "heavy ties", rng.integers(0, 4, 300).astype(float), rng.integers(1, 5, 40).astype(float)
    yield "constant", np.zeros(30), np.zeros(70)
    yield "imbalanced 1:100", rng.normal(size=1000), rng.normal(2.0, size=10)
    yield "single OOD", rng.normal(size=20), np.array([0.5])
    yield "perfect", np.arange(10.0), np.arange(10.0) + 100


@pytest.mark.parametrize("name,id_scores,ood_scores", list(cases()), ids=[c[0] for c in cases()])
def test_metrics_match_scikit_learn(name, id_scores, ood_scores):
    y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    s = np.r_[id_scores, ood_scores]
    assert M.auroc(id_scores, ood_scores) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.aupr_out(id_scores, ood_scores) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert M.aupr_in(id_scores, ood_scores) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert M.fpr_at_tpr_ood_positive(id_scores, ood_scores) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    assert M.detection_error(id_scores, ood_scores) == pytest.approx(np.min(0.5 * (1 - tpr) + 0.5 * fpr), abs=1e-12)


def test_paper_fpr95_counts_ties_as_false_positives():
    id_scores = np.arange(20.0)  # τ = sorted[floor(0.95·20)] = sorted[19] = 19
    ood = np.array([19.0, 19.0, 20.0, 25.0])
    assert M.fpr_at_tpr_id_accepted(id_scores, ood) == 0.5
    # OOD-positive convention: 95% of OOD recalled needs all 4 → threshold 19 → every ID score ≥ 19 flagged
    assert M.fpr_at_tpr_ood_positive(id_scores, ood) == pytest.approx(1 / 20)


def test_the_two_conventions_differ_and_are_named():
    rng = np.random.default_rng(1)
    i, o = rng.normal(size=500), rng.normal(1.5, size=500)
    result = M.evaluate(i, o)
    assert result.fpr95 != result.fpr95_ood_positive
    assert set(result.to_dict()) == {"auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out", "detection_error", "n_id", "n_ood"}


def test_constant_scores_are_chance():
    m = M.evaluate(np.ones(10), np.ones(10))
    assert m.auroc == 0.5 and m.fpr95 == 1.0 and m.fpr95_ood_positive == 1.0


@pytest.mark.parametrize("id_scores,ood_scores", [([], [1.0]), ([1.0], []), ([np.nan], [1.0]), ([1.0], [np.inf])])
def test_empty_or_non_finite_scores_are_refused(id_scores, ood_scores):
    with pytest.raises(InputError):
        M.evaluate(np.array(id_scores), np.array(ood_scores))
