"""Which block's statistics, and how much shrinkage: the sweep behind STATS_BLOCK, on validation data only.

For each split seed's classifier (the five-seed study's models), the pooled statistics of every EfficientNet
block (models/block_stats.py `block_statistics`) of the seed's ID train, ID validation and validation OOD
images (the validation part of the HyperKvasir OOD classes; never a test image), then each candidate's
validation AUROC / FPR95, mean ± std over seeds. Only validation numbers are computed here: the test
numbers of the chosen detector come from `stream-monitor eval --seeds` (docs/results/dev-benchmark-seeds-e20).

    python benchmarks/block_stats_sweep.py --work-dir runs/seeds-e20 --seeds 0,1,2,3,4 \
        --out docs/results/block-stats-sweep
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_monitor.baselines import create_baseline  # noqa: E402
from stream_monitor.baselines.block_stats import BlockStatsMahalanobis  # noqa: E402
from stream_monitor.baselines.fusion import ZScoreFusion, nero_residual  # noqa: E402
from stream_monitor.data.images import read_image  # noqa: E402
from stream_monitor.data.split import load_split, resplit  # noqa: E402
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT, ood_validation_split  # noqa: E402
from stream_monitor.evaluation.ood_metrics import evaluate  # noqa: E402
from stream_monitor.models.block_stats import block_statistics, forward_with_blocks  # noqa: E402
from stream_monitor.models.registry import load_classifier  # noqa: E402
from stream_monitor.preprocess import preprocess_batch  # noqa: E402


@torch.inference_mode()
def all_block_stats(model, paths: list[Path], batch: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """Penultimate features (N, D) and, per block, its statistics (N, 2 C_b)."""
    n_blocks = len(model.backbone.blocks)
    features, stats = [], [[] for _ in range(n_blocks)]
    for start in range(0, len(paths), batch):
        images = torch.from_numpy(preprocess_batch([read_image(p) for p in paths[start:start + batch]]))
        pooled, _, kept = forward_with_blocks(model, images, tuple(range(n_blocks)))
        features.append(pooled.double().numpy())
        for b, out in enumerate(kept):
            stats[b].append(block_statistics(out).double().numpy())
    return np.concatenate(features), [np.concatenate(s) for s in stats]


def candidates(n_blocks: int) -> dict[str, tuple[str, object]]:
    """name → (which block's statistics it reads, or "" for the feature alone; factory)."""
    out: dict[str, tuple[str, object]] = {
        "neco": ("", lambda: create_baseline("neco")),
        "fusion z(nero-r)+z(neco) (the shipped alert before)": ("", lambda: ZScoreFusion(
            [nero_residual, lambda: create_baseline("neco")], ("nero-r", "neco"))),
    }
    for b in range(n_blocks):
        out[f"bstats block {b}"] = (str(b), BlockStatsMahalanobis)
    for shrinkage in (0.01, 0.3):
        out[f"bstats block 5, shrinkage {shrinkage}"] = ("5", lambda s=shrinkage: BlockStatsMahalanobis(s))
    for b in range(3, n_blocks):
        out[f"z(neco)+z(bstats block {b})"] = (str(b), lambda: ZScoreFusion(
            [lambda: create_baseline("neco"), BlockStatsMahalanobis], ("neco", "bstats")))
    out["z(nero-r)+z(neco)+z(bstats block 5)"] = ("5", lambda: ZScoreFusion(
        [nero_residual, lambda: create_baseline("neco"), BlockStatsMahalanobis], ("nero-r", "neco", "bstats")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="efficientnet_lite0_seed{S}_e{E}.pt per seed")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_split(DEFAULT_SPLIT)
    rows: dict[str, list] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        split = base if seed == base.seed else resplit(base, seed)
        model, _ = load_classifier(args.work_dir / f"efficientnet_lite0_seed{seed}_e{args.epochs}.pt")
        model.eval()
        weight, bias = model.head_arrays()
        validation, _ = ood_validation_split(split)
        sets = {"train": split.paths("train"), "val": split.paths("val"),
                "ood_val": [p for paths in validation.values() for p in paths]}
        data = {name: all_block_stats(model, paths) for name, paths in sets.items()}

        def view(name: str, block: str) -> np.ndarray:
            features, stats = data[name]
            return features if not block else np.hstack([features, stats[int(block)]])

        for name, (block, factory) in candidates(len(model.backbone.blocks)).items():
            det = factory().fit(view("train", block), split.labels("train"), weight, bias)
            rows.setdefault(name, []).append(evaluate(det.score(view("val", block)), det.score(view("ood_val", block))))
        print(f"seed {seed} done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table = {name: {"auroc": [m.auroc for m in ms], "fpr95": [m.fpr95 for m in ms]} for name, ms in rows.items()}
    (args.out / "sweep.json").write_text(json.dumps({"seeds": args.seeds, "validation": table}, indent=1))
    lines = [f"# Block statistics: validation sweep over seeds {args.seeds}", "",
             "ID validation vs the validation part of the HyperKvasir OOD classes (no test image); "
             "AUROC and FPR95 (paper convention) in %, mean ± std over seeds. Regenerate: see the docstring of "
             "benchmarks/block_stats_sweep.py.", "",
             "| candidate | validation AUROC | validation FPR95 |", "|---|---:|---:|"]
    for name, t in sorted(table.items(), key=lambda kv: -np.mean(kv[1]["auroc"])):
        a, f = 100 * np.array(t["auroc"]), 100 * np.array(t["fpr95"])
        lines.append(f"| {name} | {a.mean():.1f} ± {a.std():.1f} | {f.mean():.1f} ± {f.std():.1f} |")
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
