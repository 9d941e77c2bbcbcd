"""Where the inference process's time per batch goes, stage by stage, on the live configuration.

The live pipeline reached 0.75-0.77 of its engine alone (benchmarks/results/pipeline_throughput-*).
This times, in one process and interleaved round by round (the machine is shared), each piece of work
`InferenceLoop.process` does per batch, with the bundled model on the default back-end (auto → OpenVINO
on the CPU, fp32, 1 thread) and real frames of the gastric-ulcer clip already resized by capture:

- stacking the ring's model-sized RGB frames, and normalising them on the host (`normalize_uint8`);
- the engine: its compiled graph alone; `score_batch` (graph + NERO kernels + explanation) on
  normalised frames; `score_uint8` on the ring's bytes (normalisation inside the graph);
- per frame after scoring: the alert tracker, the result message built and msgpack-encoded, and the
  metric updates `_publish_one` does.

Reported in CPU time (time.process_time, insensitive to preemption by other processes) and best wall
time, per batch and as a share of the host-normalised path.

    .venv/bin/python benchmarks/inference_profile.py [--batches 1,4] [--rounds 30]
Results: benchmarks/results/inference_profile-<cpu>-torch<ver>.json / .md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, timeit, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.config import AlertConfig  # noqa: E402
from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.observability import Metrics  # noqa: E402
from stream_monitor.pipeline.alerts import AlertTracker  # noqa: E402
from stream_monitor.preprocess import normalize_uint8, to_model_rgb  # noqa: E402
from stream_monitor.transport.messages import result_message  # noqa: E402
from stream_monitor.transport.schema import encode  # noqa: E402

CLIP = SHARED_DATA / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"


def clip_frames(n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < n:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(to_model_rgb(frame))
    capture.release()
    return frames


def cpu_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def publish_work(scored, metrics: Metrics, tracker: AlertTracker, class_names: list[str]):
    """What `InferenceLoop._publish_one` does per frame after scoring, minus the socket send."""
    def run() -> None:
        for i in range(len(scored)):
            score = float(scored.score[i])
            state, _ = tracker.update(score, i, time.time())
            message = result_message(
                stream="endo", seq=i, prev_seq=i - 1, t_capture=time.time(), t_result=time.time(), latency_s=0.01,
                batch_size=len(scored), probs=scored.probs[i], class_names=class_names, score=score,
                smoothed_score=state.smoothed, threshold=tracker.threshold, distance=scored.distance[i],
                bias_term=scored.bias_term[i], rho=scored.rho[i], alert=state.to_message(),
                top_neurons=scored.top_neurons[i], deviations=scored.deviations[i], heatmap=scored.heatmaps[i],
                frame_size=(520, 462), box=(0, 462, 0, 520))
            encode(message)
            metrics.messages_published.labels("result").inc()
            metrics.frames_processed.labels("endo").inc()
            metrics.latency.labels("endo").observe(0.01)
            metrics.score_ratio.labels("endo").observe(score / tracker.threshold)
            metrics.last_result.labels("endo").set(time.time())
            metrics.alert_active.labels("endo").set(1 if state.active else 0)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    scorer = create_scorer(model, detector, "auto", device="cpu",
                           options=EngineOptions(precision="fp32", threads=args.threads, max_batch=max(args.batches)))
    frames = clip_frames(max(args.batches))
    metrics = Metrics(CollectorRegistry())
    metrics.init_stream("endo")
    tracker = AlertTracker("endo", AlertConfig(), detector.threshold)
    before = load()
    rows = {}
    for batch in args.batches:
        rgb_list = frames[:batch]
        rgb = np.stack(rgb_list)
        images = normalize_uint8(rgb)
        scored = scorer.score_batch(images)
        stages = {
            "stack ring frames": lambda: np.stack(rgb_list),
            "normalise on the host": lambda: normalize_uint8(rgb),
            "graph alone (engine.run)": lambda: scorer.engine.run(images),
            "score_batch (normalised input)": lambda: scorer.score_batch(images),
            "score_uint8 (ring bytes)": lambda: scorer.score_uint8(rgb),
            "publish per frame (alerts, message, msgpack, metrics)": publish_work(scored, metrics, tracker,
                                                                                   detector.class_names or ["a", "b", "c"]),
        }
        cpu = {k: [] for k in stages}
        wall = {k: [] for k in stages}
        for _ in range(args.rounds):
            for name, fn in stages.items():
                cpu[name].append(cpu_seconds(fn, 3))
                wall[name].append(timeit(fn, repeat=3, warmup=0)["best_s"])
        rows[batch] = {name: {"cpu_median_s": float(np.median(cpu[name])), "wall_best_s": float(np.min(wall[name]))}
                       for name in stages}
        print(batch, {k: round(v["cpu_median_s"] * 1e3, 3) for k, v in rows[batch].items()}, flush=True)
    after = load()
    lines = [f"Bundled EfficientNet-Lite0 + nero_default.npz, {scorer.engine.describe()}; real frames of "
             f"{CLIP.name} resized by capture; {args.rounds} interleaved rounds. Load before/after: "
             f"{before['loadavg_1_5_15']} / {after['loadavg_1_5_15']} on {before['cores']} cores.", ""]
    for batch, stages in rows.items():
        old_path = (stages["stack ring frames"]["cpu_median_s"] + stages["normalise on the host"]["cpu_median_s"]
                    + stages["score_batch (normalised input)"]["cpu_median_s"]
                    + stages["publish per frame (alerts, message, msgpack, metrics)"]["cpu_median_s"])
        lines += [f"## Batch {batch}", "", "| stage | CPU ms per batch (median) | wall ms (best) | share of the host-normalised "
                  "path |", "|---|---|---|---|"]
        for name, v in stages.items():
            lines.append(f"| {name} | {v['cpu_median_s'] * 1e3:.3f} | {v['wall_best_s'] * 1e3:.3f} | "
                         f"{v['cpu_median_s'] / old_path:.1%} |")
        lines.append("")
    payload = {"threads": args.threads, "engine": scorer.engine.describe(), "stages": rows, "rounds": args.rounds,
               "load_before": before, "load_after": after}
    print("\n".join(lines))
    print(write_results("inference_profile", cpu_name(), payload, "\n".join(lines)))


if __name__ == "__main__":
    main()
