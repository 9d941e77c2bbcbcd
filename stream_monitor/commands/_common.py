"""Arguments and loaders shared by the offline commands (fit, eval, explain)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import bundled
from ..data.features import default_cache_dir
from ..data.split import Split, load_split
from ..errors import InputError
from ..evaluation.datasets import DEFAULT_SPLIT
from ..models.base import ClassifierAdapter
from ..models.registry import create_model, list_models, load_checkpoint, load_classifier, sha256_file


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=bundled.MODEL,
                        help="classifier checkpoint with its .json sidecar (default: the bundled EfficientNet-Lite0)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow whole-model pickle checkpoints (they can run arbitrary code when loaded)")
    parser.add_argument("--arch", choices=list_models(),
                        help="architecture of a checkpoint without a stream-monitor sidecar (e.g. the NERO "
                        "paper's ResNet-18 / DeiT-S weights); needs --num-classes")
    parser.add_argument("--num-classes", type=int, help="classes of the --arch checkpoint's head")


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT,
                        help="split file with ID train/val/test (default: the committed HyperKvasir split)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where the split's images live, if not where the split file says")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="feature cache (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="extract features again, do not read or write the cache")


def load_model(args: argparse.Namespace) -> tuple[ClassifierAdapter, str]:
    """The classifier and the sha256 of its file; a bare checkpoint needs --arch and --num-classes."""
    if getattr(args, "arch", None) is None:
        model, _ = load_classifier(args.model, trust_pickle=args.trust_pickle)
    else:
        if not args.num_classes:
            raise InputError("--arch needs --num-classes (the width of the checkpoint's head)")
        model = create_model(args.arch, args.num_classes, pretrained=False)
        load_checkpoint(model, args.model, trust_pickle=args.trust_pickle).eval()
    return model, sha256_file(args.model)


def load_split_arg(args: argparse.Namespace) -> Split:
    return load_split(args.split, args.data_root)


def cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else args.cache_dir
