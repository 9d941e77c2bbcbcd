"""GPU engine benchmarks (run by gpu_check.sh on a machine with an NVIDIA GPU).

Per model (ResNet-18, EfficientNet-Lite0; 224 px, C = 3) and GPU back-end (torch-cuda; tensorrt where
torch-tensorrt is importable), fp16 backbone:
- latency: one frame in host memory → ScoredBatch in host memory (score, parts, explanation,
  heatmap), median over many frames; target ≤ 5 ms on an H100;
- throughput: batches of 256 frames from host memory, frames/s; target ≥ 3,000;
- kernel share: the Numba CUDA kernels (nearest-centroid L1, fusion, flags) timed with CUDA events
  against the engine's graph on the same stream; target ≤ 5%.
Also torch eager fp32 forward (model only) as a baseline. Writes gpu_bench-<gpu>-torch<ver>.json/.md to
$BENCH_RESULTS_DIR (default benchmarks/results).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import fitted_detector, load, timeit, write_results  # noqa: E402

from stream_monitor.engine import EngineOptions, create_scorer  # noqa: E402
from stream_monitor.engine.backends import backend_class  # noqa: E402
from stream_monitor.models import create_model  # noqa: E402

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.INFO, format="%(message)s")
THROUGHPUT_BATCH = 256


def cuda_time(fn: Any, repeat: int = 50, busy_first: bool = False) -> float:
    """Median time of fn() in seconds, CUDA events on the current stream. With an idle GPU that
    includes the host's launch overhead; busy_first queues a ~2 ms spin kernel ahead of the start
    event, so the host has launched everything before the GPU gets there: GPU execution time only."""
    fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if busy_first:
            torch.cuda._sleep(4_000_000)  # clock cycles
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def bench(arch: str, backend: str) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model(arch, 3, pretrained=False).eval()
    det = fitted_detector(model)
    scorer = create_scorer(model, det, backend, options=EngineOptions(precision="fp16", max_batch=THROUGHPUT_BATCH,
                                                                      cache_dir=Path("/tmp/sm-trt-cache")))
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    many = rng.normal(size=(THROUGHPUT_BATCH, 3, 224, 224)).astype(np.float32)
    latency = timeit(lambda: scorer.score_batch(one), repeat=200, warmup=10)
    throughput = timeit(lambda: scorer.score_batch(many), repeat=20, warmup=3)
    # The live path since issue 15: the ring's uint8 frames, uploaded as they are and normalised on the
    # device (a quarter of the bytes to stage). Never run on a GPU before this script's next run.
    one8 = rng.integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    many8 = rng.integers(0, 256, size=(THROUGHPUT_BATCH, 224, 224, 3), dtype=np.uint8)
    latency8 = timeit(lambda: scorer.score_uint8(one8), repeat=200, warmup=10)
    throughput8 = timeit(lambda: scorer.score_uint8(many8), repeat=20, warmup=3)
    shares = {}
    for name, x in (("batch1", one), (f"batch{THROUGHPUT_BATCH}", many)):
        with torch.inference_mode():
            graph = cuda_time(lambda: scorer.engine.run(x))
            out = scorer.engine.run(x)

            def numba_kernels() -> None:  # exactly the engine's kernel stage: one fused launch
                scorer.score_stage(out, scorer.threshold)

            kernel = cuda_time(numba_kernels)
            kernel_gpu = cuda_time(numba_kernels, busy_first=True)
            finish = cuda_time(lambda: scorer.finish(out, scorer.threshold))
        shares[name] = {"graph_ms": graph * 1e3, "numba_kernels_ms": kernel * 1e3,
                        "numba_kernels_gpu_only_ms": kernel_gpu * 1e3,
                        "kernel_share_of_engine": kernel / (graph + finish), "after_graph_ms": finish * 1e3,
                        "gpu_only_share": kernel_gpu / (graph + finish)}
    return {"arch": arch, "backend": scorer.backend, "describe": scorer.engine.describe(),
            "latency_ms_per_frame": latency["median_s"] * 1e3, "latency_best_ms": latency["best_s"] * 1e3,
            "throughput_frames_per_s": THROUGHPUT_BATCH / throughput["median_s"], "kernels": shares,
            "uint8_latency_ms_per_frame": latency8["median_s"] * 1e3,
            "uint8_throughput_frames_per_s": THROUGHPUT_BATCH / throughput8["median_s"]}


def eager_baseline(arch: str) -> float:
    model = create_model(arch, 3, pretrained=False).eval().cuda()
    x = torch.randn(THROUGHPUT_BATCH, 3, 224, 224, device="cuda")
    with torch.inference_mode():
        return THROUGHPUT_BATCH / cuda_time(lambda: model(x), repeat=10)


def guarded(what: str, fn: Any, errors: list[str]) -> Any:
    """Run one measurement; a failure is recorded (and printed) instead of losing the other rows."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken row must not hide the others' numbers
        logging.exception("%s failed", what)
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    gpu = torch.cuda.get_device_name()
    backends = ["torch-cuda"] + (["tensorrt"] if backend_class("tensorrt").available()[0] else [])
    before = load()
    errors: list[str] = []
    rows = [guarded(f"{arch} {backend}", lambda a=arch, b=backend: bench(a, b), errors)
            for arch in ("resnet18", "efficientnet_lite0") for backend in backends]
    rows = [r for r in rows if r is not None]
    eager = {arch: guarded(f"{arch} eager", lambda a=arch: eager_baseline(a), errors)
             for arch in ("resnet18", "efficientnet_lite0")}
    lines = ["| model | back-end | host→score latency ms/frame (batch 1) | frames/s (batch 256, host→score) | "
             "Numba kernels % of engine (b1 / b256) | same, GPU execution only |", "|---|---|---|---|---|---|"]
    for r in rows:
        k = r["kernels"]
        lines.append(f"| {r['arch']} | {r['backend']} | {r['latency_ms_per_frame']:.2f} | "
                     f"{r['throughput_frames_per_s']:.0f} | {k['batch1']['kernel_share_of_engine'] * 100:.2f}% / "
                     f"{k[f'batch{THROUGHPUT_BATCH}']['kernel_share_of_engine'] * 100:.2f}% | "
                     f"{k['batch1']['gpu_only_share'] * 100:.2f}% / "
                     f"{k[f'batch{THROUGHPUT_BATCH}']['gpu_only_share'] * 100:.2f}% |")
    lines += ["", "| model | back-end | uint8 frames (normalised on the GPU): host→score ms (batch 1) | frames/s "
              "(batch 256) |", "|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['backend']} | {r['uint8_latency_ms_per_frame']:.2f} | "
              f"{r['uint8_throughput_frames_per_s']:.0f} |" for r in rows]
    skipped = [] if "tensorrt" in backends else [f"tensorrt skipped: {backend_class('tensorrt').available()[1]}"]
    markdown = ("\n".join(lines) + "\n\nTorch eager fp32 model forward only, batch 256, device-resident input: "
                + ", ".join(f"{a} {v:.0f} frames/s" for a, v in eager.items() if v is not None) + "\n\n"
                + "\n".join(skipped + [f"FAILED {e}" for e in errors]) + "\n")
    path = write_results("gpu_bench", gpu, {"rows": rows, "eager_fp32_frames_per_s": eager, "skipped": skipped,
                                            "errors": errors, "load_before": before}, markdown)
    print(markdown)
    print(f"written {path}")
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
