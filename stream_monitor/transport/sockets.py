"""ZeroMQ helpers for the live path: publishers that know their subscribers, subscribers that drain.

Every socket is made with `linger=0` (closing never waits for unsent messages: on the live path they are
stale anyway) and a small high-water mark (a slow viewer loses messages at the publisher instead of
building a queue). Publishers are XPUB sockets with XPUB_VERBOSE: they see every subscribe, and an
unsubscribe when the last subscriber of a topic leaves (also by disconnecting). So the frame publisher
encodes JPEGs only while someone subscribes to frames, and start-up can wait until the expected viewers
are connected (PUB/SUB drops everything sent before a subscription arrives). Subscribers drain: they take every message that is waiting and keep the newest, so that a
viewer that paused for a moment shows the present, not a backlog — see `drain`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import zmq

from .security import HANDSHAKE_TIMEOUT_S, CurveClient, CurveServer, await_handshake, secure_client, secure_server

__all__ = ["Publisher", "drain", "make_subscriber", "prepare_endpoint"]


def prepare_endpoint(endpoint: str) -> str:
    """Create the folder of an ipc:// endpoint (ZeroMQ does not); returns the endpoint."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
    return endpoint


class Publisher:
    """An XPUB socket bound to `endpoint`, counting subscriptions per topic prefix.

    Not thread-safe: use it from one thread (ZeroMQ sockets must not be shared).
    """

    def __init__(self, context: zmq.Context, endpoint: str, hwm: int, curve: CurveServer | None = None) -> None:
        self.socket = context.socket(zmq.XPUB)
        if curve is not None:  # encrypted; clients admitted by the context's ServerAuthenticator
            secure_server(self.socket, curve)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.socket.bind(prepare_endpoint(endpoint))
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._subscriptions: Counter[bytes] = Counter()
        self.sent = 0

    def poll_subscriptions(self) -> None:
        """Read pending (un)subscribe notifications without blocking."""
        while True:
            try:
                event = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not event:
                continue
            prefix = bytes(event[1:])
            if event[0] == 1:
                self._subscriptions[prefix] += 1
            elif event[0] == 0:
                # libzmq reports an unsubscribe only when no subscriber of this prefix is left.
                self._subscriptions[prefix] = 0

    def subscribers(self, topic: bytes) -> int:
        """Subscriptions that would receive `topic` (prefix match, as SUB sockets filter): exact while
        subscribers join, and 0 once all subscribers of a prefix have left."""
        return sum(n for prefix, n in self._subscriptions.items() if topic.startswith(prefix))

    def subscribers_under(self, family: bytes) -> int:
        """Subscriptions that receive some topic starting with `family` (b"result/" counts both a
        subscriber to every result and one to b"result/endo1")."""
        return sum(n for prefix, n in self._subscriptions.items()
                   if prefix.startswith(family) or family.startswith(prefix))

    def wait_for_subscribers(self, family: bytes, count: int, timeout: float) -> bool:
        """Block until `count` subscriptions fall under `family`, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.subscribers_under(family) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.socket.poll(int(min(remaining, 0.1) * 1000), zmq.POLLIN):
                self.poll_subscriptions()
        return True

    def send(self, parts: list[bytes | memoryview]) -> None:
        """Send one multipart message; never blocks (XPUB drops at the high-water mark)."""
        self.socket.send_multipart(parts, copy=False)
        self.sent += 1

    def close(self, linger_s: float = 0.0) -> None:
        """Close; with `linger_s`, queued messages (the last status at shutdown) get that long to leave
        when the context terminates — bounded, so a stalled subscriber cannot delay a shutdown."""
        self.socket.close(linger=int(linger_s * 1000))
        if self.endpoint.startswith("ipc://"):
            try:
                os.unlink(self.endpoint[len("ipc://"):])
            except OSError:
                pass


def make_subscriber(context: zmq.Context, endpoint: str, topics: list[bytes], hwm: int = 16,
                    curve: CurveClient | None = None, handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S) -> zmq.Socket:
    """A SUB socket connected to `endpoint`, subscribed to each topic prefix, `linger=0`. With `curve`,
    it returns only after the CURVE handshake, else raises `TransportSecurityError` saying why."""
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, hwm)
    for prefix in topics:
        socket.setsockopt(zmq.SUBSCRIBE, prefix)
    if curve is None:
        socket.connect(endpoint)
        return socket
    secure_client(socket, curve)
    monitor = socket.get_monitor_socket()
    try:
        socket.connect(endpoint)
        await_handshake(monitor, endpoint, handshake_timeout_s)
    except BaseException:
        socket.disable_monitor()
        monitor.close(linger=0)
        socket.close(linger=0)
        raise
    socket.disable_monitor()
    monitor.close(linger=0)
    return socket


def drain(socket: zmq.Socket, limit: int = 10_000) -> list[list[zmq.Frame]]:
    """Every multipart message waiting on `socket`, oldest first, without blocking (at most `limit`)."""
    messages = []
    while len(messages) < limit:
        try:
            messages.append(socket.recv_multipart(zmq.NOBLOCK, copy=False))
        except zmq.Again:
            break
    return messages
