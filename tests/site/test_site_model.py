"""Site model: conformal p-values hold their false-alert promise, fusion rules are what they claim, and an
enrolled model flags a local anomaly that its enrollment footage never showed, at its own threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from stream_monitor.errors import InputError
from stream_monitor.site.calibration import evidence_fired, evidence_score, fuse, p_values
from stream_monitor.site.site_model import SiteModel, SiteOptions, enroll_site


def test_p_values_count_calibration_scores_at_least_as_high():
    cal = np.array([1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(p_values(cal, np.array([0.5, 2.0, 2.5, 9.0])), [5 / 5, 4 / 5, 2 / 5, 1 / 5])
    assert np.isnan(p_values(cal, np.array([np.nan]))[0])
    with pytest.raises(InputError):
        p_values(np.array([]), np.array([1.0]))


def test_conformal_p_values_flag_at_most_alpha_of_exchangeable_normal_scores():
    rng = np.random.default_rng(0)
    flagged = [np.mean(p_values(rng.normal(size=99), rng.normal(size=200)) < 0.05) for _ in range(200)]
    assert np.mean(flagged) <= 0.05 and np.mean(flagged) > 0.03


def test_fusion_rules():
    site, nero = np.array([0.01, 0.5, np.nan]), np.array([0.5, 0.02, 0.04])
    np.testing.assert_allclose(fuse(site, nero, "site")[:2], site[:2])
    np.testing.assert_allclose(fuse(site, nero, "min"), [0.02, 0.04, 0.04])
    fisher = fuse(site, nero, "fisher")
    np.testing.assert_allclose(fisher[:2], chi2.sf(-2 * (np.log(site[:2]) + np.log(nero[:2])), 4), rtol=1e-12)
    assert fisher[2] == 0.04, "no valid region: NERO's evidence alone"
    assert evidence_fired(site, nero, "min", 0.05) == [("site",), ("nero",), ()]
    assert evidence_fired(site, nero, "site", 0.05) == [("site",), (), ()]


def test_evidence_score_crosses_one_exactly_at_alpha():
    p = np.array([0.049, 0.05, 0.051, np.nan])
    assert (evidence_score(p, 0.05) > 1).tolist() == [True, False, False, False]


def _toy_frames(rng, n, anomaly=False):
    maps = rng.normal(size=(n, 8, 6, 6)).astype(np.float32)
    if anomaly:
        maps[:, :, 2:4, 2:4] += 6.0  # a local "polyp": 4 of 36 patches far from anything normal
    valid = np.ones((n, 6, 6), bool)
    valid[:, 0, 0] = False
    return maps, valid


def test_enrolled_model_flags_local_anomalies_and_few_normal_frames():
    rng = np.random.default_rng(1)
    groups = [_toy_frames(rng, 30) for _ in range(4)]
    model = enroll_site([g[0] for g in groups], [g[1] for g in groups], None,
                        SiteOptions(coreset_fraction=0.2, top_k=2, alpha=0.1))
    normal = model.score(*_toy_frames(rng, 200))
    anomalous = model.score(*_toy_frames(rng, 50, anomaly=True))
    assert normal.flagged.mean() <= 0.15
    assert anomalous.flagged.mean() >= 0.95
    assert all(e == ("site",) for e, f in zip(anomalous.evidence, anomalous.flagged) if f)
    above = normal.site > model.site_threshold
    assert (above == normal.flagged).all(), "site_threshold is where p_site drops below alpha"


def test_round_trip_through_arrays_and_json_metadata():
    rng = np.random.default_rng(2)
    groups = [_toy_frames(rng, 12) for _ in range(3)]
    nero = [rng.normal(size=12) for _ in range(3)]
    model = enroll_site([g[0] for g in groups], [g[1] for g in groups], nero, SiteOptions(fusion="min", alpha=0.2))
    arrays, meta = model.to_arrays()
    again = SiteModel.from_arrays(arrays, meta)
    frames = _toy_frames(rng, 5, anomaly=True)
    nero_scores = rng.normal(size=5)
    a, b = model.score(*frames, nero_scores), again.score(*frames, nero_scores)
    np.testing.assert_array_equal(a.p_fused, b.p_fused)
    assert again.options == model.options


def test_enrollment_refuses_one_group_or_too_few_frames():
    rng = np.random.default_rng(3)
    maps, valid = _toy_frames(rng, 30)
    with pytest.raises(InputError):
        enroll_site([maps], [valid], None)
    with pytest.raises(InputError, match="at least 20"):
        enroll_site([maps[:5], maps[5:10]], [valid[:5], valid[5:10]], None)


def test_an_artifact_enrolled_before_specular_cover_loads_with_highlights_kept():
    rng = np.random.default_rng(4)
    groups = [_toy_frames(rng, 12) for _ in range(3)]
    arrays, meta = enroll_site([g[0] for g in groups], [g[1] for g in groups], None,
                               SiteOptions(specular_cover=0.1)).to_arrays()
    assert meta["options"]["specular_cover"] == 0.1
    del meta["options"]["specular_cover"]  # what an older enrollment wrote
    assert SiteModel.from_arrays(arrays, meta).options.specular_cover is None
    with pytest.raises(InputError):
        SiteOptions(specular_cover=1.5)
