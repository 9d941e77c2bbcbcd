"""Evaluate NERO (parity, robust, ablations, the chosen default) and every baseline on ID vs OOD sets.

Features are extracted once (and cached); each method is fitted on the split's ID train images only.
Writes report.json, report.csv, report.md, ROC curves and score histograms into --out.

examples:
  stream-monitor eval --dev-benchmark --out results/dev        # bundled model, the committed split, all dev OOD sets
  stream-monitor eval --id-test data/normal --ood polyps=data/polyps --ood clip=video.mp4 --out results/mine
  stream-monitor eval --dev-benchmark --seeds 0,1,2,3,4 --epochs 8 --work-dir runs/seeds --out results/seeds
  stream-monitor eval --model runs/convnext.pt --id-train data/train --id-val data/val --id-test data/test \
      --ood polyps=data/polyps --out results/convnext      # own folders (one sub-folder per class)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError
from ..evaluation.datasets import Source, external_sources, ood_validation_split, parse_named_source, source_from_path
from ..evaluation.dev_benchmark import EvaluationInputs, evaluate_all
from ..evaluation.seeds import SEED_ARCH, evaluate_seeds
from ..training.augment import RECIPES
from ._common import add_model_arguments, add_split_arguments, cache_dir, load_model, load_split_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_split_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--dev-benchmark", action="store_true",
                        help="the development benchmark: HyperKvasir OOD classes (test part) plus CVC-ClinicDB, "
                        "the gastric-ulcer clip and PolypGen normal footage from ../shared/data")
    parser.add_argument("--id-test", type=Path, help="folder or video of ID test frames (default: the split's ID test)")
    parser.add_argument("--ood", action="append", default=[], metavar="NAME=PATH",
                        help="an OOD set: a folder of images or a video file (repeatable)")
    parser.add_argument("--stride", type=int, default=1, help="keep every n-th frame of video OOD sets")
    parser.add_argument("--no-odin", action="store_true", help="skip ODIN (it needs a gradient pass over every image)")
    parser.add_argument("--no-fusions", action="store_true",
                        help="skip the NERO-based fusions (each refits its components three times)")
    parser.add_argument("--adascale", action="store_true",
                        help="also run AdaSCALE-A/-L (a gradient and a second forward pass over every image)")
    parser.add_argument("--seeds", help="comma-separated split seeds: train one classifier per seed and report mean ± std "
                        "(--arch picks its architecture, default efficientnet_lite0; checkpoints are "
                        "<work-dir>/<arch>_seed<S>_e<E>.pt)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per seed (with --seeds)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/seeds"), help="where per-seed classifiers go")
    parser.add_argument("--augment", default="paper", choices=RECIPES,
                        help="training augmentation recipe per seed (with --seeds; as train --augment). A checkpoint "
                        "already in --work-dir is reused only if its sidecar records the same recipe and epochs")


def ood_sources(args: argparse.Namespace, split) -> tuple[list[Source], dict[str, list[Path]]]:
    sources = [parse_named_source(text, args.stride) for text in args.ood]
    validation: dict[str, list[Path]] = {}
    if args.dev_benchmark:
        validation, test = ood_validation_split(split)
        hk = [Source(f"hk-{name}", "files", files=tuple(paths), note="HyperKvasir, test part") for name, paths in test.items()]
        pooled = Source("hk-all-ood", "files", files=tuple(p for paths in test.values() for p in paths),
                        note="all HyperKvasir OOD test images pooled")
        sources = hk + [pooled] + external_sources() + sources
    if not sources:
        raise InputError("no OOD set: pass --dev-benchmark or at least one --ood NAME=PATH")
    return sources, validation


def _display(path: Path) -> str:
    """A path as a reader of the report can use it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def run(args: argparse.Namespace) -> int:
    split = load_split_arg(args)
    if not split.subsets["test"] and args.id_test is None:
        raise InputError("no ID test images: --id-train/--id-val leave none for testing; pass --id-test DIR "
                         "(ID frames used for nothing else), or give one folder with --id-dir to split off a test part")
    sources, validation = ood_sources(args, split)
    id_test = source_from_path("id-test", args.id_test, args.stride) if args.id_test else None
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
        evaluate_seeds(split, seeds, args.epochs, args.work_dir, args.out, cache_dir(args), args.dev_benchmark,
                       [parse_named_source(t, args.stride) for t in args.ood], odin=not args.no_odin,
                       adascale=args.adascale, augment=args.augment, arch=args.arch or SEED_ARCH)
    else:
        model, model_sha = load_model(args)
        inputs = EvaluationInputs(model, split, sources, validation, id_test, model_sha, _display(args.model))
        evaluate_all(inputs, args.out, cache_dir(args), odin=not args.no_odin, adascale=args.adascale,
                              fusions=not args.no_fusions)
    print((args.out / "report.md").read_text())
    print(f"report written to {args.out}/ (report.md, report.json, report.csv, *.png)")
    return 0
