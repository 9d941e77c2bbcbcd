"""The process class every runtime process derives from, and central logging.

Processes are started with the "spawn" method: a forked child would inherit torch's thread pools and
ZeroMQ contexts in an undefined state. Each process gets a stop event (set by the supervisor or by
SIGTERM) and sends its log records through one queue to the supervisor, which writes them in one place
with the process name on every line. Children ignore SIGINT: Ctrl-C reaches the whole process group,
and the supervisor decides the order of shutdown (capture first, then inference, then viewers).
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import logging.handlers
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import os
import signal
import sys
import threading
import time
from abc import ABCMeta, abstractmethod
from typing import Any

from .errors import StreamMonitorError

__all__ = ["Flag", "LogListener", "SPAWN", "ServiceProcess", "StopRequested", "configure_logging"]

SPAWN = multiprocessing.get_context("spawn")
_FORMAT = "%(asctime)s %(levelname)-7s %(processName)-18s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Logging of the supervising process: one stderr handler, one format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


class LogListener:
    """Receives the children's log records on a queue and hands them to this process's handlers."""

    def __init__(self) -> None:
        self.queue: multiprocessing.queues.Queue = SPAWN.Queue()
        self._listener = logging.handlers.QueueListener(self.queue, _Dispatch(), respect_handler_level=False)

    def start(self) -> "LogListener":
        self._listener.start()
        return self

    def stop(self) -> None:
        if self._listener._thread is not None:  # stop() before start() (a start-up check failed)
            self._listener.stop()
        self.queue.close()
        self.queue.join_thread()


class _Dispatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


class Flag:
    """A cross-process boolean without locks: one byte of shared memory, set once, polled.

    multiprocessing.Event is a condition variable over semaphores: a process killed while waiting on
    it (a capture process the OOM killer takes, a daemon thread cut off at exit) leaves a sleeper count
    behind, and the next `set()` in another process blocks forever waiting for that sleeper — the
    supervisor would hang in its own shutdown. A byte cannot be left locked. Waiting polls every 10 ms.
    """

    _POLL_S = 0.01

    def __init__(self) -> None:
        self._value = SPAWN.RawValue(ctypes.c_bool, False)

    def set(self) -> None:
        self._value.value = True

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False after `timeout` seconds (None: wait for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._value.value:
            remaining = self._POLL_S if deadline is None else min(self._POLL_S, deadline - time.monotonic())
            if remaining <= 0:
                return False
            time.sleep(remaining)
        return True


class StopRequested(BaseException):
    """Raised by a process's start-up SIGTERM handler to abandon start-up (a model load cannot poll a
    flag). A BaseException, so that no `except Exception` on the way mistakes it for a start-up error."""


class ServiceProcess(SPAWN.Process, metaclass=ABCMeta):  # type: ignore[name-defined,misc]
    """A runtime process: `main()` runs until `stop_event` is set; exceptions are logged, exit code 1.

    Subclasses keep their constructor arguments picklable (configs, names, `Flag`s, queues) and open
    sockets, shared memory and models in `main`, inside the child. `stop_event` is a `Flag`.
    """

    def __init__(self, name: str, stop_event: Any, log_queue: Any, log_level: str = "INFO") -> None:
        super().__init__(name=name, daemon=False)
        self.stop_event = stop_event
        self._log_queue = log_queue
        self._log_level = log_level

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: where is it stuck?
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        if self._log_queue is not None:
            root.addHandler(logging.handlers.QueueHandler(self._log_queue))
        else:
            configure_logging(self._log_level)
        root.setLevel(self._log_level)
        log = logging.getLogger(f"stream_monitor.{type(self).__name__}")
        threading.Thread(target=self._watch_parent, args=(os.getppid(), log), name="parent-watch", daemon=True).start()
        code = 0
        try:
            self.main()
        except StopRequested:  # stopped during start-up, on request: a clean exit
            log.info("%s: stopped during start-up", self.name)
        except StreamMonitorError as exc:  # raised on purpose, with a message that says what to do
            log.error("%s failed: %s", self.name, exc)
            code = 1
        except Exception:
            log.exception("%s failed", self.name)
            code = 1
        finally:
            logging.shutdown()
        self._flush_and_exit(code)

    def _flush_and_exit(self, code: int) -> None:
        """Exit now that `main` has closed what it owns (audit log fsynced, sockets, rings): the
        interpreter's own teardown with torch and OpenVINO loaded takes seconds — more than the whole
        2 s shutdown budget — and has nothing left to save. Logs and std streams are flushed first."""
        if self._log_queue is not None:
            self._log_queue.close()
            self._log_queue.join_thread()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def interrupt_startup_on_sigterm(self, enabled: bool = True) -> None:
        """While enabled, SIGTERM (or a stop already requested) raises `StopRequested` in the main thread,
        so that a long start-up step (loading the model) ends within a second instead of running on to
        `ready`. The handler disarms itself first: the clean-up that follows must not be interrupted."""
        def interrupt(*_: object) -> None:
            signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
            self.stop_event.set()
            raise StopRequested

        if not enabled:
            signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
            return
        signal.signal(signal.SIGTERM, interrupt)
        if self.stop_event.is_set():
            interrupt()

    @abstractmethod
    def main(self) -> None:
        """The process's work, run until `stop_event` is set."""

    def _watch_parent(self, parent: int, log: logging.Logger) -> None:
        # A supervisor killed with SIGKILL cannot stop its children; they must not run on as orphans
        # holding the camera and the ports.
        while not self.stop_event.is_set():
            time.sleep(1.0)
            if os.getppid() != parent:
                log.warning("%s: the supervising process is gone; stopping", self.name)
                self.stop_event.set()
                return

    def stop(self) -> None:
        self.stop_event.set()

    def join_or_terminate(self, timeout: float) -> int | None:
        """Wait for a clean exit; terminate (then kill) a process that does not stop in `timeout` s."""
        self.join(timeout)
        if self.is_alive():
            logging.getLogger(__name__).warning("%s did not stop within %.1f s; terminating", self.name, timeout)
            self.terminate()
            self.join(2.0)
            if self.is_alive():
                self.kill()
                self.join(2.0)
        return self.exitcode

