"""int8 (NNCF post-training quantization) of the bundled classifier's backbone vs fp32, on OpenVINO.

Calibration: the committed split's ID *train* images only (configs/splits/hyperkvasir-lgi.json, 280).
Evaluation, as the dev benchmark (docs/results/dev-benchmark): ID test images (168) against the OOD test
sets — HyperKvasir OOD test parts (per class and pooled), CVC-ClinicDB polyps, the gastric-ulcer clip
and PolypGen normal colon (a covariate shift, not pathology) — scored by the bundled NERO detector
(fitted and calibrated on fp32 features) on each precision's features. Reported: ID test accuracy,
AUROC / FPR95 (NERO paper convention: ID accepted; AUROC with OOD positive) per set, the FPR on ID test
at the calibrated threshold, the relative score change, and frames/s (batch 1 and 8, 1 thread,
backbone graph alone, interleaved; CPU time because the machine is shared).

The decision rule (issue 15): offer `precision: int8` only if no set's AUROC drops by more than 0.5
points. Features are cached under .cache/int8/ (delete it after changing the recipe).
The recipe was fixed before the run (NNCF's CPU defaults: preset PERFORMANCE, fast bias correction,
all calibration images); trying others must choose on the validation split, not on these test sets.
NNCF is not a runtime dependency: `pip install -e ".[quantize]"`.

    .venv/bin/python benchmarks/int8_quantization.py
Results: benchmarks/results/int8_quantization-<cpu>-torch<ver>.json / .md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, write_results  # noqa: E402

from stream_monitor import bundled  # noqa: E402
from stream_monitor.data.images import read_image
from stream_monitor.data.split import load_split  # noqa: E402
from stream_monitor.engine import FusedNero  # noqa: E402
from stream_monitor.engine.backends.openvino import _Backbone  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT, external_sources, ood_validation_split  # noqa: E402
from stream_monitor.evaluation.ood_metrics import auroc, fpr_at_tpr_id_accepted  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.nero import NeroDetector  # noqa: E402
from stream_monitor.preprocess import preprocess_frame  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "int8"
MAX_DROP_POINTS = 0.5


def convert_backbone(fused: FusedNero):  # type: ignore[no-untyped-def]
    """The backbone as the OpenVINO back-end converts it (images → features), dynamic batch, 224 px."""
    import openvino as ov

    with torch.inference_mode():
        return ov.convert_model(_Backbone(fused).eval(), example_input=torch.zeros(1, 3, 224, 224),
                                input=[ov.PartialShape([-1, 3, 224, 224])])


def quantize_backbone(model, images: np.ndarray, subset_size: int):  # type: ignore[no-untyped-def]
    """NNCF post-training int8 (weights and activations; the CPU plugin runs it on AVX512-VNNI).
    Only the backbone: the NERO head stays float32 after it (it divides by the logits)."""
    import nncf

    dataset = nncf.Dataset([np.ascontiguousarray(image, np.float32)[None] for image in images])
    return nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=subset_size,
                         fast_bias_correction=True)


def evaluation_sets(split) -> dict[str, list]:
    """name → list of BGR frames loaders (callables), the dev benchmark's ID test and OOD test sets."""
    sets: dict[str, list] = {"id-test": [lambda p=p: read_image(p) for p in split.paths("test")]}
    _, ood_test = ood_validation_split(split)
    pooled = []
    for name, paths in ood_test.items():
        sets[f"hk-{name}"] = [lambda p=p: read_image(p) for p in paths]
        pooled += sets[f"hk-{name}"]
    sets["hk-all-ood"] = pooled
    for source in external_sources():  # files read lazily (PolypGen frames are 1920 × 1080); the clip is small
        if source.kind == "files":
            sets[source.name] = [lambda p=p: read_image(p) for p in source.files]
        else:
            sets[source.name] = [lambda f=f: f for _, f in source.frames()]
    return sets


def features_of(compiled, loaders: list, batch: int = 8) -> tuple[np.ndarray, float]:
    """(N, D) float64 features of the frames; and the CPU seconds the graph took."""
    out, cpu = [], 0.0
    request = compiled.create_infer_request()
    for i in range(0, len(loaders), batch):
        x = np.stack([preprocess_frame(load()) for load in loaders[i:i + batch]])
        t0 = time.process_time()
        result = request.infer({0: x})
        cpu += time.process_time() - t0
        out.append(np.array(result[0], dtype=np.float64))
    return np.concatenate(out), cpu


