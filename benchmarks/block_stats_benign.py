"""Benign change for the block-statistics variants of benchmarks/block_stats_sweep.py, over split seeds: does
weighting block 5's statistics by the lit scope region make the alert robust to re-framing (crop / shift)?

For each seed's classifier: the sweep's statistics (plain mean and std of block 5, and the VARIANTS) of the
seed's ID train and validation images and of its ID test frames after every change of
stream_monitor/evaluation/benign_changes.py, taken the live path's way (ScopeMasker("auto"), 224 resize,
normalisation; as benchmarks/benign_change.py). Each candidate is fitted on ID train, thresholded at 95 % TPR
on ID validation, and its false-alert rate per change is reported, mean over seeds. Validation and ID test
frames only: no OOD image is read.

    python benchmarks/block_stats_benign.py --work-dir runs/seeds-e20 --out benchmarks/results/block-stats-benign
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from block_stats_sweep import VARIANT_BLOCK, all_block_stats, variant_statistics  # noqa: E402
from common import add_seed_model_arguments, cpu_name, seed_models  # noqa: E402

from stream_monitor.baselines import create_baseline  # noqa: E402
from stream_monitor.baselines.block_stats import BlockStatsMahalanobis  # noqa: E402
from stream_monitor.baselines.fusion import ZScoreFusion  # noqa: E402
from stream_monitor.calibration import calibrate_threshold  # noqa: E402
from stream_monitor.evaluation.benign_changes import CHANGES, changed_images  # noqa: E402
from stream_monitor.models.block_stats import block_statistics, forward_with_blocks  # noqa: E402

STATS = {"plain": str(VARIANT_BLOCK), "scope-weighted": "scope-weighted"}


def candidates() -> dict[str, tuple[str, object]]:
    out = {}
    for label, key in STATS.items():
        out[f"bstats block 5 ({label})"] = (key, BlockStatsMahalanobis)
        out[f"z(neco)+z(bstats block 5 ({label}))"] = (key, lambda: ZScoreFusion(
            [lambda: create_baseline("neco"), BlockStatsMahalanobis], ("neco", "bstats")))
    return out


@torch.inference_mode()
def changed_stats(model, paths: list[Path], change: str, batch: int = 24) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features and block-5 statistics (plain and variants) of `paths` after `change`, the live path's way."""
    features, stats = [], {}
    for start in range(0, len(paths), batch):
        images = changed_images(paths[start:start + batch], change)
        pooled, _, (block,) = forward_with_blocks(model, images, (VARIANT_BLOCK,))
        features.append(pooled.double().numpy())
        stats.setdefault(str(VARIANT_BLOCK), []).append(block_statistics(block).double().numpy())
        for name, values in variant_statistics(block, images).items():
            stats.setdefault(name, []).append(values)
    return np.concatenate(features), {k: np.concatenate(v) for k, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_model_arguments(parser)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    changes = list(CHANGES)  # "none" (unchanged) first
    rates: dict[str, dict[str, list[float]]] = {}
    for seed, split, model in seed_models(args):
        weight, bias = model.head_arrays()
        fit = {name: all_block_stats(model, split.paths(name)) for name in ("train", "val")}
        test = {c: changed_stats(model, split.paths("test"), c) for c in changes}

        def view(data: tuple[np.ndarray, dict[str, np.ndarray]], key: str) -> np.ndarray:
            return np.hstack([data[0], data[1][key]])

        for name, (key, factory) in candidates().items():
            det = factory().fit(view(fit["train"], key), split.labels("train"), weight, bias)
            threshold = calibrate_threshold(det.score(view(fit["val"], key)), 0.95).threshold
            for c in changes:
                rates.setdefault(name, {}).setdefault(c, []).append(float(np.mean(det.score(view(test[c], key)) > threshold)))
        print(f"seed {seed} done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"seeds": args.seeds, "changes": changes, "false_alert_rate": rates, "cpu": cpu_name(),
               "torch": torch.__version__, "seconds": round(time.time() - started, 1)}
    (args.out / "block_stats_benign.json").write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(args.out, payload)


def write_markdown(out: Path, payload: dict) -> None:
    changes, rates = payload["changes"], payload["false_alert_rate"]
    lines = [f"# Block statistics under benign change: plain vs scope-weighted, seeds {payload['seeds']}", "",
             "False-alert rate in % on each seed's ID test frames after the change, threshold at 95 % TPR on the "
             "seed's ID validation images; mean over seeds (worst seed in brackets). Regenerate: docstring of "
             "benchmarks/block_stats_benign.py.", "",
             "| candidate | " + " | ".join(changes) + " | worst change |", "|---|" + "---:|" * (len(changes) + 1)]
    for name, r in rates.items():
        means = {c: 100 * np.mean(v) for c, v in r.items()}
        cells = " | ".join(f"{means[c]:.1f} ({100 * max(r[c]):.1f})" for c in changes)
        lines.append(f"| {name} | {cells} | {max(means[c] for c in changes if c != 'none'):.1f} |")
    (out / "block_stats_benign.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
