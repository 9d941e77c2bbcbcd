"""Why the scoring stage cannot reach 20× the reference way on this CPU in float32: a measured roofline.

The issue's target: the CPU scoring stage at batch 256 (D = 512, C = 3, P = 341, k = 175; the problem
of scoring_stage.py) ≥ 20× the reference code's way with identical scores (≤ 1e-6 relative). The
stage's unavoidable work is the PCA projection, a (256 × 512) · (512 × 341) float32 GEMM = 89.4 MFLOP;
everything else (relevance, ρ, distances, fusion) is < 2 % of its FLOPs. Its operands (1.6 MB) stay in
the L2/L3 caches (arithmetic intensity ≈ 57 FLOP/byte), so the bound is the core's float32 FMA rate.

Measured in one run, interleaved round by round. The machine is shared, and wall time punishes the
reference way's 12 ms Python loop (preempted mid-run) far more than a 1 ms GEMM (a run under a load of 13
measured the reference 4.5× slower than on an idle machine, the engine not at all): single-thread
quantities are therefore compared in the process's CPU time (time.process_time: time on a core, not
time waiting for one), two-thread ones in best wall time. Quantities: the reference way; the engine's stage (1 and 2 threads); the projection GEMM alone; this
core's float32 GEMM peak over cache-resident shapes; and — the only way to go faster — the projection
in bfloat16 (AVX512-BF16), with the score error that costs. The CPU's vector features are read from
/proc/cpuinfo, never assumed.

    .venv/bin/python benchmarks/scoring_roofline.py
Results: benchmarks/results/scoring_roofline-<cpu>-torch<ver>.json / .md
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_name, load, timeit, write_results  # noqa: E402
from scoring_stage import B, FastPath, problem, reference_way  # noqa: E402

from stream_monitor import kernels  # noqa: E402

PEAK_SHAPES = [(256, 512, 352), (256, 512, 512), (512, 512, 512), (384, 768, 384)]
ROUNDS = 15
TARGET = 20.0


def cpu_seconds(fn, repeat: int, warmup: int = 1) -> float:
    """Median CPU time of fn() in seconds (this process, all threads): insensitive to preemption."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def cpu_features() -> dict[str, object]:
    """Vector ISA flags and the nominal clock, from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split())
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8"]
    family = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    model = re.search(r"^model\s*:\s*(\d+)", text, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    return {"flags": {f: f in flags for f in wanted}, "family": int(family.group(1)) if family else None,
            "model": int(model.group(1)) if model else None, "mhz": float(mhz.group(1)) if mhz else None}


def gemm_peak(threads: int) -> dict[str, float]:
    """Best float32 GEMM rate over cache-resident shapes (GFLOP/s): the roofline's compute ceiling."""
    torch.set_num_threads(threads)
    best = {}
    for m, k, n in PEAK_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        seconds = timeit(lambda: torch.mm(a, b), repeat=100, warmup=5)["best_s"]
        best[f"{m}x{k}x{n}"] = 2 * m * k * n / seconds / 1e9
    return best


def bf16_projection_error(det, fast: FastPath, feats: torch.Tensor) -> float:
    """Max relative score error if the projection ran in bfloat16 (everything else as the engine)."""
    with torch.inference_mode():
        _, _, relevance, bias_relevance, _ = fast.head(feats)
        projected = (relevance.bfloat16() @ fast.head.components_t.bfloat16()).float() + fast.head.projection_offset
        rho = kernels.low_relevance_ratio(feats, relevance, det.k_)
        distance, _ = kernels.nearest_l1(projected, fast.centroids)
        score, _ = kernels.fuse_scores(distance, bias_relevance, rho, det.lambda_)
    return float(np.max(np.abs(score.numpy() / det.score(feats.numpy().astype(np.float64)) - 1)))


