"""Start-up faults (issue 5, item 6): a monitor that cannot work as configured must say so when it is
started — naming the config field and the file or port — exit non-zero, and leave nothing behind
(no process, no ring: `no_leaks`), instead of failing minutes into a procedure."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from stream_monitor.config import MonitorConfig
from stream_monitor.pipeline import supervisor
from stream_monitor.pipeline.preflight import StartupError
from stream_monitor.pipeline.supervisor import Monitor

CLI = [sys.executable, "-m", "stream_monitor.cli"]


def _config(tmp_path, live_model, clip, **changes) -> MonitorConfig:
    data = {
        "instance": f"st{tmp_path.name[-10:].replace('_', '')}",
        "streams": [{"name": "endo", "source": {"kind": "file", "path": str(clip)}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540]},
        "transport": {"results": f"ipc://{tmp_path}/results.sock", "frames": None},
        "metrics": {"port": 0},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    }
    for section, value in changes.items():
        data[section] = {**data.get(section, {}), **value} if isinstance(value, dict) else value
    return MonitorConfig.model_validate(data)


def _start_fails(config: MonitorConfig) -> tuple[str, float]:
    monitor = Monitor(config)
    started = time.monotonic()
    try:
        with pytest.raises(StartupError) as caught:
            monitor.start()
    finally:
        monitor.stop()
    return str(caught.value), time.monotonic() - started


@pytest.fixture
def held_port():
    """A TCP port on 127.0.0.1 that another program is listening on for the test's duration."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield holder.getsockname()[1]
    holder.close()


def test_missing_files_and_taken_ports_are_all_named_before_any_process_starts(tmp_path, live_model, e2e_clip,
                                                                                 held_port):
    """Every problem the config alone shows is listed in one error, each with its field, and the check
    runs before the rings or processes exist (so it is instant and leaves nothing behind)."""
    config = _config(tmp_path, live_model, tmp_path / "no-such-clip.mp4",
                     model={"checkpoint": str(tmp_path / "missing.pt"), "detector": str(tmp_path / "missing.npz")},
                     metrics={"port": held_port},
                     transport={"results": f"tcp://127.0.0.1:{held_port}"})
    message, elapsed = _start_fails(config)
    assert f"model.checkpoint: {tmp_path / 'missing.pt'} does not exist" in message
    assert f"model.detector: {tmp_path / 'missing.npz'} does not exist" in message
    assert "streams[0].source.path (stream 'endo')" in message and "no-such-clip.mp4" in message
    assert f"metrics.port: cannot listen on 127.0.0.1:{held_port}" in message
    assert f"transport.results: cannot bind tcp://127.0.0.1:{held_port}" in message
    assert elapsed < 5  # no process was started to find this out


def test_a_port_taken_after_the_check_is_reported_by_the_inference_process(tmp_path, live_model, e2e_clip,
                                                                            held_port, monkeypatch):
    """The race the pre-check cannot close (another program binds the port between the check and the
    bind): the inference process sends the error back, naming metrics.port, and the start fails."""
    monkeypatch.setattr(supervisor, "check_startup", lambda config: None)
    message, _ = _start_fails(_config(tmp_path, live_model, e2e_clip.path, metrics={"port": held_port}))
    assert "metrics.port: cannot listen (the port is already in use)" in message


