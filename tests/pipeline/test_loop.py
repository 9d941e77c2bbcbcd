"""The inference loop in-process: real ring, real XPUB/SUB sockets, a real registry and audit log, and
a scorer stub whose scores are written into the frames — so every number below is known in advance."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import zmq
from prometheus_client import CollectorRegistry

from stream_monitor.capture.ring import FrameRing, RingState
from stream_monitor.config_yaml import load_config, parse_config
from stream_monitor.errors import InputError
from stream_monitor.observability import Metrics
from stream_monitor.pipeline.audit import AuditLog, read_audit_log
from stream_monitor.pipeline.batcher import Batcher
from stream_monitor.pipeline.loop import InferenceLoop
from stream_monitor.pipeline.reload import ConfigWatcher
from stream_monitor.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_uint8
from stream_monitor.transport.schema import decode
from stream_monitor.transport.sockets import Publisher, drain, make_subscriber

CONFIG = """\
version: 1
streams:
  - name: endo
    source: {{kind: file, path: x.mp4}}
alerts: {{threshold: {threshold}, enter_n: 2, enter_m: 3, clear_after_s: 0.0}}
"""


# Red values that make the stub behave like a broken model: what the fused engine returns for a frame
# whose features (NaN, inf) or logits (NaN) are not finite, and a frame the reference scorer refuses.
NAN_FEATURES, INF_FEATURES, NAN_LOGITS, REFUSED = 255, 254, 253, 252


class StubScorer:
    """score = the red channel's pixel value / 10 (read back from the normalised image); the red values
    above make non-finite outputs, as the engines produce them."""

    def score_batch(self, images: np.ndarray) -> SimpleNamespace:
        red = np.rint((images[:, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255)
        if (red == REFUSED).any():  # the reference Scorer: InputError for the whole batch
            raise InputError("features contain NaN or inf in 1 row(s)")
        score = red / 10.0
        n = len(score)
        probs = np.tile(np.array([0.7, 0.2, 0.1], np.float32), (n, 1))
        score[red == NAN_FEATURES], score[red == INF_FEATURES] = np.nan, np.inf
        probs[red == NAN_LOGITS] = np.nan
        return SimpleNamespace(
            probs=probs, score=score, distance=score.copy(),
            bias_term=np.zeros(n), rho=np.ones(n), top_neurons=np.tile(np.arange(3), (n, 1)),
            deviations=np.tile(np.array([0.3, -0.2, 0.1], np.float32), (n, 1)),
            heatmaps=np.full((n, 2, 2), 0.5, np.float32))


@pytest.fixture
def rig(tmp_path):
    ring = FrameRing.create(f"sm-test-{uuid.uuid4().hex[:8]}", 64, (16, 16), 4)
    ring.state = RingState.RUNNING
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(CONFIG.format(threshold=1.0))
    config = load_config(config_path)
    context = zmq.Context()
    publisher = Publisher(context, f"ipc://{tmp_path}/results.sock", hwm=1000)
    subscriber = make_subscriber(context, publisher.endpoint, [b"result/", b"alert/"], hwm=1000)
    assert publisher.wait_for_subscribers(b"result/", 1, timeout=10)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    audit = AuditLog(tmp_path / "alerts.jsonl", "test")
    batcher = Batcher({"endo": ring}, None, max_batch=8, max_wait_s=0.0, on_drop=metrics.dropped)
    loop = InferenceLoop(config, StubScorer(), ["a", "b", "c"], 99.0, {"endo": ring}, batcher, publisher, metrics, audit)
    yield SimpleNamespace(ring=ring, loop=loop, sub=subscriber, registry=registry, audit=audit, tmp=tmp_path,
                          config_path=config_path, config=config)
    audit.close()
    subscriber.close()
    publisher.close()
    context.term()
    ring.close()
    ring.unlink()


def _frame(ring: FrameRing, score: float, red: int | None = None) -> None:
    red = int(score * 10) if red is None else red
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = red
    ring.write(np.zeros((16, 16, 3), np.uint8), rgb, time.time(), time.monotonic(), (0, 16, 0, 16))


def _messages(sub) -> list[dict]:
    time.sleep(0.05)
    return [decode(parts[-1].buffer) for parts in drain(sub)]


def test_results_alerts_audit_and_metrics_for_known_scores(rig):
    for score in (0.5, 2.0, 2.0, 0.0, 0.0):
        _frame(rig.ring, score)
        assert rig.loop.step(1.0) == 1
    rig.ring.state = RingState.ENDED
    rig.loop.housekeeping()
    messages = _messages(rig.sub)
    results = [m for m in messages if m["type"] == "result"]
    alerts = [m for m in messages if m["type"] == "alert"]
    assert [r["score"] for r in results] == [0.5, 2.0, 2.0, 0.0, 0.0]
    assert [r["alert"]["active"] for r in results] == [False, False, True, False, False]
    assert [(a["event"], a["seq"]) for a in alerts] == [("start", 3), ("end", 4)]
    first = results[0]
    assert first["class_name"] == "a" and first["probability"] == pytest.approx(0.7) and first["threshold"] == 1.0
    assert first["heatmap"]["h"] == 2 and first["top_neurons"]["ids"] == [0, 1, 2] and first["prev_seq"] == 0
    assert [r["prev_seq"] for r in results[1:]] == [1, 2, 3, 4]
    assert [r["event"] for r in read_audit_log(rig.tmp / "alerts.jsonl")] == ["alert_start", "alert_end"]
    value = rig.registry.get_sample_value
    assert value("stream_monitor_frames_processed_total", {"stream": "endo"}) == 5
    assert value("stream_monitor_frames_captured_total", {"stream": "endo"}) == 5
    assert value("stream_monitor_alerts_total", {"stream": "endo"}) == 1
    assert value("stream_monitor_capture_to_result_latency_seconds_count", {"stream": "endo"}) == 5
    assert value("stream_monitor_ood_score_ratio_bucket", {"stream": "endo", "le": "1.0"}) == 3
    assert value("stream_monitor_messages_published_total", {"topic": "alert"}) == 2
    assert value("stream_monitor_capture_state", {"stream": "endo", "stream_monitor_capture_state": "ended"}) == 1


def test_an_alert_open_at_shutdown_is_closed_and_audited(rig):
    for score in (2.0, 2.0):
        _frame(rig.ring, score)
        rig.loop.step(1.0)
    rig.loop.finish("shutdown")
    records = read_audit_log(rig.tmp / "alerts.jsonl")
    assert [(r["event"], r.get("reason")) for r in records] == [("alert_start", None), ("alert_end", "shutdown")]


def test_a_threshold_edited_in_the_file_applies_without_restart(rig):
    watcher = ConfigWatcher(rig.config_path, rig.config, interval_s=0.0)
    rig.config_path.write_text(CONFIG.format(threshold=5.0) + "logging: {level: WARNING}\n")
    new, outcome = watcher.poll()
    assert outcome == "applied"
    rig.loop.apply_config(new)
    _frame(rig.ring, 2.0)
    rig.loop.step(1.0)
    assert _messages(rig.sub)[-1]["threshold"] == 5.0
    assert rig.registry.get_sample_value("stream_monitor_alert_threshold", {"stream": "endo"}) == 5.0
    rig.config_path.write_text("version: 1\nstreams: []\n")  # invalid: the running settings stay
    watcher.force = True
    assert watcher.poll() == (None, "rejected")
    rig.config_path.write_text(CONFIG.format(threshold=5.0).replace("x.mp4", "y.mp4")  # needs a restart
                               + "logging: {level: WARNING}\n")
    watcher.force = True
    assert watcher.poll() == (None, None)


def test_null_threshold_means_the_detectors_calibrated_one(rig):
    config = parse_config(CONFIG.format(threshold="null"))
    rig.loop.apply_config(config)
    assert rig.loop.trackers["endo"].threshold == 99.0


def test_non_finite_frames_are_flagged_counted_and_kept_out_of_the_alert(rig):
    """Regression story: a NaN score is never over the threshold, so frames whose features or logits
    overflowed counted as in-distribution — they could end an open alert — and the reference scorer's
    InputError for such a batch killed the inference loop. Now: an alert is open; NaN features, inf
    features and NaN logits are published with their reason in `flags`, counted, and leave the alert
    open (they are not measurements); a frame the scorer refuses even alone is dropped with its reason;
    the frames around it are scored as usual, and the loop goes on."""
    for score in (2.0, 2.0):
        _frame(rig.ring, score)
        rig.loop.step(1.0)
    for red in (NAN_FEATURES, INF_FEATURES, NAN_LOGITS):
        _frame(rig.ring, 0.0, red=red)
        rig.loop.step(1.0)
    _frame(rig.ring, 2.0)
    _frame(rig.ring, 0.0, red=REFUSED)
    _frame(rig.ring, 0.5)
    rig.loop.batcher.frames_per_stream = 3  # these three in one batch: the refused frame must not cost the others
    rig.loop.step(1.0)
    results = [m for m in _messages(rig.sub) if m["type"] == "result"]
    assert [r["seq"] for r in results] == [1, 2, 3, 4, 5, 6, 8]
    assert [r.get("flags") for r in results] == [None, None, ["non_finite_score"], ["non_finite_score"],
                                                 ["non_finite_logits"], None, None]
    assert all(r["alert"]["active"] for r in results[1:6])  # the flagged frames did not end the alert
    assert np.isnan(results[2]["score"]) and results[3]["score"] == np.inf and not results[2]["over_threshold"]
    value = rig.registry.get_sample_value
    assert value("stream_monitor_frames_flagged_total", {"stream": "endo", "reason": "non_finite_score"}) == 2
    assert value("stream_monitor_frames_flagged_total", {"stream": "endo", "reason": "non_finite_logits"}) == 1
    assert value("stream_monitor_frames_dropped_total", {"stream": "endo", "stage": "inference",
                                                         "reason": "scoring_error"}) == 1
    assert value("stream_monitor_frames_processed_total", {"stream": "endo"}) == 7
    assert value("stream_monitor_ood_score_ratio_count", {"stream": "endo"}) == 4  # flagged frames stay out
    rig.loop.finish("shutdown")  # the audit log takes the alert's end: no NaN reached its JSON
    assert [r["event"] for r in read_audit_log(rig.tmp / "alerts.jsonl")] == ["alert_start", "alert_end"]


def test_a_stream_whose_capture_failed_and_was_restarted_still_has_its_alert_closed_at_shutdown(rig):
    """Regression story: a capture process that failed marked its stream closed for good, so after the
    supervisor restarted it, an alert opened later was never ended at shutdown — an alert_start without
    an alert_end in the audit log."""
    rig.ring.state = RingState.RUNNING
    rig.loop.housekeeping()
    rig.ring.state = RingState.FAILED
    rig.loop.housekeeping()
    rig.ring.state = RingState.RUNNING  # the supervisor restarted it
    for score in (2.0, 2.0):
        _frame(rig.ring, score)
        rig.loop.step(1.0)
    rig.loop.housekeeping()
    rig.loop.finish("shutdown")
    records = read_audit_log(rig.tmp / "alerts.jsonl")
    assert [(r["event"], r.get("reason")) for r in records] == [("alert_start", None), ("alert_end", "shutdown")]


class Uint8StubScorer(StubScorer):
    """An engine that normalises itself (EngineScorer.score_uint8): it is handed the ring's RGB bytes."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def score_batch(self, images: np.ndarray) -> SimpleNamespace:
        raise AssertionError("the loop normalised on the host although the engine takes uint8 frames")

    def score_uint8(self, rgb: np.ndarray) -> SimpleNamespace:
        self.seen.append(rgb)
        return StubScorer.score_batch(self, normalize_uint8(rgb))


