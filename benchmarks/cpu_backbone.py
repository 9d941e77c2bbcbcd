"""CPU throughput per back-end (ResNet-18, EfficientNet-Lite0, 224 px, batch 1 and 8) and the scoring
stage's share of the backbone time per frame — all timings in one run, per thread count.

    python benchmarks/cpu_backbone.py [--threads 1,2] [--min-time 3]

Back-ends: torch eager float32 (the baseline: what `Scorer` runs), torch-cpu float32 and bf16
(channels-last, inference mode), OpenVINO float32 and bf16, ONNX Runtime float32 (measured to decide
which CPU back-end to adopt; not a plugin). The optional ones are skipped, and said so, if absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, fitted_detector, load, timeit, write_results  # noqa: E402

from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.models import create_model  # noqa: E402

warnings.filterwarnings("ignore")
logging.getLogger("stream_monitor").setLevel(logging.WARNING)


def onnxruntime_runner(model: nn.Module, threads: int) -> Callable[[np.ndarray], Any] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model.forward_features(x)

    path = Path(tempfile.mkdtemp()) / "backbone.onnx"
    torch.onnx.export(Backbone().eval(), (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def measure(arch: str, threads: int, min_time: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    torch.manual_seed(0)
    model = create_model(arch, 3, pretrained=arch == "efficientnet_lite0").eval()
    det = fitted_detector(model)
    torch.set_num_threads(threads)
    runners: dict[str, Callable[[np.ndarray], Any]] = {}

    @torch.inference_mode()
    def eager(x: np.ndarray) -> Any:
        return model(torch.from_numpy(x))

    runners["torch eager fp32 (baseline)"] = eager
    scorers = {}
    for backend in ("torch-cpu", "openvino"):
        for precision in ("fp32", "bf16"):
            try:
                scorer = create_scorer(model, det, backend, options=EngineOptions(precision=precision, threads=threads))
            except RuntimeError as exc:  # optional back-end not installed
                print(f"skip {backend}: {exc}")
                break
            scorers[f"{backend} {precision}"] = scorer
            runners[f"{backend} {precision}"] = scorer.engine.run
    ort_run = onnxruntime_runner(model, threads)
    if ort_run is not None:
        runners["onnxruntime fp32 (backbone only)"] = ort_run
    rows, shares = [], []
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        x = rng.normal(size=(batch, 3, 224, 224)).astype(np.float32)
        for name, run in runners.items():
            t = timeit(lambda: run(x), repeat=5, warmup=2, min_time=min_time)
            rows.append({"arch": arch, "threads": threads, "batch": batch, "backend": name,
                         "frames_per_s": batch / t["median_s"], "ms_per_frame": t["median_s"] * 1e3 / batch, **t})
            print(rows[-1], flush=True)
        for name, scorer in scorers.items():  # scoring = NERO head + everything after the graph
            with torch.inference_mode():
                out = scorer.engine.run(x)
                features = out["features"]
                head = timeit(lambda: scorer.engine.fused.head(features), repeat=100, warmup=3)
                finish = timeit(lambda: scorer.finish(out, scorer.threshold), repeat=100, warmup=3)
            graph = next(r for r in rows if r["backend"] == name and r["batch"] == batch and r["arch"] == arch)
            scoring = head["median_s"] + finish["median_s"]
            backbone = graph["median_s"] - head["median_s"]
            shares.append({"arch": arch, "threads": threads, "batch": batch, "backend": name,
                           "head_ms": head["median_s"] * 1e3, "after_graph_ms": finish["median_s"] * 1e3,
                           "scoring_ms_per_frame": scoring * 1e3 / batch,
                           "backbone_ms_per_frame": backbone * 1e3 / batch, "share": scoring / backbone})
            print(shares[-1], flush=True)
    return rows, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per timing (default 3)")
    parser.add_argument("--archs", default="resnet18,efficientnet_lite0")
    args = parser.parse_args()
    before = load()
    rows, shares = [], []
    for threads in map(int, args.threads.split(",")):
        for arch in args.archs.split(","):
            r, s = measure(arch, threads, args.min_time)
            rows += r
            shares += s
    after = load()
    table = ["| model | threads | batch | back-end | frames/s (median) | frames/s (best) | ms/frame | vs eager |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(b for b in rows if b["arch"] == r["arch"] and b["threads"] == r["threads"]
                    and b["batch"] == r["batch"] and b["backend"].startswith("torch eager"))
        table.append(f"| {r['arch']} | {r['threads']} | {r['batch']} | {r['backend']} | {r['frames_per_s']:.1f} | "
                     f"{r['batch'] / r['best_s']:.1f} | "
                     f"{r['ms_per_frame']:.1f} | {r['frames_per_s'] / base['frames_per_s']:.2f}× |")
    share_table = ["| model | threads | batch | back-end | scoring ms/frame | backbone ms/frame | share |",
                   "|---|---|---|---|---|---|---|"]
    share_table += [f"| {s['arch']} | {s['threads']} | {s['batch']} | {s['backend']} | "
                    f"{s['scoring_ms_per_frame']:.3f} | "
                    f"{s['backbone_ms_per_frame']:.1f} | {s['share'] * 100:.2f}% |" for s in shares]
    markdown = (f"Load before/after: {before['loadavg_1_5_15']} / {after['loadavg_1_5_15']}; busiest before: "
                f"{before.get('busiest', [])[:3]}\n\n## Throughput\n\n" + "\n".join(table)
                + "\n\n## Scoring (NERO head + kernels + explanation) as a share of backbone time\n\n"
                + "\n".join(share_table) + "\n")
    path = write_results("cpu_backbone", cpu_name(), {"throughput": rows, "scoring_share": shares,
                                                       "load_before": before, "load_after": after}, markdown)
    print(markdown)
    print(f"written {path}")


if __name__ == "__main__":
    main()
