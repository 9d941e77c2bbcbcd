"""Mean ± std over split seeds: one classifier trained per seed of the ID split, each evaluated alike.

A different seed re-draws which ID images are train / validation / test (and which OOD images are
validation / test), so a classifier must be trained for each: re-using one model across seeds would
leak its training images into the test set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.split import Split, resplit
from ..models.registry import load_classifier, sha256_file
from ..training.train import train_classifier
from . import report as rep
from .datasets import Source, external_sources, ood_validation_split
from .dev_benchmark import EvaluationInputs, evaluate_all


def seed_sources(split: Split, dev_benchmark: bool, extra: list[Source]) -> tuple[list[Source], dict[str, list[Path]]]:
    if not dev_benchmark:
        return extra, {}
    validation, test = ood_validation_split(split)
    hk = [Source(f"hk-{n}", "files", files=tuple(p)) for n, p in test.items()]
    pooled = Source("hk-all-ood", "files", files=tuple(p for paths in test.values() for p in paths))
    return hk + [pooled] + external_sources() + extra, validation


def _training_complete(weights: Path) -> bool:
    """A checkpoint is reused only if its sidecar says the run finished (an interrupted run leaves one too)."""
    try:
        return json.loads(weights.with_suffix(".json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def evaluate_seeds(split: Split, seeds: list[int], epochs: int, work_dir: Path, out_dir: Path, cache_dir: Path | None,
                   dev_benchmark: bool, extra: list[Source], odin: bool = True) -> dict[str, Any]:
    """Train (or reuse) one classifier per seed, evaluate each into out_dir/seed-N, aggregate."""
    tables, per_seed = [], {}
    for seed in seeds:
        seed_split = split if seed == split.seed else resplit(split, seed)
        weights = work_dir / f"efficientnet_lite0_seed{seed}_e{epochs}.pt"
        if not _training_complete(weights):
            train_classifier(seed_split, weights, epochs=epochs, seed=seed, split_seed=None)
        model, meta = load_classifier(weights)
        sources, validation = seed_sources(seed_split, dev_benchmark, extra)
        inputs = EvaluationInputs(model, seed_split, sources, validation, None, sha256_file(weights), str(weights))
        report = evaluate_all(inputs, out_dir / f"seed-{seed}", cache_dir, odin=odin)
        tables.append(report["results"])
        per_seed[seed] = {"id_test_accuracy": report["meta"]["id_test_accuracy"],
                          "best_val_accuracy": meta.get("best_val_accuracy"),
                          "selected": report.get("selection", {}).get("options")}
    aggregated = rep.aggregate_seeds(tables)
    summary = {"meta": {"seeds": seeds, "epochs": epochs, "per_seed": per_seed}, "results": aggregated}
    out_dir.mkdir(parents=True, exist_ok=True)
    rep.write_json(out_dir / "report.json", summary)
    rep.write_csv(out_dir / "report.csv", aggregated)
    ood_sets = list(next(iter(aggregated.values())))
    text = [
        f"# OOD evaluation over {len(seeds)} split seeds ({', '.join(map(str, seeds))})",
        "",
        f"One EfficientNet-Lite0 trained per seed ({epochs} epochs, paper recipe). Cells: AUROC / FPR95 in %, "
        "mean ± std over seeds; `nero_default` is the configuration each seed selected on its own validation data.",
        "",
        rep.summary_markdown(aggregated, highlight={"nero_default", "nero_parity"}),
        "",
        "Per seed: " + json.dumps(per_seed),
        "",
    ] + [f"### {name}\n\n{rep.per_set_markdown(aggregated, name)}\n" for name in ood_sets]
    (out_dir / "report.md").write_text("\n".join(text))
    return summary
