"""Live cost the zero-shot maps (explanations/distinct.py: intra-image distinctiveness × score decomposition,
and that × the edge weight) would add per frame on the CPU, against the plain engine's per-frame time, batch 1.

    python benchmarks/explanation_distinct_cost.py [--threads 1] [--min-time 3]

The maps are not shipped (docs/results/explanations); this measures what they would cost if they were. Its inputs come free with the engine's forward
(the blocks' outputs, as the patch map's descriptors, and the last feature map); the added work timed
here is the descriptors' 3×3 pooling, the within-frame nearest-patch search, the scene cells (lit
region, overlays, dark pixels), the 7×7 score decomposition, the edge weight and the combination. Budget (issue 18):
≤ 10 % of the engine's per-frame time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, timeit, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.data.images import list_images, read_image  # noqa: E402
from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.explanations.distinct import combine, distinctiveness, scene_cells  # noqa: E402
from stream_monitor.explanations.maps import residual_decomposition  # noqa: E402
from stream_monitor.explanations.patch import denormalize, forward_with_blocks, patch_descriptors  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import preprocess_batch  # noqa: E402

warnings.filterwarnings("ignore")
logging.getLogger("stream_monitor").setLevel(logging.WARNING)
DATA = SHARED_DATA  # ../shared/data, found the way every other benchmark finds it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per timing, at least")
    parser.add_argument("--backends", default="torch-cpu,openvino")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    image = preprocess_batch([read_image(list_images(DATA / "hyperkvasir-lgi" / "polyp")[0])])
    rows, before = [], load()
    # (row label, blocks, dark, power, edge τ): round 3's two products and round 5's edge-weighted one, each at
    # the settings the select part chose (docs/results/explanations/maps.json)
    variants = (("blocks.2", (2,), 90, 4.0, 0.0), ("blocks.2+blocks.3", (2, 3), 90, 4.0, 0.0),
                ("blocks.2, edge-weighted", (2,), 50, 1.0, 3.0))
    for layer, blocks, dark, power, edge_tau in variants:
        with torch.inference_mode():
            _, feature_map, kept = forward_with_blocks(model, torch.from_numpy(image), blocks)
        fmap = feature_map.numpy()[0]

        def added(kept=kept, fmap=fmap, dark=dark, power=power, edge_tau=edge_tau):
            with torch.inference_mode():
                descriptors = patch_descriptors(kept)
            dist = distinctiveness(descriptors, radius=1)[0]
            h = dist.shape[0]
            scene = scene_cells(denormalize(image), h, h, dark=dark)[0]
            return combine(dist, scene, 1.0, power, residual_decomposition(fmap, detector), edge_tau)

        extra = timeit(added, repeat=20, min_time=args.min_time)
        for backend in args.backends.split(","):
            try:
                scorer = create_scorer(model, detector, backend, options=EngineOptions(precision="fp32", threads=args.threads))
            except Exception as exc:  # an optional back-end that is not installed
                print(f"skipped {backend}: {exc}")
                continue
            plain = timeit(lambda: scorer.score_batch(image), repeat=20, min_time=args.min_time)
            rows.append({"backend": backend, "layer": layer, "threads": args.threads,
                         "engine_median_ms": plain["median_s"] * 1e3, "engine_best_ms": plain["best_s"] * 1e3,
                         "added_median_ms": extra["median_s"] * 1e3, "added_best_ms": extra["best_s"] * 1e3,
                         "share_median": extra["median_s"] / plain["median_s"], "share_best": extra["best_s"] / plain["best_s"]})
            print(rows[-1], flush=True)
    lines = ["| back-end | descriptors | threads | engine ms/frame (median / best) | added ms/frame (median / best) | "
             "added share (median / best) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['layer']} | {r['threads']} | {r['engine_median_ms']:.1f} / {r['engine_best_ms']:.1f} | "
                     f"{r['added_median_ms']:.2f} / {r['added_best_ms']:.2f} | {r['share_median']:.1%} / {r['share_best']:.1%} |")
    markdown = ("Per-frame cost the distinctiveness × score-decomposition maps would add (not shipped), batch 1, fp32, "
                "a real frame; budget ≤ 10 % of the engine's time.\n\n" + "\n".join(lines)
                + f"\n\nLoad before/after: {before['loadavg_1_5_15']} / {load()['loadavg_1_5_15']}\n\n"
                "Regenerate: `python benchmarks/explanation_distinct_cost.py`\n")
    print(markdown)
    write_results("explanation_distinct_cost", cpu_name(), {"rows": rows, "load_before": before, "load_after": load()},
                  markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
