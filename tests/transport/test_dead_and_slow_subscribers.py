"""A subscriber dies or stalls (issue 5, item 5): the publisher is unaffected (high-water marks: it
drops for that subscriber instead of blocking or queueing without bound), and the subscriber counts the
results it missed from `prev_seq`.

Real processes: two `ResultCollector` subscribers run as separate OS processes on a TCP port; one is
killed with SIGKILL, the other frozen with SIGSTOP (a viewer whose machine is swapping) while the
publisher sends thousands of results, then resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import zmq

from stream_monitor.transport.gaps import SequenceGaps
from stream_monitor.transport.messages import result_message
from stream_monitor.transport.schema import encode, topic
from stream_monitor.transport.sockets import Publisher

SUBSCRIBER = """
import json, sys, threading
from stream_monitor.transport.collector import ResultCollector
seqs, done = [], threading.Event()
def on_message(message):
    if message["type"] == "result":
        (done.set() if message["stream"] == "end" else seqs.append(message["seq"]))
collector = ResultCollector(on_message, hwm=16)
collector.endpoint = sys.argv[1]
collector.start()
print("ready", flush=True)
done.wait(120)
collector.stop()
print(json.dumps({"seqs": seqs, "gaps": collector.sequence.gaps, "invalid": collector.invalid}), flush=True)
"""


def _result(stream: str, seq: int) -> bytes:
    return encode(result_message(
        stream=stream, seq=seq, prev_seq=seq - 1, t_capture=1.0, t_result=1.0, latency_s=0.0, batch_size=1,
        probs=np.array([1.0]), class_names=["a"], score=0.0, smoothed_score=0.0, threshold=1.0, distance=0.0,
        bias_term=0.0, rho=1.0, alert={"active": False, "id": None, "since": None, "over": 0, "window": 1},
        top_neurons=np.array([0]), deviations=np.array([0.0]), heatmap=None, frame_size=(1, 1), box=(0, 1, 0, 1)))


def test_gaps_are_counted_from_prev_seq_not_from_frames_the_monitor_skipped():
    gaps = SequenceGaps()
    for seq, prev in ((1, 0), (2, 1), (5, 2), (9, 7), (10, 9)):  # 3, 4 skipped upstream; 7 lost on the way
        gaps.add({"stream": "endo", "seq": seq, "prev_seq": prev})
    gaps.add({"stream": "other", "seq": 4, "prev_seq": 3})  # a first result is never a gap
    assert (gaps.gaps, gaps.received) == (1, 6)


def test_a_killed_and_a_frozen_subscriber_do_not_affect_the_publisher(free_port):
    """Sequence: 200 results reach both subscribers; one is killed, the other frozen; 5000 results are
    published as fast as possible — every send returns at once (a publisher that waited for a frozen
    subscriber would never finish); the frozen one resumes and 200 more results follow, paced. It then
    reports: it missed results (a queue of 16 + 16 cannot hold 5000), every received seq is increasing,
    and its gap count equals the number of discontinuities in what it received."""
    context = zmq.Context()
    publisher = Publisher(context, f"tcp://127.0.0.1:{free_port()}", hwm=16)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subscribers = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, publisher.endpoint], stdout=subprocess.PIPE,
                                    text=True, env=env) for _ in range(2)]
    killed, frozen = subscribers
    seq = 0

    def publish(n: int, pause_s: float = 0.0) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            publisher.send([topic("result", "endo"), _result("endo", seq)])
            if pause_s:
                time.sleep(pause_s)

    try:
        for process in subscribers:
            assert process.stdout.readline().strip() == "ready"
        assert publisher.wait_for_subscribers(b"result/", 2, timeout=30)
        publish(200, pause_s=0.002)
        killed.send_signal(signal.SIGKILL)
        frozen.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        publish(5000)
        burst_s = time.monotonic() - started
        frozen.send_signal(signal.SIGCONT)
        publish(200, pause_s=0.005)
        for end in range(1, 50):  # the end marker, repeated: it goes through the same HWM as everything else
            publisher.send([topic("result", "end"), _result("end", end)])
            time.sleep(0.02)
        out, _ = frozen.communicate(timeout=60)
    finally:
        for process in subscribers:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.communicate()
        publisher.close()
        context.term()
    assert killed.returncode == -signal.SIGKILL and frozen.returncode == 0
    assert publisher.sent >= 5400 and burst_s < 10  # milliseconds in practice; 10 s = "did not block"
    report = json.loads(out.strip().splitlines()[-1])
    received = report["seqs"]
    assert received[:200] == list(range(1, 201))  # before the stall: everything
    assert all(b > a for a, b in zip(received, received[1:]))
    assert 200 < len(received) < seq and received[-1] > 5200  # missed most of the burst, got the tail
    discontinuities = sum(1 for a, b in zip(received, received[1:]) if b != a + 1)
    assert report["gaps"] == discontinuities >= 1 and report["invalid"] == 0
