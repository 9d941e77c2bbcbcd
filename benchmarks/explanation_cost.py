"""Live cost of the validated explanation (score drivers, scene map; patch maps for comparison) on the CPU
back-ends, per frame.

    python benchmarks/explanation_cost.py [--threads 1] [--min-time 3]

The bundled model, detector and explanation artifact (stream_monitor/assets/nero_default.explain.npz),
real frames (HyperKvasir polyps), batch 1 (the live path). For each CPU back-end it times the plain
engine per frame, and the work an explanation adds, each by itself in the same run: the bundled explanation (neuron drivers; the patch map is not in it until it measures
better, docs/results/explanations) and with the patch map added at each live-feasible memory size of
evaluation/explanation_patch.py (a memory of random entries of that size: the search costs the same
whatever the values). The bundled artifact carries the scene map (explanations/distinct.py), drawn on the
frames that alert only: it is timed on an in-distribution frame (the engine then only pools the blocks.2
descriptors) and on an alerting one. share = added time / engine time (medians, and bests).
Budget (issue 18): ≤ 10 % of the engine's per-frame time.

The live path paces the scene map with a map budget (explanations/pacing.py, model.map_budget, 0.05 by
default: the 10 % less what the explanation adds to every frame, measured in the first table):
the second table scores a run of real alerting frames (HyperKvasir polyps over the threshold) at batch 1
through the uint8 path the loop takes, the plain engine and the engine with the bundled artifact and
the budget interleaved frame by frame, and reports the mean time each took, the difference's share of
the plain engine's time, the share the budget itself accounted (map time / engine time) and the share of
alerting frames that got a freshly drawn map.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, timeit, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.config import ModelConfig  # noqa: E402
from stream_monitor.data.images import list_images, read_image  # noqa: E402
from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.evaluation.explanation_patch import MEMORIES  # noqa: E402
from stream_monitor.explanations.assets import ExplanationAssets, load_beside, refine_batch  # noqa: E402
from stream_monitor.explanations.pacing import MapBudget  # noqa: E402
from stream_monitor.explanations.patch import (  # noqa: E402
    PatchExplainer,
    forward_with_blocks,
    patch_descriptors,
)
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import preprocess_batch, to_model_rgb  # noqa: E402
from stream_monitor.site.patch_memory import PatchFeatureExtractor, PatchMemory  # noqa: E402

warnings.filterwarnings("ignore")
logging.getLogger("stream_monitor").setLevel(logging.WARNING)
DATA = SHARED_DATA  # ../shared/data, found the way every other benchmark finds it
MAP_BUDGET = ModelConfig.model_fields["map_budget"].default  # the live default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per timing, at least")
    parser.add_argument("--backends", default="torch-cpu,openvino")
    parser.add_argument("--alerting-frames", type=int, default=400, help="frames per paced run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    assets = load_beside(bundled.DETECTOR, weight, bias)
    if assets is None:
        raise SystemExit("no explanation artifact beside the bundled detector (python -m stream_monitor.explanations.assets)")
    frames = [preprocess_batch([read_image(p)]) for p in list_images(DATA / "hyperkvasir-lgi" / "polyp")[:1]]
    rows, before = [], load()
    for backend in args.backends.split(","):
        options = EngineOptions(precision="fp32", threads=args.threads)
        drivers_only = dataclasses.replace(assets, scene=None)
        # name → (artifact, whether the frame alerts)
        variants = {"neuron drivers only": (drivers_only, False),
                    "bundled artifact (drivers + scene map), frame in distribution": (assets, False),
                    "bundled artifact (drivers + scene map), alerting frame": (assets, True)}
        for layer, size in MEMORIES:
            channels = PatchFeatureExtractor(model, layer=layer).channels
            memory = PatchMemory(np.random.default_rng(0).normal(size=(size, channels)).astype(np.float32))
            variants[f"+ patch map {layer}, memory {size} (not shipped)"] = (ExplanationAssets(
                PatchExplainer(layer, memory, 1.0, 2.0), assets.atlas, assets.head_sha256, assets.score_terms), False)
        try:
            scorers = {"plain": create_scorer(model, detector, backend, options=options)}
            scorers.update({name: create_scorer(model, detector, backend, options=options, explanation=v)
                            for name, (v, _) in variants.items()})
        except Exception as exc:  # an optional back-end that is not installed
            print(f"skipped {backend}: {exc}")
            continue
        # On a shared, loaded machine the difference of two engine timings is mostly noise, so the added
        # work is timed by itself: the descriptors' pooling (the only graph addition) and the post-step
        # (explanations.assets.refine_batch: the score drivers; the map on the rows it is drawn on).
        image = frames[0]
        plain = timeit(lambda: scorers["plain"].score_batch(image), repeat=20, min_time=args.min_time)
        for name, (variant, alerting) in variants.items():
            scorer = scorers[name]
            with torch.inference_mode():
                out = scorer.engine.run(image)
                scored = scorer.finish(out, detector.threshold)
            scored = dataclasses.replace(scored, over_threshold=np.full(len(image), alerting))
            relevance, features = out["relevance"].numpy(), out["features"].numpy()
            descriptors, feature_map = out.get("patch_features"), out["feature_map"].numpy()
            added = timeit(lambda: refine_batch(variant, scored, image, relevance, features, descriptors, detector, 5,
                                                feature_map=feature_map),
                           repeat=20, min_time=args.min_time)
            pooling = {"median_s": 0.0, "best_s": 0.0}
            if variant.descriptor_blocks:  # pooled in the graph on every frame
                with torch.inference_mode():
                    _, _, kept = forward_with_blocks(model, torch.from_numpy(image), variant.descriptor_blocks)
                    pooling = timeit(lambda: patch_descriptors(kept), repeat=20, min_time=args.min_time)
            extra_med = added["median_s"] + pooling["median_s"]
            extra_best = added["best_s"] + pooling["best_s"]
            rows.append({"backend": backend, "variant": name, "threads": args.threads,
                         "engine_median_ms": plain["median_s"] * 1e3, "engine_best_ms": plain["best_s"] * 1e3,
                         "added_median_ms": extra_med * 1e3, "added_best_ms": extra_best * 1e3,
                         "share_median": extra_med / plain["median_s"], "share_best": extra_best / plain["best_s"]})
            print(rows[-1], flush=True)
    paced = [paced_row(backend, model, detector, assets, args) for backend in args.backends.split(",")]
    paced = [row for row in paced if row is not None]
    lines = ["| back-end | explanation | threads | engine ms/frame (median / best) | added ms/frame (median / best) | "
             "added share (median / best) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['variant']} | {r['threads']} | {r['engine_median_ms']:.1f} / {r['engine_best_ms']:.1f} | "
                     f"{r['added_median_ms']:.2f} / {r['added_best_ms']:.2f} | "
                     f"{r['share_median']:.1%} / {r['share_best']:.1%} |")
    lines += ["", f"Paced by the map budget (the default share, model.map_budget = {MAP_BUDGET}) on alerting "
              "footage: real polyp frames over the threshold, batch 1, uint8 path, plain engine and paced engine "
              "interleaved frame by frame.", "",
              "| back-end | threads | frames | plain engine ms/frame (mean) | with the bundled artifact, paced (mean) | "
              "added share | map time / engine time (budget's account) | frames with a fresh map |",
              "|---|---|---|---|---|---|---|---|"]
    for r in paced:
        lines.append(f"| {r['backend']} | {r['threads']} | {r['frames']} | {r['plain_mean_ms']:.2f} | "
                     f"{r['paced_mean_ms']:.2f} | {r['added_share']:.1%} | {r['budget_maps_share']:.1%} | "
                     f"{r['drawn_share']:.0%} |")
    markdown = ("Live per-frame cost of the explanation, batch 1, fp32, real frames; budget ≤ 10 % of the "
                "engine's time.\n\n" + "\n".join(lines)
                + f"\n\nLoad before/after: {before['loadavg_1_5_15']} / {load()['loadavg_1_5_15']}\n\n"
                "Regenerate: `python benchmarks/explanation_cost.py`\n")
    print(markdown)
    write_results("explanation_cost", cpu_name(), {"rows": rows, "paced": paced, "load_before": before,
                                                   "load_after": load()}, markdown)
    return 0


def paced_row(backend: str, model, detector, assets, args) -> dict | None:
    """The second table's row for one back-end (module docstring), or None when it is not installed."""
    options = EngineOptions(precision="fp32", threads=args.threads)
    budget = MapBudget(MAP_BUDGET)
    try:
        plain = create_scorer(model, detector, backend, options=options)
        paced = create_scorer(model, detector, backend, options=options, explanation=assets, map_budget=budget)
    except Exception as exc:  # an optional back-end that is not installed
        print(f"skipped {backend}: {exc}")
        return None
    polyps = np.stack([to_model_rgb(read_image(p)) for p in list_images(DATA / "hyperkvasir-lgi" / "polyp")[:60]])
    alerting = polyps[plain.score_uint8(polyps).over_threshold]
    if len(alerting) < 10:
        raise SystemExit(f"only {len(alerting)} of 60 polyp frames alert on {backend}: not a paced run")
    for frame in alerting[:5]:  # warm both (and measure the first map)
        plain.score_uint8(frame[None]), paced.score_uint8(frame[None])
    times = {"plain": [], "paced": []}
    drawn = 0
    for n in range(args.alerting_frames):
        frame = alerting[n % len(alerting)][None]
        for name, scorer in (("plain", plain), ("paced", paced)) if n % 2 else (("paced", paced), ("plain", plain)):
            start = time.perf_counter()
            scored = scorer.score_uint8(frame)
            times[name].append(time.perf_counter() - start)
            drawn += int(name == "paced" and scored.map_drawn is not None and scored.map_drawn[0])
    plain_mean, paced_mean = float(np.mean(times["plain"])), float(np.mean(times["paced"]))
    row = {"backend": backend, "threads": args.threads, "frames": args.alerting_frames,
           "alerting_sources": int(len(alerting)), "plain_mean_ms": plain_mean * 1e3, "paced_mean_ms": paced_mean * 1e3,
           "added_share": paced_mean / plain_mean - 1.0, "budget_maps_share": budget.summary()["maps_share"],
           "drawn_share": drawn / args.alerting_frames, "budget": budget.summary()}
    print(row, flush=True)
    return row


if __name__ == "__main__":
    raise SystemExit(main())
