"""The drift signal on real streams with the bundled model and detector: quiet on HyperKvasir ID test
images, raised within seconds on normal colon from PolypGen's other centres, cleared when ID returns."""

from __future__ import annotations

import pytest

from stream_monitor import bundled
from stream_monitor.data.features import extract
from stream_monitor.data.images import list_images, read_image
from stream_monitor.data.split import load_split
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT, SHARED_DATA
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.site.drift import DriftMonitor, design

POLYPGEN = SHARED_DATA / "sequences" / "polypgen-negative"


@pytest.fixture(scope="module")
def over_threshold():
    if not POLYPGEN.is_dir():
        pytest.fail(f"development data not found at {POLYPGEN}: the test runs on it")
    model, _ = load_classifier(bundled.MODEL)
    det = NeroDetector.load(bundled.DETECTOR)
    split = load_split(DEFAULT_SPLIT)
    id_paths = split.paths("test")[::3]  # 56 images of all three ID classes, in split order
    site_paths = list_images(POLYPGEN / "seq01_neg") + list_images(POLYPGEN / "seq09_neg")

    def over(paths):
        feats = extract(model, ((str(p), read_image(p)) for p in paths), progress=False).features
        return det.score(feats) > det.threshold

    p0 = 1 - det.calibration.achieved_tpr
    return over(id_paths), over(site_paths), design(round(p0, 4), 0.25, 28_800.0)


def test_id_stream_stays_validated(over_threshold):
    id_over, _, d = over_threshold
    monitor = DriftMonitor(d)
    assert [monitor.decide(bool(b)) for b in id_over].count("raise") == 0


def test_other_centres_footage_raises_within_seconds_and_clears_when_id_returns(over_threshold):
    id_over, site_over, d = over_threshold
    monitor = DriftMonitor(d)
    events = [monitor.decide(bool(b)) for b in site_over]
    assert "raise" in events[:15], f"share over threshold {site_over.mean():.2f}"
    events = [monitor.decide(bool(b)) for b in id_over]
    assert "clear" in events and not monitor.raised
