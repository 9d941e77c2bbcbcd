"""The bundled classifier and detector belong together and work on real images."""

import numpy as np

from stream_monitor import bundled
from stream_monitor.data.features import extract_paths
from stream_monitor.data.split import load_split
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
from stream_monitor.evaluation.ood_metrics import auroc
from stream_monitor.models.registry import load_classifier, sha256_file
from stream_monitor.nero import NeroDetector


def test_bundled_detector_is_bound_to_the_bundled_model():
    model, sidecar = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias, model_sha256=sha256_file(bundled.MODEL))
    assert det.class_names == sidecar["class_names"] == ["normal-cecum", "bbps-2-3", "bbps-0-1"]
    assert det.calibration is not None and det.calibration.target_tpr == 0.95
    assert bundled.MODEL_CARD.is_file()


def test_bundled_detector_separates_real_polyps_from_real_normal_views():
    """20 ID test images vs 20 polyp images the detector never saw: a loose floor, far below the
    benchmark's 93% (docs/results/dev-benchmark), that still fails if model and detector drift apart."""
    split = load_split(DEFAULT_SPLIT)
    model, _ = load_classifier(bundled.MODEL)
    det = NeroDetector.load(bundled.DETECTOR)
    id_paths = split.paths("test")[::8][:20]
    polyps = [p for p in split.paths("ood") if p.parent.name == "polyp"][::10][:20]
    id_scores = det.score(extract_paths(model, id_paths, "id", progress=False).features)
    ood_scores = det.score(extract_paths(model, polyps, "ood", progress=False).features)
    assert auroc(id_scores, ood_scores) >= 0.8
    assert np.mean(id_scores > det.threshold) <= 0.25


def test_bundled_alert_is_fitted_and_calibrated_over_the_capture_chain():
    """What the model card says ships: the five-seed rules chose the capture-chain fit set
    (docs/results/fit-set-sweep), the block statistics' shrinkage 0.3 for it (docs/results/shrinkage-sweep)
    and the capture-chain calibration (docs/results/detection-quality.md)."""
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.evaluation.benign_changes import CHANGES

    alert = load_alert_detector(bundled.DETECTOR)
    assert alert is not None and alert.name == "fusion z(neco)+z(bstats)"
    every_change = [c for c in CHANGES if c != "none"]
    assert alert.fit_changes == every_change
    assert alert.calibration.changes == every_change
    assert alert.options == {"bstats": {"shrinkage": 0.3}}
    assert alert.detector.detectors_[alert.detector.names.index("bstats")].shrinkage == 0.3
