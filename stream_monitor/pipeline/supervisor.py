"""The supervisor: owns the shared-memory rings, starts and watches the processes, shuts down in order.

    supervisor (this process)      creates rings, runs the log listener, restarts crashed capture processes
    ├── inference                  binds sockets, loads the model, scores, publishes, serves /metrics
    ├── capture:<stream> (× N)     started once inference is ready
    └── overlay (optional)         renders results onto frames: window, MP4, MJPEG

Shutdown goes the other way: capture processes stop first (no new frames), then inference (closes open
alerts in the audit log, publishes the last results), then the overlay (finishes its MP4), and the
rings are unlinked last — also after a crash, from `stop()` in a `finally`.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..capture.process import CaptureProcess
from ..capture.ring import FrameRing, ring_name
from ..config import MonitorConfig
from ..errors import StreamMonitorError
from ..preprocess import INPUT_SIZE
from ..service import SPAWN, Flag, LogListener
from .inference import InferenceProcess
from .preflight import StartupError, check_startup

__all__ = ["Monitor", "MonitorEndpoints", "StartupCancelled"]

log = logging.getLogger(__name__)
_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class StartupCancelled(Exception):
    """`Monitor.start` gave up because a stop was requested (SIGTERM or Ctrl-C during start-up)."""


def _check_shm_space(needed: int, folder: str = "/dev/shm") -> None:
    """Refuse to start when the rings would not fit: tmpfs allocates on first write, so an over-full
    /dev/shm shows up as a SIGBUS in a capture process minutes later, not as an error now."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return  # not Linux-like; SharedMemory will say what is wrong
    free = stat.f_bavail * stat.f_frsize
    if free < needed:
        raise StreamMonitorError(
            f"the frame rings need {needed / 2**20:.0f} MiB of shared memory but {folder} has {free / 2**20:.0f} MiB "
            f"free; lower pipeline.ring_slots or pipeline.max_frame_size, or give the container more "
            f"(docker run --shm-size=256m, or an emptyDir with medium: Memory on Kubernetes)")


def _startup_failure(info_queue: queue.Queue, wait_s: float = 0.0) -> str | None:
    """The inference process's start-up error, if it sent one (after its endpoints); waits up to wait_s."""
    try:
        return (info_queue.get(timeout=wait_s) if wait_s > 0 else info_queue.get_nowait()).get("error")
    except queue.Empty:
        return None


@dataclass
class MonitorEndpoints:
    """Where a running monitor can be reached."""

    results: str
    frames: str | None
    metrics_url: str | None
    rings: dict[str, str] = field(default_factory=dict)


