"""Any registered detector is servable (baselines/serving.py): stored in the NERO artifact without pickle,
read back to the same scores, refused clearly when the file is damaged or names an unknown detector.
Real penultimate features of the bundled model (tests/baselines/conftest.py `real`)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from stream_monitor import artifact
from stream_monitor.baselines.fusion import needs_block_stats
from stream_monitor.baselines.serving import (
    fit_alert_detector,
    load_alert_detector,
    save_with_alert_detector,
    servable_detectors,
)
from stream_monitor.errors import ArtifactError, InputError
from stream_monitor.evaluation.methods import headline_methods
from stream_monitor.nero import NeroDetector


@pytest.fixture(scope="module")
def nero(real) -> NeroDetector:
    det = NeroDetector(mode="robust", pca_components=10).fit(real["train"], real["labels"], real["weight"],
                                                             real["bias"])
    det.calibrate(real["test"][:8])
    return det


def test_every_method_of_the_evaluation_table_is_servable() -> None:
    """The selection rule chooses among the main table's methods; each one it can choose must be servable
    (NERO's own configurations are served as the NERO artifact itself)."""
    table = {m.name for m in headline_methods() if m.family != "nero"}
    assert table <= set(servable_detectors()), table - set(servable_detectors())


@pytest.mark.parametrize("name", servable_detectors())
def test_a_stored_detector_scores_exactly_as_the_fitted_one(name, real, nero, tmp_path) -> None:
    ext = "_ext" if needs_block_stats(name) else ""  # block-statistics detectors read [feature | statistics]
    train, test = real["train" + ext], real["test" + ext]
    fitted = fit_alert_detector(name, train, real["labels"], real["weight"], real["bias"], test[:8])
    assert fitted.needs_block_stats == bool(ext)
    path = save_with_alert_detector(tmp_path / "served.npz", nero, fitted)
    loaded = load_alert_detector(path)
    assert loaded is not None and loaded.name == name
    np.testing.assert_array_equal(loaded.score(test), fitted.score(test))
    assert loaded.threshold == fitted.threshold == fitted.calibration.threshold
    # the file is still a NERO artifact for every other tool, with NERO's own threshold
    again = NeroDetector.load(path, real["weight"], real["bias"])
    np.testing.assert_array_equal(again.score(real["test"]), nero.score(real["test"]))
    with zipfile.ZipFile(path) as zf:  # no pickle anywhere: every member is a plain .npy
        assert all(n.endswith(".npy") for n in zf.namelist())


def test_the_threshold_follows_the_calibration_rule(real) -> None:
    """NERO's rule (calibration.py): τ = sorted(validation scores)[floor(0.95 · n)]."""
    validation = np.vstack([real["train"], real["test"]])  # 46 rows: enough to sit below the maximum
    fitted = fit_alert_detector("neco", real["train"], real["labels"], real["weight"], real["bias"], validation)
    scores = np.sort(fitted.score(validation))
    assert fitted.threshold == scores[int(0.95 * len(scores))] < scores[-1]


def test_a_plain_nero_artifact_has_no_alert_detector(nero, tmp_path) -> None:
    nero.save(tmp_path / "nero.npz")
    assert load_alert_detector(tmp_path / "nero.npz") is None


def test_a_flipped_bit_in_the_alert_detector_is_refused(real, nero, tmp_path) -> None:
    fitted = fit_alert_detector("knn", real["train"], real["labels"], real["weight"], real["bias"], real["test"][:8])
    path = save_with_alert_detector(tmp_path / "served.npz", nero, fitted)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    damaged = bytearray(members["alert__train_.npy"])
    damaged[-3] ^= 0x01  # one bit of the stored KNN memory, metadata (and its checksum) untouched
    members["alert__train_.npy"] = bytes(damaged)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ArtifactError, match="alert__train_"):
        load_alert_detector(path)


