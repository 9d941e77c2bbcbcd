"""Without enrollment nothing changes: the bundled artifact holds no site model, and the live loader then
builds the plain engine scorer with the shipped detector's own threshold (what the dev benchmark measures):
the served alert detector's when the artifact carries one (stream-monitor fit --alert-detector), else NERO's."""

from __future__ import annotations

from stream_monitor import bundled
from stream_monitor.baselines.serving import load_alert_detector
from stream_monitor.config import ModelConfig
from stream_monitor.nero import NeroDetector
from stream_monitor.pipeline.inference import load_scorer
from stream_monitor.site.artifact import load_site_model
from stream_monitor.site.scorer import SiteScorer


def test_bundled_detector_loads_the_plain_scorer_with_its_own_threshold():
    assert load_site_model(bundled.DETECTOR) is None
    scorer, info = load_scorer(ModelConfig(backend="torch-cpu", threads=1))
    assert not isinstance(scorer, SiteScorer)
    served = load_alert_detector(bundled.DETECTOR)
    expected = served.threshold if served is not None else NeroDetector.load(bundled.DETECTOR).threshold
    assert info["threshold"] == scorer.threshold == expected
    assert info["alert_detector"] == (served.name if served is not None else "nero")