def throughput(compiled_by_name: dict, batch: int, rounds: int) -> dict[str, float]:
    """frames/s in CPU time of each compiled graph on one batch, interleaved round by round."""
    x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    requests = {name: c.create_infer_request() for name, c in compiled_by_name.items()}
    times: dict[str, list[float]] = {name: [] for name in requests}
    for request in requests.values():
        request.infer({0: x})
    for _ in range(rounds):
        for name, request in requests.items():
            t0 = time.process_time()
            request.infer({0: x})
            times[name].append(time.process_time() - t0)
    return {name: batch / float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset-size", type=int, default=280, help="calibration images (ID train)")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import openvino as ov

    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    split = load_split(DEFAULT_SPLIT)
    fused = FusedNero(model, detector, feature_map=False)
    fp32 = convert_backbone(fused)
    train = np.stack([preprocess_frame(read_image(p)) for p in split.paths("train")[: args.subset_size]])
    started = time.perf_counter()
    int8 = quantize_backbone(fp32, train, subset_size=args.subset_size)
    quantize_s = time.perf_counter() - started
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
    compiled = {"fp32": core.compile_model(fp32, "CPU", config), "int8": core.compile_model(int8, "CPU", config)}
    sets = evaluation_sets(split)
    CACHE.mkdir(parents=True, exist_ok=True)
    features: dict[str, dict[str, np.ndarray]] = {"fp32": {}, "int8": {}}
    for precision, graph in compiled.items():
        for name, loaders in sets.items():
            cache = CACHE / f"{precision}-{args.subset_size}-{name.replace(' ', '_')}.npy"
            if cache.exists():
                features[precision][name] = np.load(cache)
                continue
            features[precision][name], _ = features_of(graph, loaders)
            np.save(cache, features[precision][name])
            print(f"{precision} {name}: {len(loaders)} frames", flush=True)
    split_labels = np.array([item.label for item in split.subsets["test"]])
    rows, scores = {}, {}
    for precision in compiled:
        feats = features[precision]
        scores[precision] = {name: detector.score(f) for name, f in feats.items()}
        id_scores = scores[precision]["id-test"]
        logits = feats["id-test"] @ weight.T + bias
        rows[precision] = {
            "id_test_accuracy": float(np.mean(logits.argmax(1) == split_labels)),
            "id_fpr_at_calibrated_threshold": float(np.mean(id_scores > detector.threshold)),
            "sets": {name: {"auroc": auroc(id_scores, s), "fpr95_id_accepted": fpr_at_tpr_id_accepted(id_scores, s),
                            "n": int(len(s))}
                     for name, s in scores[precision].items() if name != "id-test"},
        }
    drops = {name: 100 * (rows["fp32"]["sets"][name]["auroc"] - rows["int8"]["sets"][name]["auroc"])
             for name in rows["fp32"]["sets"]}
    relative = np.concatenate([np.abs(scores["int8"][n] / scores["fp32"][n] - 1) for n in sets if n != "hk-all-ood"])
    fps = {f"batch {b}": throughput(compiled, b, args.rounds) for b in (1, 8)}
    worst_drop = max(drops.values())
    qualifies = worst_drop <= MAX_DROP_POINTS
    payload = {"calibration": f"{len(train)} ID train images of {DEFAULT_SPLIT.name}", "quantize_s": quantize_s,
               "results": rows, "auroc_drop_points": drops, "worst_auroc_drop_points": worst_drop,
               "max_allowed_drop_points": MAX_DROP_POINTS, "qualifies_as_precision_option": qualifies,
               "score_relative_change": {"median": float(np.median(relative)), "p99": float(np.quantile(relative, 0.99)),
                                         "max": float(relative.max())},
               "frames_per_s_cpu_time": fps, "load": load()}
    lines = [f"Bundled EfficientNet-Lite0 backbone on OpenVINO (1 thread); int8 by NNCF post-training quantization "
             f"(preset PERFORMANCE, fast bias correction) calibrated on {len(train)} ID train images only; NERO head "
             "and the bundled detector (fitted and calibrated on fp32 features) unchanged.", "",
             f"ID test accuracy: fp32 {rows['fp32']['id_test_accuracy']:.1%}, int8 {rows['int8']['id_test_accuracy']:.1%}. "
             f"ID test frames over the calibrated threshold: fp32 {rows['fp32']['id_fpr_at_calibrated_threshold']:.1%}, "
             f"int8 {rows['int8']['id_fpr_at_calibrated_threshold']:.1%}.", "",
             "| OOD set (n) | fp32 AUROC / FPR95 % | int8 AUROC / FPR95 % | AUROC drop, points |", "|---|---|---|---|"]
    for name, drop in drops.items():
        a, b = rows["fp32"]["sets"][name], rows["int8"]["sets"][name]
        lines.append(f"| {name} ({a['n']}) | {100 * a['auroc']:.1f} / {100 * a['fpr95_id_accepted']:.1f} | "
                     f"{100 * b['auroc']:.1f} / {100 * b['fpr95_id_accepted']:.1f} | {drop:+.2f} |")
    rel = payload["score_relative_change"]
    lines += ["", f"NERO score, int8 vs fp32 features, all frames: median {rel['median']:.2%}, p99 {rel['p99']:.2%}, "
              f"max {rel['max']:.2%} relative.", "",
              "| graph alone, 1 thread | fp32 frames/s | int8 frames/s | int8 / fp32 |", "|---|---|---|---|"]
    for key, v in fps.items():
        lines.append(f"| {key} | {v['fp32']:.1f} | {v['int8']:.1f} | {v['int8'] / v['fp32']:.2f}× |")
    lines += ["", f"Worst AUROC drop {worst_drop:.2f} points (rule: ≤ {MAX_DROP_POINTS}): int8 "
              f"{'qualifies' if qualifies else 'does NOT qualify'} as a precision option. Frames/s in CPU time "
              f"(median of {args.rounds} interleaved rounds). Load: {payload['load']['loadavg_1_5_15']} on "
              f"{payload['load']['cores']} cores.", ""]
    print("\n".join(lines))
    print(write_results("int8_quantization", cpu_name(), payload, "\n".join(lines)))


if __name__ == "__main__":
    main()
