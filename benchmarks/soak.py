"""Load and soak (issue 5, item 9): many file streams at camera rate for minutes, on this CPU.

    python benchmarks/soak.py                               # 16 streams × 30 frames/s for 10 minutes
    python benchmarks/soak.py --duration 60 --warmup 10     # the 1-minute check of the script itself

Each stream replays the real 30 fps gastric-ulcer clip (520 × 462) in a loop at 30 frames/s through the
whole live path: 16 capture processes (decode, scope crop, resize) → shared-memory rings → batcher →
engine → alerts → msgpack over ZeroMQ to a recording subscriber, with /metrics. A 2-core CPU cannot
score 480 frames/s, so the monitor skips frames the live way (drop-oldest: each batch takes the newest
frame of each stream, older ones are counted as dropped). What is checked:

1. Memory: resident memory (RSS) of the monitor's processes (inference + capture processes), sampled
   every few seconds; the median of the minute after warm-up against the median of the last minute.
   Target: within ±5 %.
2. Latency: capture → result of every scored frame (from the result messages), p50 / p99 overall and
   per minute, so that growth over the run shows. Target: bounded (the last minute's p99 is not above
   the first minute's by more than a frame period or two).
3. Accounting: the captures are stopped first, the inference process scores what the rings still
   hold, then per stream captured = processed + dropped (all reasons) from /metrics, and processed =
   result messages received.

Results: benchmarks/results/soak-<streams>x<fps>fps-<duration>s-<cpu>-torch<ver>.json / .md, with the
hardware, versions and the machine's load average sampled through the run (this machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.config import MonitorConfig  # noqa: E402
from stream_monitor.demo.summary import metric, scrape  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.observability.metrics import DROP_REASONS  # noqa: E402
from stream_monitor.pipeline.supervisor import Monitor  # noqa: E402
from stream_monitor.transport.collector import ResultCollector  # noqa: E402

CLIP = SHARED_DATA / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Latencies:
    """Per-stream capture → result latencies with their result times, filled by the collector thread."""

    def __init__(self) -> None:
        self.by_stream: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.other = 0

    def add(self, message: dict) -> None:
        if message["type"] == "result":
            self.by_stream[message["stream"]].append((message["t_result"], message["latency_s"]))
        else:
            self.other += 1


def sample_memory(monitor: Monitor, stop: threading.Event, every_s: float, samples: list) -> None:
    while not stop.wait(every_s):
        pids = {"inference": monitor.inference.pid, **{f"capture:{s}": p.pid for s, p in monitor.captures.items()}}
        sizes = {name: rss_bytes(pid) for name, pid in pids.items() if pid}
        samples.append({"t": time.monotonic(), "total": sum(sizes.values()), "inference": sizes.get("inference", 0),
                        "captures": sum(v for k, v in sizes.items() if k.startswith("capture:")),
                        "loadavg_1": os.getloadavg()[0]})


def window_median(samples: list, key: str, start: float, stop: float) -> float:
    values = [s[key] for s in samples if start <= s["t"] < stop]
    return float(np.median(values)) if values else float("nan")


def accounting(metrics_url: str, streams: list[str], timeout_s: float) -> tuple[dict, bool]:
    """Per stream captured / processed / dropped from /metrics once the rings are drained: the capture
    processes have exited (their ring counters are final), and two scrapes a second apart — four of the
    loop's 0.25 s counter syncs — agree and balance. One balanced scrape is not enough: the captured
    counter is synced from the ring headers periodically, processed at once."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        samples = scrape(urllib.request.urlopen(metrics_url + "/metrics", timeout=10).read().decode())
        rows = {}
        for s in streams:
            dropped = {f"{stage}/{reason}": metric(samples, "stream_monitor_frames_dropped_total", stream=s,
                                                   stage=stage, reason=reason) for stage, reason in DROP_REASONS}
            rows[s] = {"captured": metric(samples, "stream_monitor_frames_captured_total", stream=s),
                       "processed": metric(samples, "stream_monitor_frames_processed_total", stream=s),
                       "dropped": sum(dropped.values()), "dropped_by_reason": {k: v for k, v in dropped.items() if v}}
        balanced = all(r["captured"] == r["processed"] + r["dropped"] for r in rows.values())
        if (balanced and rows == previous) or time.monotonic() > deadline:
            return rows, balanced and rows == previous
        previous = rows
        time.sleep(1.0)