def _retrained_checkpoint(live_model, folder):
    """The same architecture with a different head (as after re-training): a valid checkpoint that the
    detector was not fitted on."""
    state = torch.load(live_model.checkpoint, map_location="cpu", weights_only=True)
    head = next(k for k in state if k.endswith("weight") and state[k].ndim == 2)
    state[head] = state[head] * 1.5
    checkpoint = folder / "retrained.pt"
    torch.save(state, checkpoint)
    sidecar = json.loads(live_model.checkpoint.with_suffix(".json").read_text())
    sidecar["weights_sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    checkpoint.with_suffix(".json").write_text(json.dumps(sidecar))
    return checkpoint


def test_a_detector_of_another_model_and_a_corrupt_checkpoint_are_refused_at_startup(tmp_path, live_model, e2e_clip):
    """Files that exist but do not belong together (a detector fitted on another model) or are not a
    checkpoint at all: the inference process fails while loading, before `ready`, and the supervisor
    raises with the field and the file — no frame is captured."""
    retrained = _retrained_checkpoint(live_model, tmp_path)
    message, _ = _start_fails(_config(tmp_path, live_model, e2e_clip.path, model={"checkpoint": str(retrained)}))
    assert message.startswith("cannot start the monitor: model.detector:")
    assert str(live_model.detector) in message and "re-fit the detector" in message

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    shutil.copy(live_model.checkpoint.with_suffix(".json"), corrupt.with_suffix(".json"))
    message, _ = _start_fails(_config(tmp_path, live_model, e2e_clip.path, model={"checkpoint": str(corrupt)}))
    assert message.startswith("cannot start the monitor: model.checkpoint:") and str(corrupt) in message
    assert not (tmp_path / "alerts.jsonl").exists()  # nothing ran, so nothing was audited


def test_run_exits_non_zero_with_the_field_for_a_bad_config_or_a_taken_port(tmp_path, live_model, e2e_clip, held_port):
    """What the operator sees from `stream-monitor run`: exit status 1 and one error naming the file and
    line (malformed YAML / schema), or the field (port taken) — within seconds, not after the model loaded."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstreams:\n  - name: endo\n    source: {kind: file, path: x.mp4}\nmetrics: {port: many}\n")
    done = subprocess.run([*CLI, "run", "--config", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and f"{bad}:5:" in done.stderr and "metrics.port" in done.stderr

    good = tmp_path / "taken.yaml"
    good.write_text(f"version: 1\nstreams:\n  - name: endo\n    source: {{kind: file, path: {e2e_clip.path}}}\n"
                    f"model: {{checkpoint: {live_model.checkpoint}, detector: {live_model.detector}}}\n"
                    f"transport: {{results: 'ipc://{tmp_path}/r.sock', frames: null}}\n"
                    f"metrics: {{port: {held_port}}}\naudit: {{path: {tmp_path / 'a.jsonl'}}}\n")
    done = subprocess.run([*CLI, "run", "--config", str(good)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"metrics.port: cannot listen on 127.0.0.1:{held_port}" in done.stderr


class _LateQueue:
    """An info queue whose message arrives only after the first read timed out — as when the inference
    process sends its start-up error and exits between the supervisor's read and its liveness check."""

    def __init__(self, message: dict) -> None:
        self.message, self.reads = message, 0

    def get(self, timeout: float | None = None) -> dict:
        import queue

        self.reads += 1
        if self.reads == 1:
            raise queue.Empty
        return self.message

    def get_nowait(self) -> dict:
        return self.get()


class _Exited:
    exitcode = 1

    @staticmethod
    def is_alive() -> bool:
        return False


def test_an_error_sent_just_before_the_inference_process_exits_is_reported_as_the_startup_error() -> None:
    """Not as "the inference process exited": the message names the field and says what to do (a race
    a loaded CI machine hit in tests/transport/test_curve.py)."""
    monitor = Monitor.__new__(Monitor)  # only what _await_info reads
    monitor.inference, monitor._should_stop = _Exited(), lambda: False
    error = {"error": "transport.curve.server_secret_key: /k does not exist (make one with `stream-monitor keys`)"}
    assert monitor._await_info(_LateQueue(error), timeout_s=5.0) == error
    assert supervisor._startup_failure(_LateQueue(error), wait_s=1.0) is None  # first read empty, no second read
    late = _LateQueue(error)
    late.reads = 1
    assert supervisor._startup_failure(late, wait_s=1.0) == error["error"]
