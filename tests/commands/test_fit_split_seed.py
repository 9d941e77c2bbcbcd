"""`fit --split-seed S` (and `eval --split-seed S`) re-draw the split file's classes with seed S, as
`train --split-seed S` did for the classifier: a seed-S classifier is fitted on seed S's ID train and
calibrated on its ID validation images, never on a split that holds its test images for training."""

from __future__ import annotations

import argparse

from stream_monitor.commands._common import add_split_arguments, load_split_arg
from stream_monitor.data.split import load_split, resplit
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT


def _args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_split_arguments(parser)
    return parser.parse_args(["--split", str(DEFAULT_SPLIT), *extra]) if extra else parser.parse_args([])


def test_split_seed_redraws_the_split_file_as_training_did(tmp_path):
    committed = load_split(DEFAULT_SPLIT)
    args = _args(tmp_path, "--split-seed", "3")
    args.out = tmp_path / "d.npz"
    split = load_split_arg(args)
    expected = resplit(committed, 3)
    assert split.seed == 3
    for subset in ("train", "val", "test"):
        assert split.paths(subset) == expected.paths(subset)
    assert split.paths("train") != committed.paths("train")


def test_without_split_seed_the_file_is_used_as_it_is(tmp_path):
    committed = load_split(DEFAULT_SPLIT)
    for extra in ((), ("--split-seed", str(committed.seed))):
        args = _args(tmp_path, *extra)
        args.out = tmp_path / "d.npz"
        assert load_split_arg(args).paths("train") == committed.paths("train")
