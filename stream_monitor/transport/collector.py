"""A subscriber thread that records every result and alert message of a monitor (demo, tests, benchmarks)."""

from __future__ import annotations

import threading

import zmq

from .gaps import SequenceGaps
from .schema import SchemaError, decode
from .sockets import drain, make_subscriber

__all__ = ["ResultCollector"]


class ResultCollector(threading.Thread):
    """Subscribes to results, alerts and stream statuses on `endpoint` and calls `on_message(decoded)` for each, in order.

    `start_on(endpoints)` fits `Monitor(on_endpoints=...)`: it connects as soon as the monitor has bound
    its sockets, so that the monitor can wait for this subscriber before it captures the first frame.
    """

    def __init__(self, on_message, hwm: int = 100_000) -> None:
        super().__init__(name="result-collector", daemon=True)
        self.on_message, self.hwm = on_message, hwm
        self.endpoint: str | None = None
        self.invalid = 0
        self.sequence = SequenceGaps()  # results lost on the way here (at this subscriber's HWM)
        self._stopping = threading.Event()
        self._connected = threading.Event()

    def start_on(self, endpoints) -> None:
        self.endpoint = endpoints.results
        self.start()
        self._connected.wait(5)

    def run(self) -> None:
        context = zmq.Context()
        # A recorder, not a viewer: a deep queue so that it misses nothing on a busy machine.
        socket = make_subscriber(context, self.endpoint, [b"result/", b"alert/", b"status/"], hwm=self.hwm)
        self._connected.set()
        try:
            while not self._stopping.is_set():
                if socket.poll(100):
                    self._handle(drain(socket))
            self._handle(drain(socket))
        finally:
            socket.close(linger=0)
            context.term()

    def _handle(self, messages: list) -> None:
        for parts in messages:
            try:
                message = decode(parts[-1].buffer)
            except SchemaError:
                self.invalid += 1
                continue
            if message["type"] == "result":
                self.sequence.add(message)
            self.on_message(message)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=5)
