"""The drift signal's live pieces: per-stream tracker with metrics and audit, the optional v1 `drift`
result field, the overlay badge, the config section and the Prometheus rule."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_monitor.config import DriftConfig
from stream_monitor.overlay.drift_badge import BADGE_COLOUR, draw_drift_badge
from stream_monitor.pipeline.audit import AuditLog, read_audit_log
from stream_monitor.pipeline.drift_hook import StreamDrift
from stream_monitor.transport.schema import SchemaError, decode, encode

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _sample(registry, name, stream):
    return registry.get_sample_value(name, {"stream": stream})


def test_stream_drift_raises_exports_and_audits_only_the_shifted_stream(tmp_path):
    registry, audit = CollectorRegistry(), AuditLog(tmp_path / "audit.jsonl", "t")
    drift = StreamDrift(DriftConfig(), ["home", "site"], registry, audit)
    rng = np.random.default_rng(0)
    for i in range(300):  # 30 s at 10 fps: one decision a second
        t = 1000.0 + i / 10
        home = drift.update("home", i + 1, float(rng.random() < 0.05) * 2.0, 1.0, t)
        site = drift.update("site", i + 1, float(rng.random() < 0.7) * 2.0, 1.0, t)
    audit.close()
    assert site["raised"] and not home["raised"]
    assert _sample(registry, "stream_monitor_input_not_validated", "site") == 1.0
    assert _sample(registry, "stream_monitor_input_not_validated", "home") == 0.0
    assert _sample(registry, "stream_monitor_drift_raises_total", "site") == 1.0
    assert 0.4 < _sample(registry, "stream_monitor_drift_over_threshold_ratio", "site") <= 1.0
    events = [r for r in read_audit_log(tmp_path / "audit.jsonl") if r["event"].startswith("drift_")]
    assert [(r["event"], r["stream"]) for r in events] == [("drift_raise", "site")]
    assert b"stream_monitor_drift_cusum_threshold" in generate_latest(registry)


def test_drift_field_is_optional_in_v1_and_validated_when_present():
    from stream_monitor.transport.messages import result_message

    message = result_message(stream="s", seq=1, prev_seq=0, t_capture=1.0, t_result=1.1, latency_s=0.1,
                             batch_size=1, probs=np.array([0.5, 0.5]), class_names=["a", "b"], score=1.0,
                             smoothed_score=1.0, threshold=2.0, distance=1.0, bias_term=0.0, rho=1.0,
                             alert={"active": False, "id": None, "since": None, "over": 0, "window": 3},
                             top_neurons=np.arange(2), deviations=np.zeros(2), heatmap=None, frame_size=(4, 4),
                             box=[0, 4, 0, 4])
    assert "drift" not in decode(encode(message))  # old senders stay valid
    message["drift"] = {"raised": True, "cusum": 8.0, "threshold": 7.4, "share": 0.6, "expected": 0.05, "since": 1.0}
    assert decode(encode(message))["drift"]["raised"] is True
    message["drift"]["raised"] = 1
    with pytest.raises(SchemaError, match="drift"):
        encode(message)


def test_badge_is_drawn_only_when_raised_and_away_from_the_alert_banner():
    image = np.zeros((300, 400, 3), np.uint8)
    assert not draw_drift_badge(image, {"drift": {"raised": False}})
    assert not draw_drift_badge(image, {})
    assert image.max() == 0
    drift = {"raised": True, "share": 0.6, "expected": 0.05}
    assert draw_drift_badge(image, {"drift": drift})
    assert tuple(image[-2, 2]) == BADGE_COLOUR and image[:200].max() == 0  # bottom band, top untouched


def test_drift_config_rejects_a_raise_share_below_the_expected_share():
    with pytest.raises(ValueError, match="raise_share"):
        DriftConfig(expected_share=0.3, raise_share=0.2)


def test_prometheus_rule_unit_test_passes():
    if shutil.which("promtool") is None:
        pytest.fail("promtool not installed: Debian package `prometheus` (`scripts/setup.sh --system` installs it)")
    result = subprocess.run(["promtool", "test", "rules", str(PROMETHEUS / "tests" / "input-validation.test.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
