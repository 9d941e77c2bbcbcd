"""Test numbers of the shrinkage sweep's pick beside the shipped λ, read after the verdict (never by a rule).

benchmarks/shrinkage_sweep.py chose λ on validation only. This script then fits the shipped fusion as
`stream-monitor fit --fit-over capture-chain` does (the seed's ID train features plus their copies after every
benign change, out-of-fold halves by source image) with each given λ, and scores the test sets of
benchmarks/operating_point.py against the seed's ID test part: AUROC / FPR95 (paper convention), threshold-free.
The λ = 0.1 column re-computes the shipped artifacts' numbers (operating_point.md, "capture-chain fit"), a check
that this path is the product's.

    python benchmarks/shrinkage_test_report.py --work-dir runs/seeds-e20 --seeds 0,1,2,3,4 \
        --out docs/results/shrinkage-sweep

Reads the train copies cached by benchmarks/fit_set_sweep.py (.cache/fit-set-sweep/) and the shared feature cache.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_metrics, parse_seed_sweep_arguments, seed_models, write_report  # noqa: E402
from fit_set_sweep import seed_features  # noqa: E402
from operating_point import separation_table, sets_for  # noqa: E402
from shrinkage_sweep import fusion  # noqa: E402

from stream_monitor.baselines.fusion import stack_copies  # noqa: E402
from stream_monitor.data.features import default_cache_dir, extract_paths, model_fingerprint  # noqa: E402
from stream_monitor.evaluation.benign_changes import CHANGES  # noqa: E402
from stream_monitor.evaluation.ood_metrics import evaluate  # noqa: E402

SHRINKAGES = (0.1, 0.3)  # the shipped λ and the sweep's pick


def main() -> None:
    args = parse_seed_sweep_arguments(__doc__)
    changes = [c for c in CHANGES if c != "none"]
    table: dict[str, dict[str, dict[str, list[float]]]] = {}
    for seed, split, model in seed_models(args):
        weight, bias = model.head_arrays()
        fingerprint = model_fingerprint(model)
        stored = seed_features(model, split, Path(".cache/fit-set-sweep") / f"{args.arch}_seed{seed}.npz")
        train = extract_paths(model, split.paths("train"), "ID train", default_cache_dir(), fingerprint, progress=False)
        views = [train.extended()] + [stored[f"train {c}"] for c in changes]  # as `fit --fit-over capture-chain`
        x, y, groups = stack_copies(views, split.labels("train"))
        sets = {name: extract_paths(model, paths, name, default_cache_dir(), fingerprint, progress=False).extended()
                for name, paths in sets_for(split).items()}
        for shrinkage in SHRINKAGES:
            det = fusion(shrinkage).fit(x, y, weight, bias, groups=groups)
            id_scores = det.score(sets["ID test"])
            for name, features in sets.items():
                if name == "ID test":
                    continue
                add_metrics(table, (f"{shrinkage:g}", name), evaluate(id_scores, det.score(features)))
        print(f"seed {seed} done", flush=True)
    labels_ = [f"{s:g}" for s in SHRINKAGES]
    lines = [f"# Shrinkage: test numbers of the sweep's pick, seeds {args.seeds}", "",
             "Read after the validation verdict (sweep.md), never by a rule. The shipped fusion fitted over the capture "
             "chain with each λ; AUROC / FPR95 (%, paper convention) against the seed's ID test part, mean ± sample "
             "std over seeds, two decimals. Regenerate: docstring of benchmarks/shrinkage_test_report.py.", "",
             *separation_table(table, {k: f"λ = {k}" for k in labels_})]
    write_report(args.out, "test_report", {"seeds": args.seeds, "against_id_test": table}, lines)


if __name__ == "__main__":
    main()
