"""`stream-monitor run` with a detector artifact that carries an alert detector (stream-monitor fit
--alert-detector): the live path alerts on that detector's score and threshold, through real processes,
shared memory and ZeroMQ, and every result still carries NERO's explanation and says what raised it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from stream_monitor.baselines.fusion import needs_block_stats
from stream_monitor.baselines.serving import fit_alert_detector, save_with_alert_detector
from stream_monitor.config import MonitorConfig
from stream_monitor.data.images import read_image
from stream_monitor.data.split import load_split
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
from stream_monitor.models.block_stats import forward_with_stats
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.preprocess import preprocess_batch
from tests.pipeline.replay import replay

NAMES = ("fusion z(nero-r)+z(neco)", "fusion z(neco)+z(bstats)")  # on the feature; on [feature | block statistics]


def _served_artifact(live_model, path, name):
    """The live model's NERO detector plus the fusion fitted on the same 30 ID train images and calibrated
    on 40 ID validation images."""
    model, _ = load_classifier(live_model.checkpoint)
    split = load_split(DEFAULT_SPLIT)
    torch.set_num_threads(1)

    def features(paths):
        with torch.inference_mode():
            pooled, _, stats = forward_with_stats(model, torch.from_numpy(preprocess_batch([read_image(p) for p in paths])))
        return (torch.cat([pooled, stats], dim=1) if needs_block_stats(name) else pooled).double().numpy()

    weight, bias = model.head_arrays()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alert = fit_alert_detector(name, features(split.paths("train")[::9][:30]), split.labels("train")[::9][:30],
                                   weight, bias, features(split.paths("val")[::2][:40]))
    save_with_alert_detector(path, NeroDetector.load(live_model.detector), alert)
    return alert


@pytest.mark.parametrize("name", NAMES)
def test_run_alerts_on_the_served_detector_and_nero_still_explains(name, tmp_path, live_model, e2e_clip):
    alert = _served_artifact(live_model, tmp_path / "served.npz", name)
    assert alert.threshold != live_model.threshold
    config = MonitorConfig.model_validate({
        "instance": f"s{tmp_path.name[-12:].replace('_', '')}",
        "streams": [{"name": "endo", "source": {"kind": "file", "path": str(e2e_clip.path), "lossless": True}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(tmp_path / "served.npz"), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540], "ring_slots": 32},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": f"ipc://{tmp_path}/frames.sock"},
        "metrics": {"port": 0},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    })
    messages: list[dict] = []
    codes = replay(config, messages.append, timeout_s=120)
    assert all(code == 0 for code in codes.values()), codes

    results = [m for m in messages if m["type"] == "result"]
    assert len(results) == 48
    for r in results:
        evidence = r["evidence"]
        assert r["threshold"] == alert.threshold  # the served detector's calibrated threshold, not NERO's
        assert evidence["detector"] == name and evidence["detector_score"] == r["score"]
        assert r["over_threshold"] == (r["smoothed_score"] > alert.threshold)
        assert evidence["fired"] == ([name] if r["score"] > alert.threshold else [])
        assert evidence["nero_score"] is not None and evidence["nero_score"] != r["score"]
        assert len(r["top_neurons"]["ids"]) > 0 and r["heatmap"] is not None  # NERO's explanation
    # the fusion separates the clip's picked ID and OOD segments too (NERO picked them)
    ood = [r["score"] for r in results if e2e_clip.label_of(r["seq"] - 1) == "OOD"]
    id_ = [r["score"] for r in results if e2e_clip.label_of(r["seq"] - 1) != "OOD"]
    assert np.median(ood) > alert.threshold > np.median(id_)
