import numpy as np
import pytest

from stream_monitor.calibration import Calibration, calibrate_threshold
from stream_monitor.errors import InputError
from stream_monitor.evaluation.ood_metrics import fpr_at_tpr_id_accepted


def test_threshold_is_the_papers_fpr95_threshold():
    """At the calibrated threshold the alert's false-negative rate on OOD equals the reported FPR95."""
    rng = np.random.default_rng(0)
    id_scores, ood = rng.normal(size=137), rng.normal(1, size=90)
    cal = calibrate_threshold(id_scores, 0.95)
    assert np.mean(ood <= cal.threshold) == fpr_at_tpr_id_accepted(id_scores, ood)
    assert cal.achieved_tpr >= 0.95 and cal.n_validation == 137
    assert cal.quantiles["0.5"] == pytest.approx(np.median(id_scores))
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_too_few_scores_warn_and_bad_input_fails():
    with pytest.warns(UserWarning, match="too few"):
        assert calibrate_threshold(np.arange(5.0)).threshold == 4.0
    for bad in (np.array([]), np.array([np.nan, 1.0]), np.ones((2, 2))):
        with pytest.raises(InputError):
            calibrate_threshold(bad)
    with pytest.raises(InputError, match="target_tpr"):
        calibrate_threshold(np.arange(100.0), 1.0)


def test_calibration_over_changes_holds_the_rate_after_every_change():
    """The threshold over a capture chain's changes flags at most 1 - target of the validation frames after
    ANY one change (the worst sets it), so it is at least the clean threshold; an old artifact's calibration
    (no `changes` key) still loads."""
    from stream_monitor.calibration import calibrate_over_changes

    rng = np.random.default_rng(1)
    clean = rng.normal(size=200)
    scores = {"none": clean, "jpeg": clean + rng.normal(0, 0.05, 200), "crop 3%": clean + 0.8}  # crop shifts scores up
    cal = calibrate_over_changes(scores, 0.95)
    assert cal.threshold == calibrate_threshold(scores["crop 3%"], 0.95).threshold
    assert cal.threshold > calibrate_threshold(clean, 0.95).threshold
    for values in scores.values():
        assert np.mean(values > cal.threshold) <= 0.05
    assert cal.changes == ["jpeg", "crop 3%"] and cal.n_validation == 200
    assert cal.achieved_tpr == min(np.mean(v <= cal.threshold) for v in scores.values())
    assert Calibration.from_dict(cal.to_dict()) == cal
    old = {k: v for k, v in calibrate_threshold(clean).to_dict().items() if k != "changes"}
    assert Calibration.from_dict(old).changes == []
    with pytest.raises(InputError, match="'none'"):
        calibrate_over_changes({"jpeg": clean})
