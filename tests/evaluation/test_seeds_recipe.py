"""`eval --seeds` reuses a classifier in --work-dir only if its sidecar records the recipe asked for:
a checkpoint of another augmentation recipe or epoch count is an error, never silently mixed into the
mean over seeds, and never overwritten by retraining."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from stream_monitor.data.split import load_split
from stream_monitor.errors import InputError
from stream_monitor.evaluation import seeds
from stream_monitor.evaluation.datasets import SHARED_DATA

SPLIT_FILE = Path(__file__).resolve().parents[2] / "configs" / "splits" / "hyperkvasir-lgi.json"


def _sidecar(weights: Path, status: str = "complete", epochs: int = 20, seed: int = 0, **extra) -> None:
    """The fields the trainer writes that name the recipe (train.py omits augment_recipe for "paper")."""
    weights.write_bytes(b"not read: the recipe check comes first")
    record = {"format": "stream-monitor/classifier/v1", "status": status, "arch": "efficientnet_lite0",
              "seed": seed, "split_seed": seed, "epochs": epochs, **extra}
    weights.with_suffix(".json").write_text(json.dumps(record))


def _recipe(augment: str, epochs: int = 20, seed: int = 0, arch: str = "efficientnet_lite0") -> dict:
    return {"arch": arch, "augment": augment, "epochs": epochs, "seed": seed, "split_seed": seed}


def test_a_finished_checkpoint_of_the_same_recipe_is_reused(tmp_path):
    paper, capture = tmp_path / "paper.pt", tmp_path / "capture.pt"
    _sidecar(paper)
    _sidecar(capture, augment_recipe="paper+capture")
    assert seeds.reusable_checkpoint(paper, _recipe("paper"))
    assert seeds.reusable_checkpoint(capture, _recipe("paper+capture"))


def test_an_unfinished_or_missing_checkpoint_is_retrained(tmp_path):
    running = tmp_path / "running.pt"
    _sidecar(running, status="running", augment_recipe="paper+capture")
    assert not seeds.reusable_checkpoint(running, _recipe("paper"))
    assert not seeds.reusable_checkpoint(tmp_path / "absent.pt", _recipe("paper"))


@pytest.mark.parametrize("recorded, asked", [
    ({"augment_recipe": "paper+capture"}, _recipe("paper")),
    ({}, _recipe("paper+capture")),
    ({}, _recipe("paper", epochs=8)),
    ({}, _recipe("paper", seed=1)),
])
def test_a_finished_checkpoint_of_another_recipe_is_an_error(tmp_path, recorded, asked):
    weights = tmp_path / "w.pt"
    _sidecar(weights, **recorded)
    with pytest.raises(InputError, match="trained with"):
        seeds.reusable_checkpoint(weights, asked)


def test_evaluate_seeds_refuses_a_mismatched_recipe_without_retraining_over_it(tmp_path, monkeypatch):
    split = load_split(SPLIT_FILE)
    work = tmp_path / "runs"
    work.mkdir()
    weights = work / "efficientnet_lite0_seed0_e20.pt"
    _sidecar(weights, seed=split.seed)  # a paper-recipe run
    before = weights.with_suffix(".json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished checkpoint of another recipe must not be retrained over")

    monkeypatch.setattr(seeds, "train_classifier", no_training)
    with pytest.raises(InputError, match="paper\\+capture"):
        seeds.evaluate_seeds(split, [split.seed], 20, work, tmp_path / "out", None, dev_benchmark=False, extra=[],
                             odin=False, augment="paper+capture")
    assert weights.with_suffix(".json").read_text() == before
    assert not (tmp_path / "out").exists()


def test_a_finished_checkpoint_of_another_architecture_is_refused(tmp_path):
    weights = tmp_path / "lite0.pt"
    _sidecar(weights)
    with pytest.raises(InputError, match="efficientnet_lite2"):
        seeds.reusable_checkpoint(weights, _recipe("paper", arch="efficientnet_lite2"))


def test_the_seed_checkpoint_is_named_by_architecture(tmp_path):
    assert seeds.seed_checkpoint(tmp_path, "efficientnet_lite2", 3, 20) == tmp_path / "efficientnet_lite2_seed3_e20.pt"


def test_eval_command_passes_the_recipe_to_the_seeds(tmp_path, monkeypatch):
    from stream_monitor.commands import eval as eval_command

    seen = {}

    def fake_evaluate_seeds(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(eval_command, "evaluate_seeds", fake_evaluate_seeds)
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    args = parser.parse_args(["--seeds", "0", "--augment", "paper+capture", "--arch", "efficientnet_lite2", "--ood", f"x={SHARED_DATA / 'polypgen-positive' / 'centre_A'}",
                              "--out", str(tmp_path / "out")])
    with pytest.raises(InputError, match="stop here"):
        eval_command.run(args)
    assert seen["augment"] == "paper+capture"
    assert seen["arch"] == "efficientnet_lite2"
    assert parser.parse_args(["--out", "o"]).augment == "paper"
    assert parser.parse_args(["--out", "o"]).arch is None  # with --seeds: seeds.SEED_ARCH, the bundled model's