def run(args: argparse.Namespace) -> dict:
    names = [f"s{i:02d}" for i in range(args.streams)]
    latencies = Latencies()
    memory: list[dict] = []
    loads = [load()]
    with tempfile.TemporaryDirectory(prefix="sm-soak-") as tmp:
        work = Path(tmp)
        config = MonitorConfig.model_validate({
            "instance": f"soak{os.getpid()}",
            "streams": [{"name": n, "source": {"kind": "file", "path": str(CLIP), "pace": args.fps, "loop": True}}
                        for n in names],
            "model": {"checkpoint": str(args.model), "detector": str(args.detector), "threads": args.threads},
            "pipeline": {"max_batch": args.max_batch, "ring_slots": 4, "max_frame_size": [640, 480],
                         "frame_skipping": not args.no_frame_skipping},
            "transport": {"results": f"ipc://{work}/results.sock", "frames": None, "send_hwm": 1000},
            "metrics": {"port": 0, "frame_rate_hz": args.fps},
            "audit": {"path": str(work / "alerts.jsonl")}, "logging": {"level": "WARNING"},
        })
        collector = ResultCollector(latencies.add)
        monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
        stop_sampling = threading.Event()
        try:
            endpoints = monitor.start()
            started = time.monotonic()
            sampler = threading.Thread(target=sample_memory, args=(monitor, stop_sampling, args.sample_s, memory),
                                       daemon=True)
            sampler.start()
            minute = started
            while time.monotonic() - started < args.duration:
                monitor.wait(min(60.0, args.duration - (time.monotonic() - started)))
                if time.monotonic() - minute >= 59:
                    loads.append(load())
                    minute = time.monotonic()
                    print(f"{time.monotonic() - started:.0f} s: {sum(len(v) for v in latencies.by_stream.values())} "
                          f"results, RSS {memory[-1]['total'] / 2**20:.0f} MiB, load {loads[-1]['loadavg_1_5_15']}",
                          flush=True)
            ended = time.monotonic()
            stop_sampling.set()
            sampler.join()
            monitor.stop_captures()
            rows, balanced = accounting(endpoints.metrics_url, names, timeout_s=60)
            loads.append(load())
            time.sleep(1.0)  # the last results reach the collector
        finally:
            stop_sampling.set()
            codes = monitor.stop()
            collector.stop()
    return summarise(args, names, latencies, memory, loads, rows, balanced, codes, started, ended, collector.invalid)


def summarise(args, names, latencies, memory, loads, rows, balanced, codes, started, ended, invalid) -> dict:
    window = args.window
    first = (started + args.warmup, started + args.warmup + window)
    last = (ended - window, ended)
    mem = {key: {"start_mib": window_median(memory, key, *first) / 2**20, "end_mib": window_median(memory, key, *last) / 2**20}
           for key in ("total", "inference", "captures")}
    for value in mem.values():
        value["drift_pct"] = 100 * (value["end_mib"] / value["start_mib"] - 1)
    all_lat = np.array([lat for v in latencies.by_stream.values() for _, lat in v])
    lat_times = np.array([t for v in latencies.by_stream.values() for t, _ in v])
    wall0 = time.time() - (time.monotonic() - started)  # unix time of `started`
    per_minute = []
    for m in range(int(np.ceil((ended - started) / 60))):
        sel = all_lat[(lat_times >= wall0 + 60 * m) & (lat_times < wall0 + 60 * (m + 1))]
        if len(sel):
            per_minute.append({"minute": m + 1, "results": int(len(sel)), "p50_ms": 1000 * float(np.percentile(sel, 50)),
                               "p99_ms": 1000 * float(np.percentile(sel, 99)), "max_ms": 1000 * float(sel.max())})
    for name in names:
        rows[name]["results_received"] = len(latencies.by_stream.get(name, []))
        rows[name]["all_results_received"] = rows[name]["results_received"] == rows[name]["processed"]
        lat = np.array([x for _, x in latencies.by_stream.get(name, [])])
        rows[name]["p50_ms"] = 1000 * float(np.percentile(lat, 50)) if len(lat) else None
        rows[name]["p99_ms"] = 1000 * float(np.percentile(lat, 99)) if len(lat) else None
    return {
        "streams": args.streams, "fps_per_stream": args.fps, "duration_s": ended - started, "warmup_s": args.warmup,
        "window_s": window, "threads": args.threads, "max_batch": args.max_batch, "clip": CLIP.name,
        "memory": mem, "memory_samples": [{**s, "t": s["t"] - started} for s in memory],
        "latency": {"p50_ms": 1000 * float(np.percentile(all_lat, 50)), "p99_ms": 1000 * float(np.percentile(all_lat, 99)),
                    "max_ms": 1000 * float(all_lat.max()), "results": int(len(all_lat)), "per_minute": per_minute},
        "accounting_balanced": balanced, "per_stream": rows, "exit_codes": codes, "invalid_messages": invalid,
        "load": loads,
    }


