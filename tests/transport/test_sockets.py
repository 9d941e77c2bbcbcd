"""ZeroMQ helpers on real sockets: subscription tracking, high-water marks, draining, linger 0."""

from __future__ import annotations

import time

import zmq

from stream_monitor.transport.sockets import Publisher, drain, make_subscriber


def test_publisher_sees_subscribers_join_and_leave(tmp_path):
    context = zmq.Context()
    publisher = Publisher(context, f"ipc://{tmp_path}/sub/p.sock", hwm=4)  # the folder is created
    one = make_subscriber(context, publisher.endpoint, [b"result/"])
    two = make_subscriber(context, publisher.endpoint, [b"result/endo1", b"frame/endo1"])
    try:
        assert publisher.wait_for_subscribers(b"result/", 2, timeout=10)
        assert publisher.subscribers(b"frame/endo1") == 1 and publisher.subscribers(b"frame/endo2") == 0
        two.close()
        deadline = time.monotonic() + 10
        while publisher.subscribers(b"frame/endo1") and time.monotonic() < deadline:
            publisher.send([b"result/x", b"keep the pipe busy"])  # disconnects are noticed on I/O
            time.sleep(0.05)
            publisher.poll_subscriptions()
        assert publisher.subscribers(b"frame/endo1") == 0
        assert not publisher.wait_for_subscribers(b"alert/", 1, timeout=0.2)
    finally:
        one.close()
        two.close()
        publisher.close()
        context.term()
    assert not (tmp_path / "sub" / "p.sock").exists()


def _kernel_socket_buffer_bytes() -> int:
    """What the kernel may hold between the two ends of a local socket: send plus receive buffer."""
    total = 0
    for name in ("wmem_default", "rmem_default"):
        try:
            total += int(open(f"/proc/sys/net/core/{name}").read())
        except OSError:
            total += 212_992  # Linux's usual default
    return total


def _drain_until_quiet(subscriber, quiet_s: float = 0.3, timeout_s: float = 10.0) -> list[int]:
    """Every message that arrives until none has come for `quiet_s`: the kernel hands a backlog over
    in pieces, so one non-blocking drain can miss messages still in flight."""
    received: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not subscriber.poll(int(quiet_s * 1000)):
            break
        received += [int(bytes(parts[1].buffer[:16]).rstrip(b"\0")) for parts in drain(subscriber)]
    return received


def test_a_slow_subscriber_has_a_bounded_backlog_and_then_sees_fresh_messages(tmp_path):
    """The live path's promise: with a small high-water mark, a viewer that stops reading for a while
    receives at most what the two high-water marks and the kernel's socket buffers hold (ZeroMQ's PUB
    drops the rest), never an unbounded backlog of stale frames; once drained, the next message
    published is the next one it sees. Frame-sized payloads (60 KiB) keep the kernel's share small;
    they stay under pyzmq's zero-copy threshold (64 KiB), above which pyzmq starts a process-wide
    garbage-collector context that the leak check would count against this test."""
    hwm, payload_bytes, published = 5, 60 * 1024, 1000
    padding = b"\0" * (payload_bytes - 16)

    def payload(seq: int) -> bytes:
        return str(seq).encode().ljust(16, b"\0") + padding

    context = zmq.Context()
    publisher = Publisher(context, f"ipc://{tmp_path}/p.sock", hwm=hwm)
    subscriber = make_subscriber(context, publisher.endpoint, [b"result/"], hwm=hwm)
    try:
        assert publisher.wait_for_subscribers(b"result/", 1, timeout=10)
        for seq in range(1, published + 1):  # the subscriber is not reading
            publisher.send([b"result/s", payload(seq)])
        time.sleep(0.2)
        received = _drain_until_quiet(subscriber)
        bound = 2 * hwm + -(-_kernel_socket_buffer_bytes() // payload_bytes) + 1
        assert 0 < len(received) <= bound < published // 10
        assert received == sorted(received) and len(set(received)) == len(received)
        publisher.send([b"result/s", payload(published + 1)])
        assert _drain_until_quiet(subscriber) == [published + 1]
    finally:
        subscriber.close()
        publisher.close()
        context.term()


def test_closing_never_waits_for_unsent_messages(tmp_path):
    context = zmq.Context()
    publisher = Publisher(context, "tcp://127.0.0.1:0", hwm=1000)
    subscriber = make_subscriber(context, publisher.endpoint, [b""])
    assert publisher.wait_for_subscribers(b"x", 1, timeout=10)
    subscriber.close()
    for _ in range(100):
        publisher.send([b"x", b"y" * 10_000])
    started = time.monotonic()
    publisher.close()
    context.term()  # with a non-zero linger this would wait for the dead peer
    assert time.monotonic() - started < 5
