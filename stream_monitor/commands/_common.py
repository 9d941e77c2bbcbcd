"""Arguments and loaders shared by the offline commands (fit, eval, explain)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import bundled
from ..data.features import default_cache_dir
from ..data.folders import split_from_options
from ..data.split import Split, load_split, resplit
from ..evaluation.datasets import DEFAULT_SPLIT
from ..models.base import ClassifierAdapter
from ..models.registry import ARCH_HELP, load_model_file, sha256_file


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=bundled.MODEL,
                        help="classifier checkpoint with its .json sidecar (default: the bundled EfficientNet-Lite0)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow whole-model pickle checkpoints (they can run arbitrary code when loaded)")
    parser.add_argument("--arch", help=f"{ARCH_HELP}. For a checkpoint without a stream-monitor sidecar (e.g. the "
                        "NERO paper's ResNet-18 / DeiT-S weights, or your own state dict); needs --num-classes. "
                        "Not needed for .pt2 files (torch.export programs) or checkpoints with a sidecar")
    parser.add_argument("--num-classes", type=int, help="classes of the --arch checkpoint's head")
    parser.add_argument("--head", help="dotted name of the model's final nn.Linear (torchvision: and module; "
                        "default: the last nn.Linear, verified to make the logits), e.g. classifier.3")


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT,
                        help="split file with ID train/val/test (default: the committed HyperKvasir split)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where the split's images live, if not where the split file says")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="feature cache (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="extract features again, do not read or write the cache")
    add_own_data_arguments(parser)


def add_own_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Own labelled images instead of a split file (fit, eval, train)."""
    group = parser.add_argument_group("own data (instead of --split; one sub-folder per class)")
    group.add_argument("--id-train", type=Path, help="ID training images, e.g. data/train/<class>/*.jpg")
    group.add_argument("--id-val", type=Path, help="ID validation images with the same class folders (threshold)")
    group.add_argument("--id-dir", type=Path, help="one folder of class sub-folders, split per class into "
                       "train / val / test (50/20/30 %%) by --split-seed")
    group.add_argument("--split-seed", type=int, default=None,
                       help="seed of the --id-dir split (default 0); with a split file: re-split its classes with "
                       "this seed, as train --split-seed does (a classifier trained on seed S is fitted and "
                       "evaluated on seed S's split, never on another one that holds its training images)")
    group.add_argument("--split-out", type=Path, help="where the split built from these folders is written for the "
                       "record (default: beside --out, <out>.split.json or <out>/split.json)")


def load_model(args: argparse.Namespace) -> tuple[ClassifierAdapter, str]:
    """The classifier and the sha256 of its file; a bare checkpoint needs --arch and --num-classes."""
    model, _ = load_model_file(args.model, arch=getattr(args, "arch", None), num_classes=getattr(args, "num_classes", None),
                               head=getattr(args, "head", None), trust_pickle=args.trust_pickle)
    return model, sha256_file(args.model)


def split_record_path(args: argparse.Namespace) -> Path:
    """Where an own-data split is written: --split-out, else beside --out (a file) or inside it (a folder)."""
    if getattr(args, "split_out", None) is not None:
        return args.split_out
    out = Path(args.out)
    return out.with_suffix(".split.json") if out.suffix else out / "split.json"


def load_split_arg(args: argparse.Namespace) -> Split:
    """The committed / given split file, or one built and checked from --id-train/--id-val or --id-dir."""
    record = split_from_options(getattr(args, "id_train", None), getattr(args, "id_val", None),
                                getattr(args, "id_dir", None), getattr(args, "split_seed", None),
                                split_record_path(args))
    if record is not None:
        print(f"split of your folders (checked, with sha1 of every image) written to {record}")
        return load_split(record)
    split = load_split(args.split, args.data_root)
    seed = getattr(args, "split_seed", None)
    return resplit(split, seed) if seed is not None and seed != split.seed else split


def cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else args.cache_dir
