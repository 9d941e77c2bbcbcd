"""Start-up checks: everything a config names that can be checked before a process is started.

A monitor that starts and then fails minutes into a procedure is worse than one that refuses to start:
so missing files (checkpoint, detector, replayed sources) and ports another program holds are errors
here, each naming the config field. What can only fail inside the inference process (a corrupt
checkpoint, a detector fitted on another model, a port taken in the moment between this check and the
bind) is reported back to the supervisor by `startup_error` with the field it concerns, and the
supervisor raises it before any frame is captured.
"""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

import zmq

from ..config import FileSource, FolderSource, MonitorConfig
from ..errors import ArtifactError, CheckpointError, StreamMonitorError, UnsupportedModelError

__all__ = ["StartupError", "check_startup", "startup_error"]


class StartupError(StreamMonitorError):
    """The monitor cannot start as configured; the message names the config field and what to do."""


def _check_files(config: MonitorConfig) -> list[str]:
    problems = []
    for field in ("checkpoint", "detector"):
        path = getattr(config.model, field)
        if path is not None and not Path(path).is_file():
            problems.append(f"model.{field}: {path} does not exist (null = the bundled one)")
    if config.model.checkpoint is None and any(getattr(config.model, f) is not None for f in ("arch", "num_classes", "head")):
        problems.append("model.arch / num_classes / head describe model.checkpoint, which is not set "
                        "(null = the bundled model, which needs neither)")
    for i, stream in enumerate(config.streams):
        source = stream.source
        if isinstance(source, FileSource) and not Path(source.path).is_file():
            problems.append(f"streams[{i}].source.path (stream {stream.name!r}): video file {source.path} does not exist")
        if isinstance(source, FolderSource) and not Path(source.path).is_dir():
            problems.append(f"streams[{i}].source.path (stream {stream.name!r}): image folder {source.path} does not exist")
    return problems


def _port_in_use(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, or None. Uses SO_REUSEADDR like the servers do, so a
    port in TIME_WAIT after a restart is not mistaken for a taken one."""
    if port == 0:
        return None
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _check_ports(config: MonitorConfig) -> list[str]:
    problems = []
    if config.metrics.enabled:
        why = _port_in_use(config.metrics.host, config.metrics.port)
        if why:
            problems.append(f"metrics.port: cannot listen on {config.metrics.host}:{config.metrics.port} ({why}); "
                            f"another monitor or service holds it — choose a free port (0 = any)")
    for field in ("results", "frames"):
        endpoint = getattr(config.transport, field)
        match = re.fullmatch(r"tcp://([^:]+|\[[^\]]+\]):(\d+)", endpoint or "")
        if match and match.group(1) != "*":
            why = _port_in_use(match.group(1).strip("[]"), int(match.group(2)))
            if why:
                problems.append(f"transport.{field}: cannot bind {endpoint} ({why}); another monitor or "
                                f"service holds it — choose a free port")
    return problems


def check_startup(config: MonitorConfig) -> None:
    """Raise `StartupError` listing every problem found; returns quietly when there is none."""
    problems = _check_files(config) + _check_ports(config)
    if problems:
        raise StartupError("cannot start the monitor:\n  " + "\n  ".join(problems))


def startup_error(exc: BaseException, stage: str) -> str:
    """One line for an exception raised in the inference process while starting, naming the field."""
    if stage == "metrics" and isinstance(exc, OSError):
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        return f"metrics.port: cannot listen ({reason}); choose a free port (0 = any)"
    if stage in ("results", "frames") and isinstance(exc, (zmq.ZMQError, OSError)):
        return f"transport.{stage}: cannot bind ({exc}); choose a free endpoint"
    if stage == "model" and isinstance(exc, CheckpointError):
        return f"model.checkpoint: {exc}"
    if stage == "model" and isinstance(exc, ArtifactError):
        return f"model.detector: {exc}"
    if stage == "model" and isinstance(exc, UnsupportedModelError):
        return f"model.arch / model.head: {exc}"
    if stage in ("transport.curve", "metrics") and isinstance(exc, StreamMonitorError):
        return str(exc)  # key, certificate and password errors name their own field
    return f"{stage}: {type(exc).__name__}: {exc}"
