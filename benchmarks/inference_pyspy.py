"""Sampling profile of the live inference process (py-spy), bundled model, default back-end.

The live pipeline replays the gastric-ulcer clip in a loop (lossless, batch `--batch`, 1 thread) while
py-spy samples the inference process for `--seconds`; the samples are folded into each function's
inclusive share of the process's active time. What `benchmarks/inference_profile.py` times stage by
stage in isolation, seen here inside the running pipeline (with the capture process, ZeroMQ and the
subscriber beside it).

    pip install py-spy   # a profiler binary, not a project dependency
    .venv/bin/python benchmarks/inference_pyspy.py [--batch 1] [--seconds 30]
Results: benchmarks/results/inference_pyspy-<cpu>-torch<ver>.json / .md
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, write_results  # noqa: E402

from stream_monitor.config import MonitorConfig  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.pipeline.supervisor import Monitor  # noqa: E402
from stream_monitor.transport.collector import ResultCollector  # noqa: E402

CLIP = SHARED_DATA / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"
WATCH = ["InferenceLoop.process", "score_isolating", "EngineScorer.score_uint8", "InferRequest.infer",
         "_data_dispatch", "OpenVinoBackend._finish", "NeroHead.forward", "EngineScorer.finish",
         "InferenceLoop._publish_one", "result_message", "encode", "Publisher.send", "Batcher.next_batch",
         "FrameRing.read", "InferenceLoop.housekeeping", "BaseServer.serve_forever"]


def inclusive_shares(raw: str) -> tuple[int, dict[str, float]]:
    """py-spy raw output (one 'frame;frame;… count' line per stack) → samples, {function: share}."""
    total, inclusive = 0, collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        names = {re.sub(r" \(.*$", "", frame) for frame in stack.split(";")}
        for name in names:
            inclusive[name] += int(count)
    return total, {name: n / total for name, n in inclusive.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sm-pyspy-"))
    config = MonitorConfig.model_validate({
        "instance": f"pyspy{int(time.time()) % 10**6}",
        "streams": [{"name": "clip", "source": {"kind": "file", "path": str(CLIP), "pace": "max", "lossless": True,
                                                 "loop": True}}],
        "model": {"threads": 1, "backend": "auto", "precision": "fp32"},
        "pipeline": {"max_batch": args.batch, "frames_per_stream": args.batch, "ring_slots": max(16, 4 * args.batch),
                     "max_frame_size": [640, 480]},
        "transport": {"results": f"ipc://{work}/results.sock", "frames": None},
        "metrics": {"port": 0}, "audit": {"path": str(work / "alerts.jsonl")}, "logging": {"level": "WARNING"}})
    received = [0]
    collector = ResultCollector(lambda _: received.__setitem__(0, received[0] + 1))
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
    raw_path = work / "pyspy.txt"
    before = load()
    try:
        monitor.start()
        time.sleep(3)  # past the first frames
        subprocess.run([args.py_spy, "record", "--pid", str(monitor.inference.pid), "--duration", str(args.seconds),
                        "--rate", "100", "--nonblocking", "--format", "raw", "--output", str(raw_path)],
                       check=True, capture_output=True)
    finally:
        monitor.stop()
        collector.stop()
    total, shares = inclusive_shares(raw_path.read_text())
    top = sorted(shares.items(), key=lambda kv: -kv[1])
    payload = {"batch": args.batch, "seconds": args.seconds, "samples": total, "results_received": received[0],
               "watched": {name: shares.get(name, 0.0) for name in WATCH}, "top": top[:60], "load_before": before,
               "load_after": load()}
    lines = [f"py-spy, {total} samples at 100 Hz over {args.seconds} s of the inference process (active threads only), "
             f"batch {args.batch}, the bundled model on the default back-end, 1 thread; {received[0]} results received. "
             f"Load before/after: {before['loadavg_1_5_15']} / {payload['load_after']['loadavg_1_5_15']} on "
             f"{before['cores']} cores.", "", "| function | inclusive share of samples |", "|---|---|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in payload["watched"].items()]
    lines += ["", "Inclusive shares: a function's share counts the time in everything it calls.", ""]
    print("\n".join(lines))
    print(write_results(f"inference_pyspy-b{args.batch}", cpu_name(), payload, "\n".join(lines)))


if __name__ == "__main__":
    main()