def test_an_unknown_detector_name_is_refused_when_loading(real, nero, tmp_path) -> None:
    fitted = fit_alert_detector("energy", real["train"], real["labels"], real["weight"], real["bias"], real["test"][:8])
    path = save_with_alert_detector(tmp_path / "served.npz", nero, fitted)
    arrays, meta = artifact.read_artifact(path)
    meta["alert_detector"]["name"] = "made-up"
    meta.pop("array_sha256")
    artifact.write_artifact(path, arrays, meta)
    with pytest.raises(ArtifactError, match="made-up.*re-fit"):
        load_alert_detector(path)


def test_fitting_an_unknown_detector_lists_the_servable_ones(real) -> None:
    with pytest.raises(InputError, match="servable: .*neco"):
        fit_alert_detector("nope", real["train"], real["labels"], real["weight"], real["bias"], real["test"])


def test_a_block_statistics_detector_fitted_on_another_block_is_refused(real, nero, tmp_path) -> None:
    """The artifact records which block's statistics the detector learnt; another block would score garbage."""
    name = "fusion z(neco)+z(bstats)"
    fitted = fit_alert_detector(name, real["train_ext"], real["labels"], real["weight"], real["bias"], real["test_ext"][:8])
    path = save_with_alert_detector(tmp_path / "served.npz", nero, fitted)
    arrays, meta = artifact.read_artifact(path)
    meta["alert_detector"]["stats_block"] = 3
    artifact.write_artifact(path, arrays, meta)
    with pytest.raises(ArtifactError, match="statistics of block 3"):
        load_alert_detector(path)


def test_a_block_statistics_detector_refuses_plain_features(real) -> None:
    fitted = fit_alert_detector("fusion z(neco)+z(bstats)", real["train_ext"], real["labels"], real["weight"],
                                real["bias"], real["test_ext"][:8])
    with pytest.raises(InputError, match="block statistics"):
        fitted.score(real["test"])


def test_a_fusion_component_option_is_used_stored_and_restored(real, nero, tmp_path) -> None:
    """`{"bstats": {"shrinkage": 0.3}}` reaches the fusion's block statistics (their covariance is shrunk by
    0.3, not the default 0.1), is written to the artifact and rebuilds the same detector when loading."""
    from stream_monitor.baselines.block_stats import BlockStatsMahalanobis

    name, options = "fusion z(neco)+z(bstats)", {"bstats": {"shrinkage": 0.3}}
    train, test = real["train_ext"], real["test_ext"]
    fitted = fit_alert_detector(name, train, real["labels"], real["weight"], real["bias"], test[:8], **options)
    stats = fitted.detector.detectors_[1]
    expected = BlockStatsMahalanobis(0.3).fit(train, real["labels"], real["weight"], real["bias"])
    np.testing.assert_array_equal(stats.score(test), expected.score(test))
    default = fit_alert_detector(name, train, real["labels"], real["weight"], real["bias"], test[:8])
    assert not np.allclose(default.detector.detectors_[1].score(test), stats.score(test))
    loaded = load_alert_detector(save_with_alert_detector(tmp_path / "served.npz", nero, fitted))
    assert loaded.options == options and loaded.detector.detectors_[1].shrinkage == 0.3
    np.testing.assert_array_equal(loaded.score(test), fitted.score(test))
    # reports name it as `fit --alert-option` spells it, so two artifacts with other options differ by name
    assert loaded.label == "fusion z(neco)+z(bstats) bstats.shrinkage=0.3"
    assert default.label == "fusion z(neco)+z(bstats)"


@pytest.mark.parametrize("options, message", [
    ({"knn": {"k": 5}}, "no component 'knn'"),
    ({"bstats": {"lambda": 0.3}}, "bad options for 'bstats'"),
    ({"bstats": 0.3}, "must be a mapping"),
    ({"bstats": {"shrinkage": 2.0}}, "shrinkage must be in"),
])
def test_bad_fusion_options_are_refused_before_fitting(options, message, real) -> None:
    with pytest.raises(InputError, match=message):
        fit_alert_detector("fusion z(neco)+z(bstats)", real["train_ext"][:0], real["labels"][:0], real["weight"],
                           real["bias"], real["test_ext"][:0], **options)