def markdown(r: dict) -> str:
    mem, lat = r["memory"], r["latency"]
    lines = [f"{r['streams']} file streams × {r['fps_per_stream']} frames/s ({r['clip']}, looped) for "
             f"{r['duration_s']:.0f} s, live mode (drop-oldest), max batch {r['max_batch']}, {r['threads']} torch "
             f"thread(s).", "",
             "| memory (RSS) | after warm-up (median of the window) | last window | drift |", "|---|---|---|---|"]
    for key in ("total", "inference", "captures"):
        m = mem[key]
        lines.append(f"| {key} | {m['start_mib']:.1f} MiB | {m['end_mib']:.1f} MiB | {m['drift_pct']:+.2f} % |")
    lines += ["", f"Windows: {r['window_s']:.0f} s from {r['warmup_s']:.0f} s after start, and the last "
              f"{r['window_s']:.0f} s. Target ±5 %.", "",
              f"Capture → result latency over {lat['results']} results: p50 {lat['p50_ms']:.0f} ms, p99 "
              f"{lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms.", "",
              "| minute | results | p50 | p99 | max |", "|---|---|---|---|---|"]
    lines += [f"| {m['minute']} | {m['results']} | {m['p50_ms']:.0f} ms | {m['p99_ms']:.0f} ms | {m['max_ms']:.0f} ms |"
              for m in lat["per_minute"]]
    received = all(row["all_results_received"] for row in r["per_stream"].values())
    rates = [row["captured"] / r["duration_s"] for row in r["per_stream"].values()]
    scored = [row["processed"] / r["duration_s"] for row in r["per_stream"].values()]
    lines += ["", f"Read from the sources: {np.mean(rates):.1f} frames/s per stream on average (min {min(rates):.1f}; "
              f"paced at {r['fps_per_stream']:g}: a capture process that falls behind its schedule restarts it rather "
              f"than bursting); scored: {np.mean(scored):.2f} frames/s per stream, {sum(scored):.1f} in all."]
    lines += ["", f"Accounting (captures stopped, rings drained): captured = processed + dropped for every stream: "
              f"**{r['accounting_balanced']}**; every processed frame's result received by the subscriber: "
              f"**{received}**.", "",
              "| stream | captured | processed | dropped | results received | p50 | p99 |", "|---|---|---|---|---|---|---|"]
    for name, row in r["per_stream"].items():
        lines.append(f"| {name} | {row['captured']:.0f} | {row['processed']:.0f} | {row['dropped']:.0f} | "
                     f"{row['results_received']} | {row['p50_ms']:.0f} ms | {row['p99_ms']:.0f} ms |")
    lines += ["", f"Exit codes: {r['exit_codes']}. Invalid messages at the subscriber: {r['invalid_messages']}.", "",
              "Load average (1, 5, 15 min) through the run (the machine is shared with other work): "
              + "; ".join(str([round(x, 2) for x in entry["loadavg_1_5_15"]]) for entry in r["load"]) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--fps", type=float, default=30.0, help="replay rate of each stream, frames/s")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the first memory window")
    parser.add_argument("--window", type=float, default=None, help="memory window, s (default: min(60, duration/5))")
    parser.add_argument("--sample-s", type=float, default=2.0, help="memory sampling interval, s")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the inference process")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--no-frame-skipping", action="store_true",
                        help="capture processes convert every frame (ring drop-oldest only)")
    parser.add_argument("--model", type=Path, default=bundled.MODEL)
    parser.add_argument("--detector", type=Path, default=bundled.DETECTOR)
    args = parser.parse_args()
    args.window = args.window or min(60.0, args.duration / 5)
    if not CLIP.is_file():
        sys.exit(f"soak: the clip {CLIP} is not there (shared data missing)")
    result = run(args)
    text = markdown(result)
    print(text)
    name = f"soak-{args.streams}x{args.fps:g}fps-{args.duration:.0f}s"
    print("wrote", write_results(name, cpu_name(), result, text))


if __name__ == "__main__":
    main()
