"""How far a reduced-precision backbone moves the bundled detector's scores from the reference.

    python benchmarks/bf16_score_error.py [--images 96] [--backends torch-cpu,openvino]

The first `--images` HyperKvasir ID test images (committed split) and as many HyperKvasir polyp images
(OOD) are scored by the bundled EfficientNet-Lite0 and its default detector: once by the reference
`Scorer` (float32 backbone, float64 NERO), then by each named engine back-end at fp32 and bf16 (backbone
precision; the NERO head runs in float32). Reported: median and largest relative score difference from
the reference, and how many frames changed side of the calibrated threshold. The tests' bound for a bf16
backbone (median ≤ 3 %, worst ≤ 15 %) is checked on a random-weight model; this is the shipped one.
One torch thread; about a minute on one core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.data.images import list_images, read_image  # noqa: E402
from stream_monitor.data.split import load_split  # noqa: E402
from stream_monitor.engine import EngineOptions, Scorer, create_scorer  # noqa: E402
from stream_monitor.engine.backends import backend_class  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT, SHARED_DATA  # noqa: E402
from stream_monitor.models.registry import load_classifier, sha256_file  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import normalize_uint8, to_model_rgb  # noqa: E402


def scores(scorer, images: np.ndarray) -> np.ndarray:
    return np.concatenate([scorer.score_batch(images[i:i + 16]).score for i in range(0, len(images), 16)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="ID images, and as many OOD images")
    parser.add_argument("--backends", default="torch-cpu,openvino")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias, model_sha256=sha256_file(bundled.MODEL))
    paths = (load_split(DEFAULT_SPLIT).paths("test")[: args.images]
             + list_images(SHARED_DATA / "hyperkvasir-lgi" / "polyp")[: args.images])
    images = normalize_uint8(np.stack([to_model_rgb(read_image(p)) for p in paths]))
    reference = scores(Scorer(model, detector, top_n=1, heatmaps=False), images)
    threshold = detector.threshold
    rows, skipped = [], {}
    for backend in args.backends.split(","):
        ok, why = backend_class(backend).available()
        if not ok:
            skipped[backend] = why
            continue
        for precision in ("fp32", "bf16"):
            scorer = create_scorer(model, detector, backend, top_n=1, heatmaps=False,
                                   options=EngineOptions(precision=precision, threads=1))
            got = scores(scorer, images)
            relative = np.abs(got / reference - 1)
            rows.append({"backend": backend, "precision": precision, "median_rel": float(np.median(relative)),
                         "max_rel": float(relative.max()),
                         "crossed_threshold": int(np.sum((got > threshold) != (reference > threshold)))})
    lines = [f"{args.images} HyperKvasir ID test + {len(paths) - args.images} HyperKvasir polyp images; bundled "
             f"EfficientNet-Lite0 + default detector (threshold {threshold:.4f}); reference: `Scorer` (float64 NERO). "
             "Precision is the backbone's; the NERO head runs in float32.", "",
             "| back-end | backbone precision | median relative score difference | largest | frames across the threshold |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['backend']} | {r['precision']} | {100 * r['median_rel']:.3f} % | {100 * r['max_rel']:.2f} % | "
              f"{r['crossed_threshold']} / {len(paths)} |" for r in rows]
    lines += [f"\n{name} skipped: {why}" for name, why in skipped.items()]
    print("wrote", write_results("bf16_score_error", cpu_name(), {"images": len(paths), "threshold": threshold,
                                 "rows": rows, "skipped": skipped}, "\n".join(lines) + "\n"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
