"""Nearest-memory search for the site model: exact torch matrix product (what PatchMemory does) against
its round-8 formulation (three passes over the distance block, 4096-row chunks), faiss-cpu's exact
IndexFlatL2 and its approximate HNSW index, at the live size (one frame = 784 patches,
real patch descriptors of PolypGen centre A: memories = k-center coresets of three of its normal
recordings, queries = one of its polyp frames; features from the evaluation cache), 1 thread, side by side in one run. Needs `pip install faiss-cpu`
(benchmark only; not a runtime dependency).

    python benchmarks/nn_search.py     # → benchmarks/results/nn_search-<cpu>-torch<v>.{json,md}
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, cpu_name, load, slug, timeit, versions  # noqa: E402

from stream_monitor.evaluation.site_features import frame_groups, load_group  # noqa: E402
from stream_monitor.site.patch_memory import PatchMemory  # noqa: E402


def previous_nearest(memory: PatchMemory, queries: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """PatchMemory.nearest as it was until round 9: ‖q‖² + ‖m‖² − 2 q·m summed before the minimum."""
    q, bank = torch.from_numpy(queries), torch.from_numpy(memory.bank)
    bank_sq = (bank ** 2).sum(1)
    out = torch.empty(len(q))
    with torch.inference_mode():
        for start in range(0, len(q), chunk):
            part = q[start:start + chunk]
            squared = (part ** 2).sum(1, keepdim=True) + bank_sq - 2.0 * part @ bank.T
            out[start:start + chunk] = squared.min(1).values.clamp_min_(0).sqrt_()
    return out.numpy()


def main() -> int:
    import faiss

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    groups = frame_groups()
    normal = [load_group(f"A/{seq}", "imagenet", groups[f"A/{seq}"]) for seq in ("seq03", "seq05", "seq07")]
    patches = np.concatenate([g.maps.astype(np.float32).transpose(0, 2, 3, 1)[g.valid] for g in normal])
    polyp = load_group("A/polyp", "imagenet", groups["A/polyp"])
    queries = np.ascontiguousarray(polyp.maps[0].astype(np.float32).reshape(152, -1).T)  # one polyp frame
    rows = []
    for memory_size in (2000, 3408, 8000):
        memory = PatchMemory.fit(patches, memory_size, seed=0)
        bank = memory.bank
        flat = faiss.IndexFlatL2(152)
        flat.add(bank)
        hnsw = faiss.IndexHNSWFlat(152, 32)
        hnsw.hnsw.efSearch = 64
        hnsw.add(bank)
        exact = memory.nearest(queries)
        approx = np.sqrt(np.maximum(hnsw.search(queries, 1)[0][:, 0], 0))
        flat_d = np.sqrt(np.maximum(flat.search(queries, 1)[0][:, 0], 0))
        previous = previous_nearest(memory, queries)
        timings = {"torch exact (PatchMemory.nearest)": timeit(lambda: memory.nearest(queries), repeat=30),
                   "torch exact, round-8 formulation": timeit(lambda: previous_nearest(memory, queries), repeat=30),
                   "faiss IndexFlatL2 (exact)": timeit(lambda: flat.search(queries, 1), repeat=30),
                   "faiss HNSW32 efSearch 64 (approximate)": timeit(lambda: hnsw.search(queries, 1), repeat=30)}
        for name, t in timings.items():
            rows.append({"memory": memory_size, "method": name, "ms_per_frame": 1000 * t["median_s"],
                         "vs_torch": t["median_s"] / timings["torch exact (PatchMemory.nearest)"]["median_s"]})
        rows[-3]["max_rel_diff_vs_torch"] = float(np.max(np.abs(previous - exact) / exact))
        rows[-2]["max_rel_diff_vs_torch"] = float(np.max(np.abs(flat_d - exact) / exact))
        rows[-1]["share_exact_nn_distance"] = float(np.mean(np.abs(approx - exact) <= 1e-3 * exact))
    result = {"benchmark": "nn_search", "cpu": cpu_name(), "versions": {**versions(), "faiss": faiss.__version__},
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "threads": 1,
              "queries": 784, "dim": 152, "load": load(), "rows": rows}
    name = f"nn_search-{slug(' '.join(cpu_name().split()[:2]))}-torch{torch.__version__.split('+')[0]}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# nn_search", "", f"{result['cpu']}; " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
             + f"; {result['time']}; 1 thread; 784 queries × 152 dims (one frame); load {result['load']['loadavg_1_5_15']}",
             "", "| memory | method | ms/frame (median) | × torch | note |", "|---|---|---|---|---|"]
    for r in rows:
        note = (f"max rel. diff {r['max_rel_diff_vs_torch']:.1e}" if "max_rel_diff_vs_torch" in r else
                f"exact NN found for {r['share_exact_nn_distance']:.0%}" if "share_exact_nn_distance" in r else "")
        lines.append(f"| {r['memory']} | {r['method']} | {r['ms_per_frame']:.1f} | {r['vs_torch']:.2f} | {note} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