def test_an_engine_that_takes_uint8_frames_gets_them_unnormalised(rig):
    """Normalising (B, 224, 224, 3) on the host cost the inference process a pass per frame; an engine
    with `score_uint8` gets the ring's model-sized RGB bytes and the results are the same."""
    rig.loop.scorer = scorer = Uint8StubScorer()
    for score in (0.5, 2.0, 2.0):
        _frame(rig.ring, score)
        assert rig.loop.step(1.0) == 1
    results = [m for m in _messages(rig.sub) if m["type"] == "result"]
    assert [r["score"] for r in results] == [0.5, 2.0, 2.0]
    assert [r["alert"]["active"] for r in results] == [False, False, True]
    assert all(seen.dtype == np.uint8 and seen.shape == (1, 4, 4, 3) for seen in scorer.seen)
    assert [int(seen[0, 0, 0, 0]) for seen in scorer.seen] == [5, 20, 20]


def test_alert_start_audit_record_keeps_the_map_peak_and_top_neurons(rig):
    """An alert must be reviewable afterwards: its alert_start record says where the explanation map
    peaked (fractions of the model's view) and which neurons the score rested on, with their values."""
    for score in (2.0, 2.0):
        _frame(rig.ring, score)
        rig.loop.step(1.0)
    start = [r for r in read_audit_log(rig.tmp / "alerts.jsonl") if r["event"] == "alert_start"][0]
    assert start["map_peak"] == {"y": 0.25, "x": 0.25, "value": 0.5}  # the stub's flat 2×2 map: first cell
    assert start["top_neurons"] == {"ids": [0, 1, 2], "values": pytest.approx([0.3, -0.2, 0.1])}


