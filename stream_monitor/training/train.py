"""Train a classifier on an ID split with the NERO paper's recipe (NERO.md §9).

ImageNet-pretrained backbone, Adam (lr 1e-4), batch 32, 20 epochs, augmentation in the reference code's
order: horizontal flip, colour jitter (brightness / contrast / saturation 0.25), vertical flip,
RandomInvert 0.3, RandomEqualize 0.3; the best epoch by ID *validation* accuracy is kept (the reference
picked it on the test folder). For speed on small CPUs every image is decoded and resized once into
memory as 224×224 uint8 (`preprocess.to_model_rgb`, the same resize as inference), then augmented as
uint8 tensors. Output: the best float16 state dict (`weights_only=True`-loadable) and a `.json` sidecar.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torchvision
from torch import Tensor
from tqdm import tqdm

import stream_monitor

from ..data.folders import split_from_options
from ..data.images import read_image
from ..data.split import Split, load_split, resplit
from ..errors import InputError
from ..models import ClassifierAdapter, create_model, load_checkpoint, sha256_file
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, normalize_uint8_tensor, to_model_rgb
from .augment import RECIPES, augmentation, paper_augmentation

# Extra checkpoints a run can keep besides the best-by-validation-accuracy one (the paper's rule). Validation
# accuracy saturates at 100 % within a few epochs on this data; the validation loss keeps moving after it.
CHECKPOINT_RULES = ("val_loss",)

__all__ = ["CHECKPOINT_RULES", "TrainResult", "add_train_arguments", "evaluate_accuracy", "evaluate_accuracy_and_loss",
           "kept_checkpoint_path", "load_subset", "paper_augmentation",
           "run_train", "train_classifier"]

DEFAULT_SPLIT = "configs/splits/hyperkvasir-lgi.json"
_log = logging.getLogger(__name__)
_EVAL_BATCH = 64


@dataclass(frozen=True)
class TrainResult:
    """Where the best checkpoint went and how training went (accuracies are fractions in [0, 1])."""

    weights_path: Path
    sidecar_path: Path
    val_accuracy: list[float]
    best_epoch: int  # 1-based
    best_val_accuracy: float
    seconds: float


def load_subset(split: Split, subset: str, progress: bool = True) -> tuple[Tensor, Tensor]:
    """Decode, sha1-check and resize one subset into memory.

    Returns:
        images (N, 3, 224, 224) uint8 RGB, labels (N,) int64.
    """
    items = split.subsets[subset]
    images = torch.empty((len(items), 3, INPUT_SIZE, INPUT_SIZE), dtype=torch.uint8)
    for row, item in enumerate(tqdm(items, desc=f"decode {subset}", disable=not progress, leave=False)):
        rgb = to_model_rgb(read_image(split.root / item.file, item.sha1))
        images[row] = torch.from_numpy(rgb).permute(2, 0, 1)
    return images, torch.as_tensor(split.labels(subset))


@torch.inference_mode()
def evaluate_accuracy_and_loss(model: ClassifierAdapter, images: Tensor, labels: Tensor) -> tuple[float, float]:
    """Top-1 accuracy in [0, 1] and mean cross-entropy (nats) of `model` (switched to eval mode) on uint8
    (N, 3, H, W) images."""
    model.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(images), _EVAL_BATCH):
        logits, _, _ = model(normalize_uint8_tensor(images[start:start + _EVAL_BATCH]))
        target = labels[start:start + _EVAL_BATCH]
        correct += int((logits.argmax(1) == target).sum())
        loss += float(torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum"))
    n = max(len(images), 1)
    return correct / n, loss / n


def evaluate_accuracy(model: ClassifierAdapter, images: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] of `model` (switched to eval mode) on uint8 (N, 3, H, W) images."""
    return evaluate_accuracy_and_loss(model, images, labels)[0]


def _train_epoch(model: ClassifierAdapter, optimizer: torch.optim.Optimizer, images: Tensor,
                 labels: Tensor, batch_size: int, generator: torch.Generator, bar: tqdm,
                 recipe: str = "paper") -> float:
    """One pass over shuffled, augmented training images; returns the mean training loss."""
    model.train()
    augment = augmentation(recipe)
    order = torch.randperm(len(images), generator=generator)
    losses = []
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        # Per-image augmentation: v2 on a batch would draw one set of random parameters for all.
        batch = torch.stack([augment(image) for image in images[index]])
        logits, _, _ = model(normalize_uint8_tensor(batch))
        loss = torch.nn.functional.cross_entropy(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.update(len(index))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return float(np.mean(losses))


def _save_half(model: ClassifierAdapter, path: Path) -> None:
    # float16 halves the file; integer buffers (BN's num_batches_tracked) keep their dtype.
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone()
             for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a reader never sees a half-written checkpoint


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "stream_monitor": stream_monitor.__version__}


