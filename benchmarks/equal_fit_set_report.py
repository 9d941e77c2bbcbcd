"""Does the shipped alert still lead when every method gets the same fit set? A fairness check, read only.

`stream-monitor eval --seeds` fits every method on the ID train images as stored, while the shipped alert is fitted
over the capture chain (`fit --fit-over capture-chain`: the train images plus a copy of each after every benign
change, 15 × the rows). This script fits *every* method of the main table both ways, on each seed's features, and
reports AUROC / FPR95 (paper convention, threshold-free) of the HyperKvasir OOD test part and CVC-ClinicDB against
the seed's ID test part, mean ± sample std over seeds. A z-score fusion fitted over the chain standardises out of
fold by source image, as `fit` does. Nothing here chooses anything: the detector was chosen on validation data
(docs/results/dev-benchmark-seeds-e20, fit-set-sweep, shrinkage-sweep); this only asks whether the comparison in
docs/results/detection-quality.md depends on the fit set the others got.

    python benchmarks/equal_fit_set_report.py --work-dir runs/seeds-e20 --seeds 0,1,2,3,4 \
        --out docs/results/equal-fit-set

The shipped row ("fusion z(neco)+z(bstats), shrinkage 0.3") is the served fusion with the bundled option. Reads the
train copies cached by benchmarks/fit_set_sweep.py (.cache/fit-set-sweep/) and the shared feature cache.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_metrics, parse_seed_sweep_arguments, seed_models, write_report  # noqa: E402
from fit_set_sweep import seed_features  # noqa: E402
from operating_point import sets_for  # noqa: E402

from stream_monitor.baselines.fusion import create_fusion, fit_detector, stack_copies  # noqa: E402
from stream_monitor.data.features import default_cache_dir, extract_paths, model_fingerprint  # noqa: E402
from stream_monitor.evaluation.benign_changes import CHANGES  # noqa: E402
from stream_monitor.evaluation.methods import Method, headline_methods  # noqa: E402
from stream_monitor.evaluation.ood_metrics import evaluate  # noqa: E402

SETS = ("HyperKvasir OOD test part", "CVC-ClinicDB polyps")
FIT_SETS = ("clean", "capture-chain")
SHIPPED = Method("fusion z(neco)+z(bstats), shrinkage 0.3", "fusion",
                 lambda: create_fusion("fusion z(neco)+z(bstats)", {"bstats": {"shrinkage": 0.3}}), block_stats=True)


def main() -> None:
    args = parse_seed_sweep_arguments(__doc__)
    changes = [c for c in CHANGES if c != "none"]
    methods = [SHIPPED] + headline_methods()
    table: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    for seed, split, model in seed_models(args):
        weight, bias = model.head_arrays()
        fingerprint = model_fingerprint(model)
        stored = seed_features(model, split, Path(".cache/fit-set-sweep") / f"{args.arch}_seed{seed}.npz")
        train = extract_paths(model, split.paths("train"), "ID train", default_cache_dir(), fingerprint, progress=False)
        labels = np.asarray(split.labels("train"))
        fit_sets = {"clean": (train.extended(), labels, None),
                    "capture-chain": stack_copies([train.extended()] + [stored[f"train {c}"] for c in changes], labels)}
        sets = {name: extract_paths(model, paths, name, default_cache_dir(), fingerprint, progress=False).extended()
                for name, paths in sets_for(split).items() if name in SETS + ("ID test",)}
        dim = train.features.shape[1]
        for method in methods:
            view = (lambda x: x) if method.block_stats else (lambda x: x[:, :dim])
            for fit_set, (x, y, groups) in fit_sets.items():
                det = fit_detector(method.build(), view(np.asarray(x, np.float64)), y, weight, bias, groups)
                id_scores = det.score(view(sets["ID test"]))
                for name in SETS:
                    add_metrics(table, (method.name, fit_set, name), evaluate(id_scores, det.score(view(sets[name]))))
        print(f"seed {seed} done", flush=True)
    write(args, table)


def _cell(values: dict[str, list[float]]) -> str:
    a, f = 100 * np.array(values["auroc"]), 100 * np.array(values["fpr95"])
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f} / {f.mean():.2f} ± {f.std(ddof=1):.2f}"


def write(args, table: dict) -> None:
    target = SETS[0]

    def fpr(name: str, fit_set: str) -> float:
        return float(np.mean(table[name][fit_set][target]["fpr95"]))

    order = sorted(table, key=lambda name: min(fpr(name, s) for s in FIT_SETS))
    lines = [f"# Every method on the same fit set, seeds {args.seeds}", "",
             "AUROC / FPR95 (%, paper convention) against the seed's ID test part, mean ± sample std over seeds; each "
             "method fitted on the ID train images as stored (clean, as `eval --seeds`) and over the capture chain "
             "(as the shipped alert). Sorted by the lower of the two mean FPR95 on the HyperKvasir OOD test part. "
             "Read only: nothing was chosen on these numbers. Regenerate: docstring of "
             "benchmarks/equal_fit_set_report.py.", "",
             "| method | " + " | ".join(f"{s}, {f}" for s in SETS for f in FIT_SETS) + " |",
             "|---|" + "---:|" * (len(SETS) * len(FIT_SETS))]
    for name in order:
        lines.append(f"| {name} | " + " | ".join(_cell(table[name][f][s]) for s in SETS for f in FIT_SETS) + " |")
    best = {f: min(table, key=lambda name: fpr(name, f)) for f in FIT_SETS}
    lines += ["", "Lowest mean FPR95 on the HyperKvasir OOD test part: "
              + "; ".join(f"{f} fit: {best[f]} ({100 * fpr(best[f], f):.2f})" for f in FIT_SETS) + "."]
    write_report(args.out, "report", {"seeds": args.seeds, "methods": table}, lines)


if __name__ == "__main__":
    main()