DRAWN_MAP = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)  # a scene map drawn on the frame: peak top-left
OWN_MAP = np.array([[0.0, 0.0], [0.0, 0.8]], np.float32)  # the frame's own deviation heatmap: bottom-right


class PacedStub(StubScorer):
    """As StubScorer, with a scene map on the frames whose green value is 1 (the map budget drew it there)
    and the deviation heatmap elsewhere, the other alerting frames skipped, as a scorer with a map budget
    returns them; a green value of 2 marks a frame that shows another map (an enrolled site's)."""

    def score_uint8(self, rgb: np.ndarray) -> SimpleNamespace:
        scored = self.score_batch(normalize_uint8(rgb))
        drawn, other = rgb[:, 0, 0, 1] == 1, rgb[:, 0, 0, 1] == 2
        scored.over_threshold = scored.score > 1.0
        scored.map_drawn, scored.map_skipped = drawn, scored.over_threshold & ~drawn & ~other
        scored.heatmaps = np.stack([DRAWN_MAP if d else OWN_MAP for d in drawn])
        return scored


def _paced_frame(ring: FrameRing, score: float, drawn: int, t_capture: float) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = int(score * 10), drawn
    ring.write(np.zeros((16, 16, 3), np.uint8), rgb, t_capture, time.monotonic(), (0, 16, 0, 16))


