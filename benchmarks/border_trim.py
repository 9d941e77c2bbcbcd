"""How much a few pixels of crop move NERO scores: why the scope mask leaves HyperKvasir-framed images alone.

    python benchmarks/border_trim.py [--trims 0.2,0.5,1,2]

Every HyperKvasir ID test image (committed split; never used for training or calibration) is scored by the
bundled EfficientNet-Lite0 and its default detector (reference `Scorer`) as it is, and again with t % of its
height and width trimmed from each side (at least one pixel), and once cropped by the scope mask in mode
"always" (`ScopeMasker(mode="always")`, the crop that mode "auto" skips on such images). Reported per
variant: median and largest relative score change, and how many images landed on the other side of the
calibrated threshold. Takes well under a minute on one core.
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
from stream_monitor.capture.scope_mask import ScopeMasker  # noqa: E402
from stream_monitor.data.images import read_image  # noqa: E402
from stream_monitor.data.split import load_split  # noqa: E402
from stream_monitor.engine import Scorer  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT  # noqa: E402
from stream_monitor.models.registry import load_classifier, sha256_file  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import normalize_uint8, to_model_rgb  # noqa: E402


def trim(image: np.ndarray, percent: float) -> np.ndarray:
    """`percent` % of the height and of the width removed from each side (at least one pixel)."""
    h, w = image.shape[:2]
    dy, dx = max(1, round(h * percent / 100)), max(1, round(w * percent / 100))
    return image[dy:h - dy, dx:w - dx]


def scores(scorer: Scorer, images: list[np.ndarray]) -> np.ndarray:
    rgb = [to_model_rgb(image) for image in images]
    return np.concatenate([scorer.score_batch(normalize_uint8(np.stack(rgb[i:i + 16]))).score
                           for i in range(0, len(rgb), 16)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trims", default="0.2,0.5,1,2", help="percent of each side, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias, model_sha256=sha256_file(bundled.MODEL))
    scorer = Scorer(model, detector, top_n=1, heatmaps=False)
    images = [read_image(p) for p in load_split(DEFAULT_SPLIT).paths("test")]
    threshold = detector.threshold
    base = scores(scorer, images)
    variants = {f"trim {t} % of each side": [trim(im, float(t)) for im in images] for t in args.trims.split(",")}
    variants['scope mask, mode "always"'] = [ScopeMasker(mode="always").apply(im) for im in images]
    rows = []
    for name, changed in variants.items():
        moved = scores(scorer, changed)
        relative = np.abs(moved / base - 1)
        crossed = int(np.sum((moved > threshold) != (base > threshold)))
        rows.append({"variant": name, "median_rel_change": float(np.median(relative)),
                     "max_rel_change": float(relative.max()), "crossed_threshold": crossed, "images": len(images)})
    lines = [f"{len(images)} HyperKvasir ID test images; bundled EfficientNet-Lite0 + default detector "
             f"(threshold {threshold:.4f}); {int(np.sum(base > threshold))} of them over it untrimmed.", "",
             "| variant | median relative score change | largest | images across the threshold |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {100 * r['median_rel_change']:.2f} % | {100 * r['max_rel_change']:.1f} % | "
              f"{r['crossed_threshold']} / {r['images']} |" for r in rows]
    print("wrote", write_results("border_trim", cpu_name(), {"threshold": threshold, "over_untrimmed":
                                 int(np.sum(base > threshold)), "rows": rows}, "\n".join(lines) + "\n"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