class Monitor:
    """A running monitor. Use as a context manager, or call `start()` and then `stop()` in a `finally`.

    Args:
        config: validated config (absolute paths).
        config_path: the file to watch for threshold reloads (None: no reload).
        wait_for_subscribers: result subscribers to wait for before the first frame is captured.
        overlay: start the config's overlay renderer as a fourth kind of process.
        on_endpoints: called with the bound endpoints before the model has loaded, so that subscribers
            (counted by `wait_for_subscribers`) can connect in time for the first frame.
    """

    def __init__(self, config: MonitorConfig, config_path: Path | None = None, wait_for_subscribers: int = 0,
                 overlay: bool = True, on_endpoints: Callable[[MonitorEndpoints], None] | None = None) -> None:
        self.config, self.config_path = config, config_path
        self.wait_for_subscribers = wait_for_subscribers
        self.on_endpoints = on_endpoints
        self.with_overlay = overlay and config.overlay is not None
        self.run_dir = Path(tempfile.mkdtemp(prefix="sm-"))
        self.rings: dict[str, FrameRing] = {}
        self.captures: dict[str, CaptureProcess] = {}
        self.inference: InferenceProcess | None = None
        self.overlay = None
        self.endpoints: MonitorEndpoints | None = None
        self.done = Flag()
        self._stop_inference = Flag()
        self._logs = LogListener()
        self._restarts: dict[str, int] = {}
        self.stopped_externally = False  # the inference process stopped on its own SIGTERM
        self._restart_at: dict[str, float] = {}
        self._should_stop: Callable[[], bool] = lambda: False

    # ------------------------------------------------------------------ start
    def start(self, timeout_s: float = 180.0, should_stop: Callable[[], bool] = lambda: False) -> MonitorEndpoints:
        """Start everything; raises `StartupCancelled` within ~0.2 s once `should_stop()` is true (then
        `stop()` ends the half-started processes at once: a model load is not waited for)."""
        self._should_stop = should_stop
        cfg = self.config
        check_startup(cfg)  # missing files and taken ports: refuse before anything starts
        self._logs.start()
        _check_shm_space(len(cfg.streams) * FrameRing.size_for(cfg.pipeline.ring_slots, *cfg.pipeline.max_frame_size,
                                                               INPUT_SIZE))
        for stream in cfg.streams:
            name = ring_name(cfg.instance, stream.name)
            self.rings[stream.name] = FrameRing.create(name, cfg.pipeline.ring_slots, cfg.pipeline.max_frame_size, INPUT_SIZE)
        wakeup = f"ipc://{self.run_dir}/wakeup.sock"
        ready, info_queue = Flag(), SPAWN.Queue()
        expected = self.wait_for_subscribers + (1 if self.with_overlay else 0)
        self.inference = InferenceProcess(cfg, self.config_path, {s: r.name for s, r in self.rings.items()}, wakeup,
                                          ready, info_queue, self._stop_inference, self._logs.queue,
                                          done_event=self.done, wait_for_subscribers=expected)
        self.inference.start()
        info = self._await_info(info_queue, timeout_s)
        if "error" in info:
            raise StartupError(f"cannot start the monitor: {info['error']}")
        self.endpoints = MonitorEndpoints(info["results"], info["frames"], info["metrics_url"],
                                          {s: r.name for s, r in self.rings.items()})
        if self.on_endpoints is not None:
            self.on_endpoints(self.endpoints)
        if self.with_overlay:
            self._start_overlay()
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.2):
            if should_stop():
                raise StartupCancelled("stopped during start-up")
            failure = _startup_failure(info_queue)
            if failure:
                raise StartupError(f"cannot start the monitor: {failure}")
            if not self.inference.is_alive():
                # its last message can land between the check above and its exit: read it once more
                failure = _startup_failure(info_queue, wait_s=1.0)
                if failure:
                    raise StartupError(f"cannot start the monitor: {failure}")
                raise self._exited_during_startup()
            if time.monotonic() > deadline:
                raise StreamMonitorError(f"the inference process was not ready within {timeout_s:.0f} s")
        for stream in cfg.streams:
            self._start_capture(stream.name)
        return self.endpoints

    def _await_info(self, info_queue: queue.Queue, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return info_queue.get(timeout=0.2)
            except queue.Empty:
                if self._should_stop():
                    raise StartupCancelled("stopped during start-up") from None
                if not self.inference.is_alive():
                    try:  # it may have sent its start-up error just before exiting, after our last read
                        return info_queue.get(timeout=1.0)
                    except queue.Empty:
                        raise self._exited_during_startup() from None
                if time.monotonic() > deadline:
                    raise StreamMonitorError("the inference process did not bind its sockets in time") from None

    def _exited_during_startup(self) -> StreamMonitorError:
        return StreamMonitorError(f"the inference process exited during start-up (exit code "
                                  f"{self.inference.exitcode}); see the log above")

    def _start_capture(self, stream: str) -> None:
        cfg = self.config.stream(stream)
        process = CaptureProcess(stream, cfg.source, cfg.scope_mask, self.rings[stream].name,
                                 f"ipc://{self.run_dir}/wakeup.sock", Flag(), self._logs.queue,
                                 self.config.logging.level, self.config.pipeline.capture_threads,
                                 self.config.pipeline.frame_skipping)
        process.start()
        self.captures[stream] = process

    def _start_overlay(self) -> None:
        from ..overlay.process import OverlayProcess

        assert self.endpoints is not None and self.config.overlay is not None
        overlay_cfg = self.config.overlay
        stream = overlay_cfg.stream or self.config.streams[0].name
        from .. import bundled
        from ..explanations.assets import explanation_path

        explanations = explanation_path(self.config.model.detector or bundled.DETECTOR)
        self.overlay = OverlayProcess(overlay_cfg, stream, self.endpoints.results,
                                      self.endpoints.frames if overlay_cfg.frames == "zmq" else None,
                                      self.rings[stream].name if overlay_cfg.frames == "ring" else None,
                                      Flag(), self._logs.queue, self.config.logging.level, self.config.transport.curve,
                                      str(explanations) if explanations.exists() else None)
        self.overlay.start()

    # ------------------------------------------------------------------ watch
    def check(self) -> None:
        """Restart capture processes that crashed (with back-off); raise if inference died."""
        if self.inference is not None and not self.inference.is_alive():
            if self.inference.exitcode == 0:  # it was told to stop: SIGTERM to the whole process group
                self.stopped_externally = True
                return
            raise StreamMonitorError(f"the inference process died (exit code {self.inference.exitcode})")
        for stream, process in list(self.captures.items()):
            if process.is_alive() or process.exitcode == 0:
                continue
            now = time.monotonic()
            if stream not in self._restart_at:
                count = self._restarts.get(stream, 0)
                delay = _RESTART_BACKOFF_S[min(count, len(_RESTART_BACKOFF_S) - 1)]
                log.error("capture process of %s exited with code %s; restarting in %.0f s", stream,
                          process.exitcode, delay)
                self._restart_at[stream] = now + delay
            elif now >= self._restart_at.pop(stream):
                self._restarts[stream] = self._restarts.get(stream, 0) + 1
                self._start_capture(stream)

    def wait(self, timeout_s: float | None = None, until_done: bool = False, should_stop=lambda: False) -> bool:
        """Supervise until `timeout_s`, `should_stop()`, or (with `until_done`) every replay was scored.
        Returns True when it stopped because the sources were done."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            if until_done and self.done.wait(0.2):
                return True
            if not until_done:
                time.sleep(0.2)
            if should_stop():  # before check(): a SIGTERM to the group also stops the children
                break
            self.check()
            if self.stopped_externally:
                break
        return False

    def request_reload(self) -> bool:
        """Make the inference process re-read the config file now (`stream-monitor run` does this on
        SIGHUP, so `systemctl reload` works), instead of at the watcher's next change check. False, and
        nothing sent, when no file is watched or inference is not serving yet: it installs its SIGHUP
        handler before it reports ready, and until then the signal would kill it."""
        process = self.inference
        if self.config_path is None or process is None or not process.ready_event.is_set() or not process.is_alive():
            return False
        os.kill(process.pid, signal.SIGHUP)
        return True

    # ------------------------------------------------------------------ stop
    def stop_captures(self, timeout_s: float = 15.0) -> dict[str, int | None]:
        """Stop the capture processes only (no new frames); inference goes on scoring what the rings
        hold, so that a benchmark or a test can wait for captured = processed + dropped before `stop`."""
        for process in self.captures.values():
            process.stop()
        codes = {process.name: process.join_or_terminate(timeout_s) for process in self.captures.values()}
        self._restart_at.clear()
        return codes

    def stop(self, timeout_s: float = 15.0) -> dict[str, int | None]:
        """Stop everything in order and unlink the rings; returns each process's exit code."""
        codes: dict[str, int | None] = self.stop_captures(timeout_s)
        if self.inference is not None and self.inference.pid is not None:
            self._stop_inference.set()
            if self.inference.is_alive() and not self.inference.ready_event.is_set():
                # Still starting (loading the model, which polls no flag): its start-up SIGTERM handler
                # abandons start-up at once (ServiceProcess.interrupt_startup_on_sigterm).
                try:
                    os.kill(self.inference.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            codes["inference"] = self.inference.join_or_terminate(timeout_s)
        if self.overlay is not None:
            self.overlay.stop()
            codes["overlay"] = self.overlay.join_or_terminate(timeout_s)
        for ring in self.rings.values():
            ring.close()
            ring.unlink()
        self.rings.clear()
        self._logs.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return codes

    def __enter__(self) -> "Monitor":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
