"""Run the live monitor from a config file: one capture process per stream, the inference process
(model + NERO, alerts, ZeroMQ results, /metrics /healthz /readyz, audit log), and the overlay when the
config has an `overlay:` section. Runs until Ctrl-C or SIGTERM; `--until-done` stops once every source
is a replay that ended and was scored. Edit the file's `alerts:` sections while it runs to change
thresholds and hysteresis without a restart; SIGHUP to this process (`systemctl reload`) re-reads the
file at once.

examples:
  stream-monitor run --config configs/monitor.example.yaml
  stream-monitor run --config configs/file-replay.example.yaml --until-done
  stream-monitor overlay --config configs/monitor.example.yaml --serve 8090   # in a second terminal
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from ..config_yaml import load_config
from ..pipeline.supervisor import Monitor, StartupCancelled
from ..service import configure_logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="monitor config (YAML); see configs/")
    parser.add_argument("--until-done", action="store_true",
                        help="exit once every source is a replay that ended and all its frames were scored")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--no-reload", action="store_true", help="do not watch the config file for changes")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.logging.level)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    monitor = Monitor(config, None if args.no_reload else args.config.resolve())
    previous_hup = signal.signal(signal.SIGHUP, lambda *_: _reload(monitor))
    try:
        endpoints = monitor.start(should_stop=stop.is_set)
        print(f"stream-monitor: {len(config.streams)} stream(s); results on {endpoints.results}"
              + (f", viewer frames on {endpoints.frames}" if endpoints.frames else "")
              + (f", metrics on {endpoints.metrics_url}/metrics" if endpoints.metrics_url else ""), flush=True)
        monitor.wait(args.duration, until_done=args.until_done, should_stop=stop.is_set)
    except (KeyboardInterrupt, StartupCancelled):
        log.info("stopping")
    finally:
        codes = monitor.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
        _stop_resource_tracker()
    failed = {name: code for name, code in codes.items() if code not in (0, None)}
    if failed:
        print(f"stream-monitor run: processes exited with errors: {failed}")
        return 1
    return 0


def _reload(monitor: Monitor) -> None:
    """SIGHUP: re-read the config now (alerts, thresholds, logging; docs/architecture.md says what needs a
    restart). Never fatal: without a watched file, or before the model is loaded, it is only logged."""
    if not monitor.request_reload():
        log.warning("SIGHUP: nothing reloaded (%s)", "started with --no-reload" if monitor.config_path is None
                    else "the inference process is not serving yet")


def _stop_resource_tracker() -> None:
    """Wait for Python's shared-memory resource tracker to exit with us (the rings are unlinked by now).
    Left alone it exits a moment after this process and, reparented to PID 1, can linger as a zombie in
    the service's process group — which a service manager counts as a process not yet stopped. Only
    here, at the end of the command: in a process that still holds shared memory it would unlink it."""
    from multiprocessing import resource_tracker, util

    # The supervisor's queues hold semaphores that the tracker knows of; their finalizers unlink them at
    # interpreter exit. Stopped first, the tracker would call them leaked and unlink them itself, and
    # every finalizer would then fail with a FileNotFoundError traceback. Run them now, in order.
    try:
        util._run_finalizers(0)  # what interpreter exit runs first (exit priority >= 0): the semaphores
    except Exception:  # private API; without it only the warning comes back
        pass
    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        try:
            stop()
        except Exception:  # private API; exiting without it only leaves the zombie behind
            pass

