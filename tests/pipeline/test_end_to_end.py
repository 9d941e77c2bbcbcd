"""The live path end to end on a real MP4, through real processes, shared memory, ZeroMQ and HTTP.

No timing assertion here is tight: the machine is shared and has two cores. Bounds are stated with the
reason they hold.
"""

from __future__ import annotations

import urllib.request

import cv2
import numpy as np
import pytest

from stream_monitor.config import MonitorConfig
from stream_monitor.demo.summary import RunRecord, metric, scrape
from stream_monitor.observability.metrics import DROP_REASONS
from stream_monitor.pipeline.audit import read_audit_log
from stream_monitor.pipeline.supervisor import Monitor
from stream_monitor.transport.collector import ResultCollector


def _config(tmp_path, live_model, source: dict, **sections) -> MonitorConfig:
    return MonitorConfig.model_validate({
        "instance": f"t{tmp_path.name[-12:].replace('_', '')}",
        "streams": [{"name": "endo", "source": source}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540], "ring_slots": 32},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": f"ipc://{tmp_path}/frames.sock"},
        "metrics": {"port": 0},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
        **sections,
    })


def _run(config: MonitorConfig, timeout_s: float = 120) -> tuple[RunRecord, str, dict]:
    record = RunRecord()
    collector = ResultCollector(record.add)
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
    try:
        endpoints = monitor.start()
        assert monitor.wait(timeout_s, until_done=True), "the replay did not finish in time"
        # The collector drains until stopped; /metrics is scraped while the inference process still serves.
        text = urllib.request.urlopen(endpoints.metrics_url + "/metrics", timeout=10).read().decode()
    finally:
        codes = monitor.stop()
        collector.stop()
    return record, text, codes


def test_alert_fires_on_the_ood_segment_and_not_on_id(tmp_path, live_model, e2e_clip):
    """The plumbing, end to end: frames picked to be clearly apart (e2e_clip) with a threshold between them
    and a short 3-of-5 hysteresis, so that every assertion is about the pipeline, not the detector:
    exactly one alert, starting inside the OOD segment and ending after it; every frame accounted for in
    /metrics; the audit log has the alert's start and end between the session's start and end; the
    overlay process wrote an annotated MP4; every process exited 0 and the ring was unlinked (no_leaks).
    The shipped detector, threshold and defaults on unpicked footage: test_shipped_defaults_end_to_end.py."""
    config = _config(tmp_path, live_model, {"kind": "file", "path": str(e2e_clip.path)},
                     alerts={"threshold": e2e_clip.threshold, "enter_n": 3, "enter_m": 5, "clear_after_s": 0.5},
                     overlay={"frames": "ring", "mp4": str(tmp_path / "overlay.mp4"), "mp4_fps": 10})
    record, text, codes = _run(config)
    assert all(code == 0 for code in codes.values()), codes

    starts = [a for a in record.alerts if a["event"] == "start"]
    ends = [a for a in record.alerts if a["event"] == "end"]
    assert [e2e_clip.label_of(a["seq"] - 1) for a in starts] == ["OOD"], record.alerts
    assert len(ends) == 1 and ends[0]["seq"] - 1 >= 32 and ends[0]["reason"] in ("quiet", "stream_ended")
    # Per frame: the first ID segment is all below the threshold; most OOD frames are above it (not all:
    # the scope-crop box is smoothed over frames, so the first frames after a cut are framed differently
    # from the stills the clip was picked on).
    assert all(r["score"] < r["threshold"] for r in record.results if r["seq"] - 1 < 16)
    ood = [r["score"] > r["threshold"] for r in record.results if 16 <= r["seq"] - 1 < 32]
    assert ood and np.mean(ood) >= 0.75

    samples = scrape(text)
    captured = metric(samples, "stream_monitor_frames_captured_total", stream="endo")
    processed = metric(samples, "stream_monitor_frames_processed_total", stream="endo")
    dropped = sum(metric(samples, "stream_monitor_frames_dropped_total", stream="endo", stage=s, reason=r)
                  for s, r in DROP_REASONS)
    assert captured == 48 and processed + dropped == captured
    assert processed == len(record.results) == metric(samples, "stream_monitor_capture_to_result_latency_seconds_count")
    assert metric(samples, "stream_monitor_alerts_total", stream="endo") == 1
    assert metric(samples, "stream_monitor_alert_active", stream="endo") == 0
    assert metric(samples, "stream_monitor_capture_state", stream="endo", stream_monitor_capture_state="ended") == 1
    assert metric(samples, "stream_monitor_build_info") == 1

    events = [r["event"] for r in read_audit_log(tmp_path / "alerts.jsonl")]
    assert events == ["session_start", "alert_start", "alert_end", "session_end"]

    video = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = video.read()
    video.release()
    assert ok and frames >= len(record.results) // 2 and first.shape[1] > 640  # frame + side panel


def test_overload_keeps_latency_bounded_and_counts_every_drop(tmp_path, live_model, shared_data):
    """A real 30 fps MP4 decoded as fast as possible (hundreds of frames/s) into a model that scores a
    few tens per second: the ring keeps only the newest frames, so (1) every frame is either scored or
    counted as dropped, by stage and reason, and (2) latency does not grow with the backlog.

    Bounds: a scored frame waits at most for the batch in flight plus its own batch, so its latency is
    about two inference times (20–200 ms here, up to ~1 s on this shared machine under load). A queue
    instead of a ring would accumulate the decode/inference rate gap: with ≥ 300 frames arriving ~10×
    faster than they are scored, the last frames would wait for most of the run (seconds). So we assert
    p99 < 3 s, and that the last fifth is not slower than the first fifth by more than 1 s."""
    clip = shared_data / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"
    if not clip.is_file():
        pytest.fail(f"{clip} not found: the test runs on it")
    config = _config(tmp_path, live_model, {"kind": "file", "path": str(clip), "pace": "max"},
                     pipeline={"max_frame_size": [640, 540], "ring_slots": 4})
    record, text, codes = _run(config)
    assert all(code == 0 for code in codes.values()), codes
    samples = scrape(text)
    captured = metric(samples, "stream_monitor_frames_captured_total", stream="endo")
    processed = metric(samples, "stream_monitor_frames_processed_total", stream="endo")
    superseded = metric(samples, "stream_monitor_frames_dropped_total", stream="endo", stage="ring", reason="superseded")
    overwritten = metric(samples, "stream_monitor_frames_dropped_total", stream="endo", stage="ring", reason="overwritten")
    assert captured >= 300 and superseded > 0
    assert processed + superseded + overwritten == captured
    assert processed == len(record.results)
    latency = np.array([r["latency_s"] for r in record.results])
    fifth = max(1, len(latency) // 5)
    assert np.percentile(latency, 99) < 3.0
    assert np.median(latency[-fifth:]) < np.median(latency[:fifth]) + 1.0
    # Each result says which frames before it were never scored (seq − prev_seq − 1): with the frames
    # after the last result, they are exactly the drops /metrics counted.
    skipped = sum(r["seq"] - r["prev_seq"] - 1 for r in record.results) + captured - record.results[-1]["seq"]
    assert skipped == superseded + overwritten
