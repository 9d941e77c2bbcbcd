"""How long `stream-monitor run` takes to stop on a signal, mid-stream with an alert open.

    python benchmarks/stop_time.py [--repeat 5]

For each way a service manager or operator stops it — SIGTERM to the main process (docker stop,
Kubernetes), SIGTERM to the process group (systemd), SIGINT to the group (Ctrl-C) — the monitor replays a
real clip in a loop with the bundled model, an alert is opened, and the time from the signal to the exit
of the last process of the group is measured; then the same signals while the model is still loading. tests/commands/test_shutdown.py asserts a looser bound on a
loaded machine; this is the figure for docs/architecture.md's fault table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, write_results  # noqa: E402

from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.pipeline.audit import read_audit_log  # noqa: E402

CLIP = SHARED_DATA / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"
HOW = ("sigterm-main", "sigterm-group", "sigint-group")
# The same signals while the model is still loading (after /healthz answers "loading model").
STARTUP_HOW = tuple(f"{how} while loading" for how in HOW)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return __import__("json").loads(response.read())
    except (urllib.error.URLError, ConnectionError, ValueError):
        return None
    except urllib.error.HTTPError as error:  # 503 while not ready still carries the state
        return __import__("json").loads(error.read())


def stop_once(how: str, workdir: Path) -> float:
    port, audit, config = _free_port(), workdir / "alerts.jsonl", workdir / "monitor.yaml"
    audit.unlink(missing_ok=True)
    config.write_text(f"""\
version: 1
instance: stopbench{os.getpid()}
streams:
  - name: endo
    source: {{kind: file, path: {CLIP}, loop: true}}
model: {{threads: 1}}
alerts: {{threshold: 1.0e-9, enter_n: 1, enter_m: 1}}
transport: {{results: "ipc://{workdir}/results.sock", frames: null}}
metrics: {{port: {port}}}
audit: {{path: {audit}}}
""")
    monitor = subprocess.Popen([sys.executable, "-m", "stream_monitor.cli", "run", "--config", str(config), "--no-reload"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        if how.endswith(" while loading"):
            how = how.removesuffix(" while loading")
            while (_health(f"http://127.0.0.1:{port}/healthz") or {}).get("state") != "loading model":
                if monitor.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the monitor never reported loading:\n{monitor.stdout.read()}")
                time.sleep(0.05)
        else:
            while not (_ready(f"http://127.0.0.1:{port}/readyz") and audit.exists()
                       and any(r["event"] == "alert_start" for r in read_audit_log(audit))):
                if monitor.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the monitor did not start scoring:\n{monitor.stdout.read()}")
                time.sleep(0.2)
            time.sleep(1.0)  # mid-stream
        sent = time.monotonic()
        if how == "sigterm-main":
            monitor.send_signal(signal.SIGTERM)
        else:
            os.killpg(monitor.pid, signal.SIGTERM if how == "sigterm-group" else signal.SIGINT)
        monitor.communicate(timeout=60)
        while _group_alive(monitor.pid) and time.monotonic() - sent < 60:
            time.sleep(0.01)
        return time.monotonic() - sent
    finally:
        if _group_alive(monitor.pid):
            os.killpg(monitor.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not CLIP.is_file():
        raise SystemExit(f"{CLIP} not found: the benchmark replays it")
    before = load()
    times: dict[str, list[float]] = {how: [] for how in HOW + STARTUP_HOW}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for how in HOW + STARTUP_HOW:
                times[how].append(round(stop_once(how, Path(tmp)), 3))
                print(how, times[how][-1], flush=True)
    after = load()
    rows = {how: {"median_s": float(np.median(v)), "max_s": float(np.max(v)), "runs_s": v} for how, v in times.items()}
    lines = [f"Load average (1, 5, 15 min) before {before['loadavg_1_5_15']}, after {after['loadavg_1_5_15']} "
             f"on {before['cores']} cores.", "", "| signal | median | max | runs |", "|---|---|---|---|"]
    lines += [f"| {how} | {r['median_s']:.2f} s | {r['max_s']:.2f} s | {', '.join(f'{x:.2f}' for x in r['runs_s'])} |"
              for how, r in rows.items()]
    lines += ["", "From the signal to the exit of the last process of the group; `stream-monitor run` replaying "
              "a real clip with the bundled model, an alert open. Command: `python benchmarks/stop_time.py`."]
    path = write_results("stop_time", cpu_name(), {"rows": rows, "load_before": before, "load_after": after,
                                                  "repeat": args.repeat}, "\n".join(lines) + "\n")
    print(path)


if __name__ == "__main__":
    main()
