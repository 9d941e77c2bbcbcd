"""Shared by the benchmark scripts: timing, machine description, load, and the results files.

Results go to benchmarks/results/<name>-<cpu or gpu>-torch<version>.json and .md, with hardware,
versions, a timestamp, and the machine's load while it ran (this machine is shared: the load is part
of the number). Ratios are always between timings taken in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).with_name("results")


def timeit(fn: Callable[[], Any], repeat: int = 30, warmup: int = 3, min_time: float = 0.0) -> dict[str, float]:
    """Median and best wall time of fn() in seconds over `repeat` calls (at least `min_time` seconds)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - started < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "best_s": float(np.min(times)), "n": len(times)}


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", text)
        return model.group(1).strip() if model else platform.processor()
    except OSError:
        return platform.processor() or "cpu"


def cpu_flags() -> list[str]:
    try:
        flags = re.search(r"flags\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        return []
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
    return [f for f in wanted if flags and f in flags.group(1).split()]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("torch", "numpy", "numba", "openvino", "onnxruntime", "sklearn", "torch_tensorrt", "tensorrt"):
        try:
            module = __import__(name)
            found[name] = str(getattr(module, "__version__", "?")).split("-")[0]
        except Exception:
            continue
    return found


def load() -> dict[str, Any]:
    """Load average and the busiest other processes right now (the machine is shared)."""
    info: dict[str, Any] = {"loadavg_1_5_15": list(os.getloadavg()), "cores": os.cpu_count()}
    try:
        top = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=5).stdout.splitlines()[1:6]
        info["busiest"] = [line.strip()[:120] for line in top if str(os.getpid()) not in line.split()[0]]
    except Exception:
        pass
    return info


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def write_results(name: str, hardware: str, payload: dict[str, Any], markdown: str) -> Path:
    """Write <name>-<hardware>-torch<ver>.json/.md under benchmarks/results (or $BENCH_RESULTS_DIR)."""
    import torch

    out_dir = Path(os.environ.get("BENCH_RESULTS_DIR", RESULTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{slug(hardware)}-torch{torch.__version__.split('+')[0]}"
    payload = {"benchmark": name, "hardware": hardware, "cpu_flags": cpu_flags(), "versions": versions(),
               "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **payload}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    header = (f"# {name}\n\n{hardware} ({', '.join(payload['cpu_flags'])}); "
              f"{', '.join(f'{k} {v}' for k, v in payload['versions'].items())}; {payload['timestamp']}\n\n")
    (out_dir / f"{stem}.md").write_text(header + markdown)
    return out_dir / f"{stem}.json"


def add_metrics(table: dict, keys: tuple[str, ...], metrics: Any) -> None:
    """Append one seed's AUROC and FPR95 (`ood_metrics.evaluate`'s result) to the cell
    table[k0][k1]... = {"auroc": [...], "fpr95": [...]}, creating the path on first use."""
    for key in keys[:-1]:
        table = table.setdefault(key, {})
    cell = table.setdefault(keys[-1], {"auroc": [], "fpr95": []})
    cell["auroc"].append(metrics.auroc)
    cell["fpr95"].append(metrics.fpr95)


def write_report(out: Path, stem: str, payload: dict[str, Any], lines: list[str]) -> None:
    """A seed sweep's result: `out/<stem>.json` (the numbers) and `out/<stem>.md` (the table), printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def fitted_detector(model: Any) -> Any:
    """A calibrated NERO detector on the model's head (synthetic post-ReLU features: timing only)."""
    import numpy as np

    from stream_monitor.nero import NeroDetector

    rng = np.random.default_rng(0)
    weight, bias = model.head_arrays()
    features = np.maximum(rng.normal(0.5, 1.0, size=(model.feature_dim + 200, model.feature_dim)), 0)
    det = NeroDetector(mode="parity").fit(features[:-100], np.arange(len(features) - 100) % 3, weight, bias)
    det.calibrate(features[-100:])
    return det


def add_seed_model_arguments(parser: Any) -> None:
    """--work-dir / --arch / --seeds / --epochs: the classifiers of a five-seed study (`stream-monitor train
    --arch A --split-seed S --epochs E --out <work-dir>/A_seed{S}_e{E}.pt`)."""
    parser.add_argument("--work-dir", type=Path, required=True, help="<arch>_seed{S}_e{E}.pt per seed")
    from stream_monitor.evaluation.seeds import SEED_ARCH

    parser.add_argument("--arch", default=SEED_ARCH, help="the seed classifiers' architecture")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=20)


def seed_models(args: Any):  # type: ignore[no-untyped-def]
    """Yield (seed, the committed split re-drawn with that seed, its classifier in eval mode) per --seeds."""
    from stream_monitor.data.split import load_split, resplit
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
    from stream_monitor.evaluation.seeds import seed_checkpoint
    from stream_monitor.models.registry import load_classifier

    base = load_split(DEFAULT_SPLIT)
    for seed in [int(s) for s in args.seeds.split(",")]:
        split = base if seed == base.seed else resplit(base, seed)
        model, _ = load_classifier(seed_checkpoint(args.work_dir, args.arch, seed, args.epochs))
        yield seed, split, model.eval()


def parse_seed_sweep_arguments(doc: str) -> Any:
    """The command line of a validation sweep over seed models: the seed-model arguments and --out (its
    folder); the module docstring is the help. One torch thread, as every sweep result was measured."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    add_seed_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder for the sweep's tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args