def test_alerting_frames_the_map_budget_skipped_show_the_streams_latest_map(rig):
    """Map on the first alerting frame only: the next skipped alerting frames show it (the alert_start record
    too), a frame below the threshold its own map, an alerting frame that shows another map keeps it, and a
    skipped alerting frame more than map_hold_s (1 s) after the drawn one its own map again."""
    rig.loop.scorer = PacedStub()
    t0 = time.time()
    for score, drawn, t in ((2.0, 1, t0), (2.0, 0, t0 + 0.1), (2.0, 0, t0 + 0.2), (0.5, 0, t0 + 0.3),
                            (2.0, 2, t0 + 0.4), (2.0, 0, t0 + 1.5)):
        _paced_frame(rig.ring, score, drawn, t)
        assert rig.loop.step(1.0) == 1
    results = [m for m in _messages(rig.sub) if m["type"] == "result"]
    shown = [np.frombuffer(r["heatmap"]["data"], np.uint8).reshape(2, 2) for r in results]
    drawn_u8, own_u8 = np.rint(DRAWN_MAP * 255).astype(np.uint8), np.rint(OWN_MAP * 255).astype(np.uint8)
    assert len(shown) == 6
    for got, want in zip(shown, (drawn_u8, drawn_u8, drawn_u8, own_u8, own_u8, own_u8)):
        np.testing.assert_array_equal(got, want)
    start = [r for r in read_audit_log(rig.tmp / "alerts.jsonl") if r["event"] == "alert_start"][0]
    assert start["seq"] == 2 and start["map_peak"] == {"y": 0.25, "x": 0.25, "value": 1.0}
    shown = {kind: rig.registry.get_sample_value("stream_monitor_explanation_maps_total", {"stream": "endo", "map": kind})
             for kind in ("drawn", "carried", "expired")}
    assert shown == {"drawn": 1, "carried": 2, "expired": 1}  # the below-threshold and the site-map frames: none
