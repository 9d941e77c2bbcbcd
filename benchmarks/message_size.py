"""Size of a result message on the wire: msgpack bytes of real scored frames (docs/message-schema.md).

    python benchmarks/message_size.py [--frames 32]

The first `--frames` HyperKvasir ID test images (committed split) are scored by the bundled
EfficientNet-Lite0 and its default detector with the reference `Scorer` at the live defaults (top 5
neurons, heatmap on), and each row is packed the way the inference loop packs it
(`transport.messages.result_message` → `transport.schema.encode`), with and without the heatmap. Stream
name, class names and frame size are the ones a 1920 × 1080 capture card stream "endo1" would carry.
The optional `drift` field is not included. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.config import AlertConfig  # noqa: E402
from stream_monitor.data.images import read_image  # noqa: E402
from stream_monitor.data.split import load_split  # noqa: E402
from stream_monitor.engine import Scorer  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT  # noqa: E402
from stream_monitor.models.registry import load_classifier, sha256_file  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.pipeline.alerts import AlertTracker  # noqa: E402
from stream_monitor.preprocess import normalize_uint8, to_model_rgb  # noqa: E402
from stream_monitor.transport.messages import result_message  # noqa: E402
from stream_monitor.transport.schema import encode  # noqa: E402


def packed_sizes(scored, threshold: float, class_names: list[str], with_heatmap: bool) -> list[int]:
    """msgpack bytes of each scored row, built as `InferenceLoop._result_message` builds it."""
    tracker = AlertTracker("endo1", AlertConfig(), threshold)
    sizes = []
    for i in range(len(scored.score)):
        state, _ = tracker.update(float(scored.score[i]), i, time.time())
        now = time.time()
        message = result_message(
            stream="endo1", seq=i, prev_seq=i - 1, t_capture=now - 0.05, t_result=now, latency_s=0.05, batch_size=1,
            probs=scored.probs[i], class_names=class_names, score=float(scored.score[i]),
            smoothed_score=state.smoothed, threshold=threshold, distance=scored.distance[i],
            bias_term=scored.bias_term[i], rho=scored.rho[i], alert=state.to_message(),
            top_neurons=scored.top_neurons[i], deviations=scored.deviations[i],
            heatmap=scored.heatmaps[i] if with_heatmap else None, frame_size=(1920, 1080), box=(0, 1080, 330, 1590))
        sizes.append(len(encode(message)))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias, model_sha256=sha256_file(bundled.MODEL))
    paths = load_split(DEFAULT_SPLIT).paths("test")[: args.frames]
    images = normalize_uint8(np.stack([to_model_rgb(read_image(p)) for p in paths]))
    scored = Scorer(model, detector).score_batch(images)
    class_names = list(detector.class_names or [])
    with_heat = packed_sizes(scored, detector.threshold, class_names, True)
    without = packed_sizes(scored, detector.threshold, class_names, False)
    heat_shape = tuple(int(v) for v in scored.heatmaps[0].shape)
    # a batch with an alerting frame carries the scene map's 28 × 28 grid (explanations/assets.refine_batch)
    scene_grid = dataclasses.replace(scored, heatmaps=np.stack([cv2.resize(h, (28, 28)) for h in scored.heatmaps]))
    with_scene = packed_sizes(scene_grid, detector.threshold, class_names, True)
    rows = {"with heatmap": with_heat, "with a 28 × 28 map (alerting batches, scene map)": with_scene,
            "without heatmap": without}
    lines = [f"{len(paths)} HyperKvasir ID test images, bundled EfficientNet-Lite0 + default detector, reference "
             f"Scorer (top 5 neurons); heatmap {heat_shape[0]} × {heat_shape[1]}; classes {class_names}.", "",
             "| result message | median bytes | min | max |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {int(np.median(s))} | {min(s)} | {max(s)} |" for name, s in rows.items()]
    payload = {"frames": len(paths), "heatmap_shape": heat_shape, "class_names": class_names,
               "bytes": {name: {"median": float(np.median(s)), "min": min(s), "max": max(s)} for name, s in rows.items()}}
    print("wrote", write_results("message_size", cpu_name(), payload, "\n".join(lines) + "\n"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
