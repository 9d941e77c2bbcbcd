"""A real monitor (`stream-monitor run`, its own process group) scraped by a real Prometheus server on
loopback, and a ZeroMQ subscriber that records every result the monitor publishes — the independent
account of "what the monitor did" that Prometheus's answers are checked against."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import zmq

from stream_monitor.transport.schema import decode

CLI = [sys.executable, "-m", "stream_monitor.cli"]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening (yet)
        return 0, ""


def wait_for(predicate, timeout_s: float, what: str):
    """Poll until `predicate()` is truthy (generous timeouts: the CI machine has 2 loaded cores)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class ResultRecorder:
    """SUB socket on the monitor's results endpoint; keeps (seq, prev_seq, t_result, latency_s, ratio)."""

    def __init__(self, endpoint: str, stream: str) -> None:
        self.results: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)  # never the reason a result is missing
        self._socket.setsockopt(zmq.SUBSCRIBE, f"result/{stream}".encode())
        self._socket.connect(endpoint)
        self._stream = stream
        self._thread = threading.Thread(target=self._run, name="result-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            _, header = self._socket.recv_multipart()
            message = decode(header)
            if message["stream"] != self._stream:
                continue
            with self._lock:
                self.results.append({"seq": message["seq"], "prev_seq": message["prev_seq"],
                                     "t_result": message["t_result"], "latency_s": message["latency_s"],
                                     "ratio": message["score"] / message["threshold"]})

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.results)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._socket.close(linger=0)
        self._context.term()


class Prometheus:
    """`prometheus` on 127.0.0.1:`port` with `config`, its TSDB under `folder`."""

    def __init__(self, binary: str, config: Path, folder: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / "prometheus.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._log_file, stderr=subprocess.STDOUT)

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """Instant query through the HTTP API; returns the result list (vector or matrix)."""
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        status, body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        # while starting, Prometheus answers 503 in plain text: a failed assertion ("not answering yet") to
        # callers that wait, not a JSON error
        assert status == 200, f"{promql}: {status} {body[:500]}"
        payload = json.loads(body) if body else {}
        assert payload.get("status") == "success", f"{promql}: {status} {body[:500]}"
        return payload["data"]["result"]

    def api(self, path: str) -> dict:
        status, body = http_get(f"{self.url}/api/v1/{path}")
        assert status == 200, f"{path}: {status} {body[:500]}"
        return json.loads(body)["data"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log_file.close()


class MonitorProcess:
    """`stream-monitor run --config config` in its own session, stopped with SIGTERM as systemd does."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log_file = log.open("w")
        self.log = log
        self.process = subprocess.Popen([*CLI, "run", "--config", str(config)], stdout=self._log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log_file.close()
        return self.process.returncode

    def group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
            return True
        except ProcessLookupError:
            return False