def main() -> None:
    det, feats_np, pca = problem()
    feats = torch.from_numpy(feats_np)
    fast = FastPath(det)
    expected = det.score(feats_np.astype(np.float64))
    engine_error = float(np.max(np.abs(fast(feats) / expected - 1)))
    P = det.fit_info["pca_components"]
    D = feats.shape[1]
    C = len(det.fitted_arrays()["weight"])
    flops = {"projection": 2 * B * D * P, "relevance (logits, G·W, ⊙)": 2 * B * D * C * 2 + B * D,
             "distances (L1 to C centroids)": 3 * B * P * C}
    before = load()
    blas = threadpool_limits(limits=1, user_api="blas")
    with torch.inference_mode():
        rel = fast.head(feats)[2]
    comp = fast.head.components_t
    rel16, comp16 = rel.bfloat16(), comp.bfloat16()
    keys_1t = ("reference", "engine_1t", "projection_1t", "projection_bf16_1t")
    calls = {"reference": (lambda: reference_way(det, pca, feats), 1), "engine_1t": (lambda: fast(feats), 10),
             "projection_1t": (lambda: torch.mm(rel, comp), 10), "projection_bf16_1t": (lambda: torch.mm(rel16, comp16), 10)}
    cpu: dict[str, list[float]] = {k: [] for k in keys_1t}
    wall: dict[str, list[float]] = {k: [] for k in (*keys_1t, "engine_2t")}
    for _ in range(ROUNDS):  # each quantity once per round, so slow phases of the load hit all alike
        torch.set_num_threads(1)
        for key in keys_1t:
            fn, repeat = calls[key]
            cpu[key].append(cpu_seconds(fn, repeat))
            wall[key].append(timeit(fn, repeat=repeat, warmup=0)["best_s"])
        torch.set_num_threads(2)
        wall["engine_2t"].append(timeit(lambda: fast(feats), repeat=10, warmup=1)["best_s"])
    peak1, peak2 = gemm_peak(1), gemm_peak(2)
    blas.restore_original_limits()
    after = load()
    cpu_s = {k: float(np.median(v)) for k, v in cpu.items()}
    best = {k: float(np.min(v)) for k, v in wall.items()}
    ref = cpu_s["reference"]
    budget = ref / TARGET
    peak_1t = max(max(peak1.values()), flops["projection"] / best["projection_1t"] / 1e9)
    peak_2t = max(peak2.values())
    floor_1t = flops["projection"] / (peak_1t * 1e9)
    floor_2t = flops["projection"] / (peak_2t * 1e9)
    bf16_error = bf16_projection_error(det, fast, feats)
    payload = {"batch": B, "D": D, "C": C, "P": P, "k": det.k_, "flops": flops, "cpu": cpu_features(),
               "cpu_time_median_s": cpu_s, "wall_best_s": best, "gemm_peak_gflops_1t": peak1,
               "gemm_peak_gflops_2t": peak2, "budget_s_for_20x": budget, "projection_floor_s_1t": floor_1t,
               "projection_floor_s_2t": floor_2t,
               "speedup_1t_cpu_time": ref / cpu_s["engine_1t"], "speedup_1t_wall_best": best["reference"] / best["engine_1t"],
               "speedup_2t_wall_best": best["reference"] / best["engine_2t"],
               "max_speedup_at_peak_1t": ref / floor_1t, "max_speedup_at_peak_2t": ref / floor_2t,
               "engine_fp32_max_rel_error": engine_error, "bf16_projection_max_rel_error": bf16_error,
               "load_before": before, "load_after": after, "rounds": ROUNDS}
    ms = lambda s: f"{s * 1e3:.3f}"  # noqa: E731
    info = payload["cpu"]
    lines = [
        f"Batch {B}, D = {D}, C = {C}, P = {P}, k = {det.k_} (the problem of scoring_stage.py). CPU family "
        f"{info['family']} model {info['model']}, {info['mhz']} MHz; /proc/cpuinfo flags: "
        + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in info["flags"].items()) + ".",
        f"Load before/after: {before['loadavg_1_5_15']} / {after['loadavg_1_5_15']} on {before['cores']} cores. "
        f"{ROUNDS} interleaved rounds.", "",
        "| quantity | CPU time, median ms | wall, best ms | speed-up vs reference (CPU time) | (wall, best) |",
        "|---|---|---|---|---|"]
    for key in keys_1t:
        lines.append(f"| {key} | {ms(cpu_s[key])} | {ms(best[key])} | {ref / cpu_s[key]:.1f}× | "
                     f"{best['reference'] / best[key]:.1f}× |")
    lines.append(f"| engine_2t | — | {ms(best['engine_2t'])} | — | {best['reference'] / best['engine_2t']:.1f}× |")
    lines += [
        "", "## The roofline",
        f"- FLOPs: projection {flops['projection'] / 1e6:.1f} M, relevance {flops['relevance (logits, G·W, ⊙)'] / 1e6:.2f} M, "
        f"distances {flops['distances (L1 to C centroids)'] / 1e6:.2f} M: the projection is "
        f"{flops['projection'] / sum(flops.values()):.1%} of the stage. Operands 1.6 MB (L2/L3-resident): compute-bound.",
        f"- float32 GEMM peak measured on this machine (cache-resident shapes, best wall time): 1 thread "
        f"{peak_1t:.1f} GFLOP/s ({', '.join(f'{k} {v:.0f}' for k, v in peak1.items())}); 2 threads {peak_2t:.1f} "
        f"({', '.join(f'{k} {v:.0f}' for k, v in peak2.items())}). The engine's projection runs at "
        f"{flops['projection'] / best['projection_1t'] / 1e9:.1f} GFLOP/s on 1 thread.",
        f"- 20× the reference ({ms(ref)} ms of CPU time) leaves {ms(budget)} ms for the whole stage. The "
        f"projection alone needs ≥ {ms(floor_1t)} ms at the 1-thread peak: at most {ref / floor_1t:.1f}× even if "
        f"everything else were free. At the 2-thread peak ≥ {ms(floor_2t)} ms (at most {ref / floor_2t:.1f}×), "
        "with both cores to itself — which a live monitor never has: capture runs beside it.",
        f"- The engine today: {ref / cpu_s['engine_1t']:.1f}× on 1 thread (CPU time; "
        f"{best['reference'] / best['engine_1t']:.1f}× in best wall times), {best['reference'] / best['engine_2t']:.1f}× "
        f"on 2 threads (best wall times, distorted by the load); its scores differ from NeroDetector (float64) by "
        f"≤ {engine_error:.1e} relative.",
        f"- The only faster arithmetic here is bfloat16 (avx512_bf16): the projection in "
        f"{ms(cpu_s['projection_bf16_1t'])} ms, but the score then differs by up to {bf16_error:.1e} relative — "
        "far outside the ≤ 1e-6 the target requires.", ""]
    path = write_results("scoring_roofline", cpu_name(), payload, "\n".join(lines))
    print("\n".join(lines))
    print(f"written {path}")


if __name__ == "__main__":
    main()
