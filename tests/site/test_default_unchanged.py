"""Without enrollment nothing changes: the bundled artifact holds no site model, and the live loader then
builds the plain engine scorer with NERO's own threshold (what the dev benchmark measures)."""

from __future__ import annotations

from stream_monitor import bundled
from stream_monitor.config import ModelConfig
from stream_monitor.nero import NeroDetector
from stream_monitor.pipeline.inference import load_scorer
from stream_monitor.site.artifact import load_site_model
from stream_monitor.site.scorer import SiteScorer


def test_bundled_detector_loads_the_plain_scorer_with_nero_threshold():
    assert load_site_model(bundled.DETECTOR) is None
    scorer, info = load_scorer(ModelConfig(backend="torch-cpu", threads=1))
    assert not isinstance(scorer, SiteScorer)
    assert info["threshold"] == NeroDetector.load(bundled.DETECTOR).threshold
