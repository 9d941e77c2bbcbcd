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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_seed_model_arguments, seed_models  # noqa: E402

from stream_monitor.baselines import create_baseline  # noqa: E402
from stream_monitor.baselines.block_stats import BlockStatsMahalanobis  # noqa: E402
from stream_monitor.baselines.fusion import ZScoreFusion, nero_residual  # noqa: E402
from stream_monitor.data.images import read_image  # noqa: E402
from stream_monitor.evaluation.datasets import ood_validation_split  # noqa: E402
from stream_monitor.evaluation.ood_metrics import evaluate  # noqa: E402
from stream_monitor.models.block_stats import block_statistics, forward_with_blocks  # noqa: E402
from stream_monitor.preprocess import preprocess_batch  # noqa: E402

LIT_LEVEL = 20 / 255  # grey level above which a pixel is lit scope image (capture/scope_mask.py's threshold)
VARIANT_BLOCK = 5
VARIANTS = ("scope-weighted", "mean+std+p90")
"""Other statistics of block VARIANT_BLOCK, added in round 5 (validation only, like everything here):
- scope-weighted: mean and std weighted per cell by its share of lit pixels, so the black scope border and
  corners count less (meant to make the statistics robust to re-framing: crop / shift);
- mean+std+p90: the 90th spatial percentile per channel beside mean and std (a local finding such as a polyp
  raises a channel's upper tail more than its mean)."""


def variant_statistics(block_output: torch.Tensor, images: torch.Tensor) -> dict[str, np.ndarray]:
    """The VARIANTS of one batch: block output (B, C, h, w), normalised input images (B, 3, H, W)."""
    x = block_output.double().flatten(2)
    mean = x.mean(dim=2)
    std = (x - mean.unsqueeze(2)).square().mean(dim=2).sqrt()
    rgb = images.double() * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) + \
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    grey = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    lit = torch.nn.functional.adaptive_avg_pool2d((grey > LIT_LEVEL).double(), block_output.shape[-2:]).flatten(1)
    weight = (lit / lit.sum(dim=1, keepdim=True).clamp_min(1e-6)).unsqueeze(1)  # (B, 1, h·w)
    w_mean = (x * weight).sum(dim=2)
    w_std = ((x - w_mean.unsqueeze(2)).square() * weight).sum(dim=2).sqrt()
    p90 = torch.quantile(x, 0.9, dim=2)
    return {"scope-weighted": torch.cat([w_mean, w_std], 1).numpy(),
            "mean+std+p90": torch.cat([mean, std, p90], 1).numpy()}


@torch.inference_mode()
def all_block_stats(model, paths: list[Path], batch: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Penultimate features (N, D) and statistics by key: each block's index ("0" …) for its mean and std
    (N, 2 C_b), and the VARIANTS of block VARIANT_BLOCK."""
    n_blocks = len(model.backbone.blocks)
    features, stats = [], {}
    for start in range(0, len(paths), batch):
        images = torch.from_numpy(preprocess_batch([read_image(p) for p in paths[start:start + batch]]))
        pooled, _, kept = forward_with_blocks(model, images, tuple(range(n_blocks)))
        features.append(pooled.double().numpy())
        for b, out in enumerate(kept):
            stats.setdefault(str(b), []).append(block_statistics(out).double().numpy())
        for name, values in variant_statistics(kept[VARIANT_BLOCK], images).items():
            stats.setdefault(name, []).append(values)
    return np.concatenate(features), {k: np.concatenate(v) for k, v in stats.items()}


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
    # round 5: other statistics of block 5, and a third component beside the shipped pair
    for variant in VARIANTS:
        out[f"bstats block 5, {variant}"] = (variant, BlockStatsMahalanobis)
        out[f"z(neco)+z(bstats block 5, {variant})"] = (variant, lambda: ZScoreFusion(
            [lambda: create_baseline("neco"), BlockStatsMahalanobis], ("neco", "bstats")))
    for third in ("knn", "residual", "rmds", "vim"):
        out[f"z(neco)+z(bstats block 5)+z({third})"] = ("5", lambda t=third: ZScoreFusion(
            [lambda: create_baseline("neco"), BlockStatsMahalanobis, lambda: create_baseline(t)],
            ("neco", "bstats", t)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, list] = {}
    for seed, split, model in seed_models(args):
        weight, bias = model.head_arrays()
        validation, _ = ood_validation_split(split)
        sets = {"train": split.paths("train"), "val": split.paths("val"),
                "ood_val": [p for paths in validation.values() for p in paths]}
        data = {name: all_block_stats(model, paths) for name, paths in sets.items()}

        def view(name: str, block: str) -> np.ndarray:
            features, stats = data[name]
            return features if not block else np.hstack([features, stats[block]])

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
