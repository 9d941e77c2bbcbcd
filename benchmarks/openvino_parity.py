"""How close the CPU back-ends' scores are to the calibration's: bundled model, real frames.

The bundled detector's threshold was calibrated on float64 NERO scores of torch float32 features
(the reference `Scorer`). Every fast back-end / precision is compared with that reference on the dev
split's real ID test and OOD images: relative score error (median, 99th percentile, max) and the frames
whose alert decision (score > threshold) flips. This is what "the calibrated threshold keeps its
meaning" means in numbers.

    .venv/bin/python benchmarks/openvino_parity.py            # all ID test + OOD images (~441)
    .venv/bin/python benchmarks/openvino_parity.py --limit 40

Results: benchmarks/results/openvino_parity-<cpu>-torch<ver>.json / .md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, load, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.data.split import load_split  # noqa: E402
from stream_monitor.engine import EngineOptions, Scorer, create_scorer  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import preprocess_batch  # noqa: E402

VARIANTS = [("openvino", "fp32"), ("openvino", "bf16"), ("torch-cpu", "fp32"), ("torch-cpu", "bf16")]


def real_frames(limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 224, 224) float32 model inputs of the split's ID test and OOD images, and is_ood (N,)."""
    split = load_split(DEFAULT_SPLIT)
    paths = [(p, False) for p in split.paths("test")] + [(p, True) for p in split.paths("ood")]
    if limit:
        paths = paths[:: max(1, len(paths) // limit)][:limit]
    images = preprocess_batch([cv2.imread(str(p)) for p, _ in paths])
    return images, np.array([o for _, o in paths])


def score_all(scorer, images: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([scorer.score_batch(images[i:i + batch]).score for i in range(0, len(images), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use about this many images (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    images, is_ood = real_frames(args.limit)
    reference = score_all(Scorer(model, detector), images)
    threshold = detector.threshold
    rows = []
    for backend, precision in VARIANTS:
        scorer = create_scorer(model, detector, backend,
                               options=EngineOptions(precision=precision, threads=args.threads, max_batch=16))
        got = score_all(scorer, images)
        relative = np.abs(got / reference - 1)
        flips = np.flatnonzero((got > threshold) != (reference > threshold))
        margin = np.abs(reference / threshold - 1)
        rows.append({"backend": backend, "precision": precision, "describe": scorer.engine.describe(),
                     "median_rel": float(np.median(relative)), "p99_rel": float(np.quantile(relative, 0.99)),
                     "max_rel": float(relative.max()), "decision_flips": int(len(flips)),
                     "flip_margins": [float(margin[i]) for i in flips]})
        print(rows[-1], flush=True)
    payload = {"frames": int(len(images)), "id_test": int((~is_ood).sum()), "ood": int(is_ood.sum()),
               "threshold": threshold, "reference": "Scorer: torch float32 features, NeroDetector float64",
               "min_margin_to_threshold_rel": float(np.min(np.abs(reference / threshold - 1))),
               "variants": rows, "load": load(), "threads": args.threads}
    lines = [f"{payload['frames']} real frames (dev split: {payload['id_test']} ID test, {payload['ood']} OOD), "
             f"bundled EfficientNet-Lite0 + nero_default.npz, threshold {threshold:.6g}, {args.threads} thread(s).",
             "Reference: the calibration's own path (torch float32 features → NeroDetector in float64).", "",
             "| back-end | backbone | median rel. error | p99 | max | alert decisions flipped |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['precision']} | {r['median_rel']:.2e} | {r['p99_rel']:.2e} | {r['max_rel']:.2e} "
              f"| {r['decision_flips']} of {payload['frames']} |" for r in rows]
    lines += ["", f"Closest reference score to the threshold: {payload['min_margin_to_threshold_rel']:.2e} relative.",
              f"Load average while running: {payload['load']['loadavg_1_5_15']} on {payload['load']['cores']} cores.", ""]
    print(write_results("openvino_parity", cpu_name(), payload, "\n".join(lines)))


if __name__ == "__main__":
    main()