def _write_sidecar(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)  # also drives the v2 augmentations and the new head's initialisation
    np.random.seed(seed), random.seed(seed)
    return torch.Generator().manual_seed(seed)  # the epoch shuffles, independent of other draws


def _build_model(arch: str, num_classes: int, pretrained: bool, init_checkpoint: str | Path | None,
                 trust_pickle: bool, head: str | None = None) -> ClassifierAdapter:
    model = create_model(arch, num_classes, pretrained=pretrained and init_checkpoint is None, head=head)
    if init_checkpoint is not None:
        load_checkpoint(model, init_checkpoint, trust_pickle=trust_pickle, skip_head=True)
    return model


def train_classifier(split: Split | str | Path, out: str | Path, *, arch: str = "efficientnet_lite0",
                     epochs: int = 20, batch_size: int = 32, lr: float = 1e-4, seed: int = 0,
                     split_seed: int | None = None, data_root: str | Path | None = None,
                     pretrained: bool = True, init_checkpoint: str | Path | None = None,
                     trust_pickle: bool = False, num_threads: int | None = 2,
                     progress: bool = True, head: str | None = None, augment: str = "paper",
                     keep: tuple[str, ...] = (), stop_when_final: bool = False) -> TrainResult:
    """Train `arch` on the split's ID train set; keep the best epoch by ID validation accuracy.

    Args:
        split: a `Split`, or the path of a split file (see `stream_monitor.data`).
        out: weights path (`.pt`); the sidecar is written next to it with the suffix `.json`.
        split_seed: re-split the same classes with this seed instead of the file's own.
        pretrained: start from the ImageNet weights that ship locally (EfficientNet-Lite0/1/2 only).
        init_checkpoint: start the backbone from this checkpoint instead (head kept new).
        num_threads: torch CPU threads while training (None leaves it; restored afterwards).
        head: torchvision architectures only — dotted name of the final nn.Linear (None: found, verified).
        augment: augmentation recipe, see `stream_monitor.training.augment.RECIPES` ("paper" = NERO.md §9).
        keep: extra checkpoint rules (`CHECKPOINT_RULES`); "val_loss" also keeps the epoch of lowest ID
            validation loss as `<out stem>.val-loss.pt` with its own sidecar. The main checkpoint is always
            the paper's rule (best validation accuracy), so the old recipe stays reproducible.
        stop_when_final: stop once no later epoch can replace the kept checkpoint (validation accuracy
            1.0 reached, ties keep the earlier epoch, and no `keep` rule): the checkpoint is then exactly
            the one the full run would keep, at a fraction of the time. Recorded as `stopped_after_epoch`.

    Returns:
        TrainResult; the checkpoint is rewritten at each new best epoch, the sidecar after every epoch.
    """
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if augment not in RECIPES:
        raise InputError(f"unknown augmentation recipe {augment!r}; known: {', '.join(RECIPES)}")
    if unknown := sorted(set(keep) - set(CHECKPOINT_RULES)):
        raise InputError(f"unknown checkpoint rule(s) {unknown}; known: {', '.join(CHECKPOINT_RULES)}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        started = time.monotonic()
        split, split_file = _resolve_split(split, data_root, split_seed)
        generator = _seed_everything(seed)
        # The model first: a missing weights file should fail before a minute of decoding.
        model = _build_model(arch, len(split.id_classes), pretrained, init_checkpoint, trust_pickle, head)
        train = load_subset(split, "train", progress)
        val = load_subset(split, "val", progress)
        record = {
            "format": "stream-monitor/classifier/v1", "status": "running", "arch": arch,
            "num_classes": len(split.id_classes), "class_names": list(split.id_classes),
            "head": getattr(model, "head_name", None),
            "feature_dim": model.feature_dim, **_split_record(split, split_file),
            "n_train": len(train[1]), "n_val": len(val[1]), "seed": seed, "epochs": epochs,
            "batch_size": batch_size, "optimizer": f"Adam(lr={lr})",
            "init": _init_name(pretrained, init_checkpoint),
            "augmentation": " ".join(repr(augmentation(augment)).split()), "preprocess": _PREPROCESS,
            "val_accuracy": [], "train_loss": [], "best_epoch": None, "best_val_accuracy": None,
            "weights_dtype": "float16", "weights_sha256": None, "versions": _versions(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        }
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        if augment != "paper":  # old sidecars stay byte-identical in layout for the paper's recipe
            record["augment_recipe"] = augment
        if keep:
            record["val_loss"] = []
        return _fit(model, optimizer, train, val, generator, Path(out), record, started, progress,
                    augment, tuple(keep), stop_when_final)
    finally:
        torch.set_num_threads(previous_threads)


_PREPROCESS = {"size": INPUT_SIZE, "resize": "cv2.INTER_AREA, aspect-distorting", "channels": "RGB",
               "mean": [round(float(v), 6) for v in IMAGENET_MEAN],
               "std": [round(float(v), 6) for v in IMAGENET_STD]}


def _resolve_split(split: Split | str | Path, data_root: str | Path | None,
                   split_seed: int | None) -> tuple[Split, Path | None]:
    split_file = None if isinstance(split, Split) else Path(split)
    if split_file is not None:
        split = load_split(split_file, data_root)
    if split_seed is not None and split_seed != split.seed:
        split = resplit(split, split_seed)
    return split, split_file


def _split_record(split: Split, split_file: Path | None) -> dict:
    return {"split_file": None if split_file is None else split_file.as_posix(),
            "split_file_sha256": None if split_file is None else sha256_file(split_file),
            "split_seed": split.seed, "fractions": list(split.fractions)}


def kept_checkpoint_path(out: str | Path, rule: str) -> Path:
    """Where `train_classifier(..., keep=(rule,))` writes the extra checkpoint of `rule`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{rule.replace('_', '-')}{out.suffix}")


def _fit(model: ClassifierAdapter, optimizer: torch.optim.Optimizer, train: tuple[Tensor, Tensor],
         val: tuple[Tensor, Tensor], generator: torch.Generator, out: Path, record: dict,
         started: float, progress: bool, recipe: str = "paper", keep: tuple[str, ...] = (),
         stop_when_final: bool = False) -> TrainResult:
    """The epoch loop: train, validate, keep the best epoch (float16 file + sidecar after each)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = out.with_suffix(".json")
    epochs, best, best_loss = record["epochs"], -1.0, float("inf")
    for epoch in range(1, epochs + 1):
        with tqdm(total=len(train[1]), desc=f"epoch {epoch}/{epochs}", disable=not progress,
                  unit="img") as bar:
            loss = _train_epoch(model, optimizer, *train, record["batch_size"], generator, bar, recipe)
            accuracy, val_loss = evaluate_accuracy_and_loss(model, *val)
            bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{accuracy:.4f}")
        _log.info("epoch %d/%d: train loss %.4f, val accuracy %.4f, val loss %.4f", epoch, epochs, loss,
                  accuracy, val_loss)
        record["train_loss"].append(round(loss, 6))
        record["val_accuracy"].append(accuracy)
        if "val_loss" in record:
            record["val_loss"].append(round(val_loss, 6))
        if accuracy > best:  # strict: ties keep the earlier (less trained) epoch
            best = accuracy
            _save_half(model, out)
            record.update(best_epoch=epoch, best_val_accuracy=accuracy, weights_sha256=sha256_file(out))
        if "val_loss" in keep and val_loss < best_loss:
            best_loss = val_loss
            _keep_checkpoint(model, out, record, "val_loss", epoch, val_loss)
        record["seconds"] = round(time.monotonic() - started, 1)
        _write_sidecar(sidecar, record)
        if stop_when_final and not keep and best >= 1.0 and epoch < epochs:
            record["stopped_after_epoch"] = epoch  # no later epoch can beat 1.0 under the strict rule
            break
    # What users get is the float16 file: report its accuracy, not only the float32 one.
    load_checkpoint(model, out)
    record["best_val_accuracy_float16"] = evaluate_accuracy(model, *val)
    record.update(status="complete", seconds=round(time.monotonic() - started, 1))
    _write_sidecar(sidecar, record)
    for rule in keep:  # a kept checkpoint is final only now: a later epoch could still have replaced it
        kept_sidecar = kept_checkpoint_path(out, rule).with_suffix(".json")
        _write_sidecar(kept_sidecar, {**json.loads(kept_sidecar.read_text()), "status": "complete"})
    return TrainResult(out, sidecar, list(record["val_accuracy"]), record["best_epoch"], best,
                       record["seconds"])


def _keep_checkpoint(model: ClassifierAdapter, out: Path, record: dict, rule: str, epoch: int,
                     value: float) -> None:
    """Write the extra checkpoint of `rule` and a sidecar of its own (loadable on its own). Its status is the
    run's ("running") until training ends: `eval --seeds` must not take it as final while a later epoch can
    still replace it."""
    path = kept_checkpoint_path(out, rule)
    _save_half(model, path)
    own = {**record, "checkpoint_rule": rule, "best_epoch": epoch,
           f"best_{rule}": round(value, 6), "weights_sha256": sha256_file(path),
           "best_val_accuracy": record["val_accuracy"][epoch - 1]}
    _write_sidecar(path.with_suffix(".json"), own)


def _init_name(pretrained: bool, init_checkpoint: str | Path | None) -> str:
    if init_checkpoint is not None:
        return f"checkpoint:{Path(init_checkpoint).name}:sha256={sha256_file(init_checkpoint)}"
    return "imagenet (local package weights)" if pretrained else "random"


_TRAIN_EPILOG = """example:
  stream-monitor train --split configs/splits/hyperkvasir-lgi.json --arch efficientnet_lite0 \\
      --epochs 20 --out stream_monitor/assets/efficientnet_lite0_hyperkvasir.pt   # + .json sidecar
  stream-monitor train --augment paper+capture --keep val_loss --threads 1 --out runs/capture.pt
      # capture-card augmentation; also keeps the lowest-validation-loss epoch as runs/capture.val-loss.pt"""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `train` options to `parser` (the CLI's sub-command parser) and its example epilog."""
    if parser.epilog is None:
        parser.epilog = _TRAIN_EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="split file (default: %(default)s)")
    parser.add_argument("--data-root", help="data folder, overriding the one the split file records")
    parser.add_argument("--split-seed", type=int, help="re-split the split file's classes with this seed (with "
                        "--id-dir: the seed that splits that folder, default 0)")
    parser.add_argument("--arch", default="efficientnet_lite0",
                        help="efficientnet_lite0 (default; its ImageNet weights ship), efficientnet_lite1 / efficientnet_lite2 "
                        "(ImageNet weights from the optional lite12 extra), resnet18, deit_small_patch16_224, "
                        "timm:NAME (any timm model) or torchvision:NAME; the others need --no-pretrained or "
                        "--init-checkpoint (nothing is downloaded)")
    parser.add_argument("--head", help="torchvision:NAME only: dotted name of the final nn.Linear (default: found "
                        "and verified), recorded in the sidecar")
    parser.add_argument("--out", required=True, help="output weights path (.pt); sidecar: same name .json")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="training seed (init, shuffles, augmentation)")
    parser.add_argument("--init-checkpoint", help="start the backbone from this checkpoint (head kept new)")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow --init-checkpoint to be a whole-model pickle (runs code from the file)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s; "
                        "on a CPU busy with other jobs, 1 can be twice as fast)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--augment", default="paper", choices=RECIPES,
                        help="augmentation recipe (default: %(default)s, the NERO paper's; paper+capture adds "
                        "crop/scale jitter, JPEG and gamma as a capture card would)")
    parser.add_argument("--stop-when-final", action="store_true",
                        help="stop once validation accuracy is 1.0: no later epoch could replace the checkpoint")
    parser.add_argument("--keep", action="append", default=[], choices=CHECKPOINT_RULES,
                        help="also keep the best epoch by this rule as <out>.val-loss.pt (repeatable)")
    own = parser.add_argument_group("own data (instead of --split; one sub-folder per class)")
    own.add_argument("--id-train", type=Path, help="ID training images, e.g. data/train/<class>/*.jpg")
    own.add_argument("--id-val", type=Path, help="ID validation images with the same class folders")
    own.add_argument("--id-dir", type=Path, help="one folder of class sub-folders, split by --split-seed")
    own.add_argument("--split-out", type=Path, help="where that split is written (default: <out>.split.json)")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Run `train_classifier` from parsed `add_train_arguments` options; prints a summary, returns 0."""
    split, split_seed = args.split, args.split_seed
    own = split_from_options(args.id_train, args.id_val, args.id_dir, args.split_seed,
                             args.split_out or Path(args.out).with_suffix(".split.json"))
    if own is not None:  # the folders' split, already drawn with --split-seed: never re-split it
        print(f"split of your folders (checked, with sha1 of every image) written to {own}")
        split, split_seed = own, None
    result = train_classifier(
        split, args.out, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, split_seed=split_seed, data_root=None if own else args.data_root,
        pretrained=not args.no_pretrained, init_checkpoint=args.init_checkpoint,
        trust_pickle=args.trust_pickle, num_threads=args.threads, progress=not args.no_progress, head=args.head,
        augment=args.augment, keep=tuple(args.keep), stop_when_final=args.stop_when_final)
    accuracies = " ".join(f"{a:.4f}" for a in result.val_accuracy)
    print(f"val accuracy per epoch: {accuracies}\nbest epoch {result.best_epoch} "
          f"({result.best_val_accuracy:.4f}), {result.seconds:.0f} s → {result.weights_path}")
    return 0


if __name__ == "__main__":  # the package CLI (`stream-monitor train`) is the documented entry point
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    raise SystemExit(run_train(add_train_arguments(argparse.ArgumentParser(
        prog="python -m stream_monitor.training.train", description=__doc__.splitlines()[0])).parse_args()))
