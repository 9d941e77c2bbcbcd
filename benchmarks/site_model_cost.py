"""Live per-frame cost of an enrolled site model beside NERO on the CPU back-end, measured side by side.

Timed in one run, batch 1 and batch 8, 1 thread (what one core gives the model on the 2-core box), on two
engines side by side: torch-cpu and OpenVINO (the CPU default when installed; there the patch network is
compiled with OpenVINO too, site/patch_openvino.py):
- NERO alone: the engine's scorer (bundled EfficientNet-Lite0 + detector);
- the site model's parts: patch features (EfficientNet-Lite0 blocks 0–4), valid region (without the
  specular highlights when the default options leave them out), nearest-memory
  search at the memory size enrollment produced, fusion;
- NERO + site model: `SiteScorer.score_batch`, what `stream-monitor run` does per batch.
The site model is enrolled here on PolypGen centre A's normal sequences (as the docs' example does).

    python benchmarks/site_model_cost.py            # → benchmarks/results/site_model_cost-<cpu>-torch<v>.{json,md}
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, cpu_flags, cpu_name, load, slug, timeit, versions  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.data.images import list_images, read_image  # noqa: E402
from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA  # noqa: E402
from stream_monitor.evaluation.site_features import model_rgb  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import normalize_uint8  # noqa: E402
from stream_monitor.site.footage import analyse_footage  # noqa: E402
from stream_monitor.site.patch_memory import PatchFeatureExtractor, scored_cells  # noqa: E402
from stream_monitor.site.scorer import SiteScorer, create_site_scorer, to_uint8_rgb  # noqa: E402
from stream_monitor.site.site_model import SiteOptions, enroll_site  # noqa: E402

SEQUENCES = ("seq01", "seq03", "seq05", "seq07")  # PolypGen centre A


def main() -> int:
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    detector = NeroDetector.load(bundled.DETECTOR, *model.head_arrays())
    nero = create_scorer(model, detector, "torch-cpu", options=EngineOptions(precision="fp32", threads=1))
    options = SiteOptions()
    extractor = PatchFeatureExtractor(None if options.backbone == "imagenet" else model, options.layer)
    negative = SHARED_DATA / "sequences" / "polypgen-negative"
    parts = []
    for seq in SEQUENCES:
        files = list_images(negative / f"{seq}_neg")
        parts.append(analyse_footage(((str(f), read_image(f)) for f in files), model, extractor, len(files), progress=False,
                                     specular_cover=options.specular_cover))
    nero_cal = [detector.score(p.features.astype(np.float64)) for p in parts]
    t0 = time.perf_counter()
    site = enroll_site([p.maps for p in parts], [p.valid for p in parts], nero_cal, options)
    enroll_s = time.perf_counter() - t0
    scorer = SiteScorer(nero, site, extractor)
    nero_ov = create_scorer(model, detector, "openvino", options=EngineOptions(precision="fp32", threads=1))
    scorer_ov = create_site_scorer(nero_ov, model, site)  # compiles the patch network with OpenVINO
    polyps = list_images(SHARED_DATA / "polypgen-positive" / "centre_A")[:8]
    batch8 = normalize_uint8(np.stack([model_rgb(read_image(f)) for f in polyps]))
    rows, load_before = [], load()
    for batch in (1, 8):
        images = np.ascontiguousarray(batch8[:batch])
        tensor = torch.from_numpy(images)
        maps = extractor(tensor).numpy()
        valid = scored_cells(to_uint8_rgb(images), *maps.shape[-2:], options.specular_cover)
        timings = {
            ("torch-cpu", "NERO alone"): timeit(lambda: nero.score_batch(images), repeat=20),
            ("torch-cpu", "site: patch features"): timeit(lambda: extractor(tensor), repeat=20),
            ("torch-cpu", "site: valid region (+ highlights)"): timeit(
                lambda: scored_cells(to_uint8_rgb(images), 28, 28, options.specular_cover), repeat=20),
            ("torch-cpu", "site: nearest-memory search"): timeit(lambda: site.memory.distances(maps), repeat=20),
            ("torch-cpu", "site: search + frame score + fusion"): timeit(
                lambda: site.score(maps, valid, np.zeros(batch)), repeat=20),
            ("torch-cpu", "NERO + site model (SiteScorer)"): timeit(lambda: scorer.score_batch(images), repeat=20),
            ("openvino", "NERO alone"): timeit(lambda: nero_ov.score_batch(images), repeat=20),
            ("openvino", "site: patch features"): timeit(lambda: scorer_ov.extractor(tensor), repeat=20),
            ("openvino", "NERO + site model (SiteScorer)"): timeit(lambda: scorer_ov.score_batch(images), repeat=20),
        }
        for (engine, name), t in timings.items():
            base = timings[(engine, "NERO alone")]["median_s"]
            rows.append({"batch": batch, "engine": engine, "stage": name, "ms_per_frame": 1000 * t["median_s"] / batch,
                         "best_ms_per_frame": 1000 * t["best_s"] / batch, "vs_nero_alone": t["median_s"] / base})
    result = {"benchmark": "site_model_cost", "cpu": cpu_name(), "flags": cpu_flags(), "versions": versions(),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "threads": 1,
              "memory_size": site.memory.size, "memory_channels": site.memory.channels,
              "enroll_frames": site.info["frames"], "enroll_site_seconds": enroll_s, "options": options.__dict__,
              "load_before": load_before, "load_after": load(), "rows": rows}
    name = f"site_model_cost-{slug(cpu_name().split()[0] + ' ' + cpu_name().split()[1])}-torch{torch.__version__.split('+')[0]}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# site_model_cost", "", f"{result['cpu']} ({', '.join(result['flags'])}); "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + f"; {result['time']}; 1 thread", "",
             f"Site model enrolled on PolypGen centre A ({result['enroll_frames']} frames): memory "
             f"{result['memory_size']} × {result['memory_channels']}, enroll_site {enroll_s:.1f} s. "
             f"Load before/after: {load_before['loadavg_1_5_15']} / {result['load_after']['loadavg_1_5_15']}", "",
             "| batch | engine | stage | ms/frame (median) | ms/frame (best) | × NERO alone on that engine |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['engine']} | {r['stage']} | {r['ms_per_frame']:.1f} | {r['best_ms_per_frame']:.1f} | "
              f"{r['vs_nero_alone']:.2f} |" for r in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
