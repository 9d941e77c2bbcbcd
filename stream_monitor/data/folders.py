"""A user's own labelled images as a split, without writing a split file by hand.

    >>> split = split_from_folders("data/train", "data/val")     # one sub-folder per class in each
    >>> split = split_from_folder("data/all", seed=0)            # one folder, split by a fixed seed
    >>> split = check_split_images(split)                        # sha1 of every image, problems named

Class names are the sub-folder names, sorted (their order defines labels 0..C-1, as in the split file).
Every image is read once and hashed: a file that cannot be read or decoded is named, the same image in
two parts (a train image again in validation would flatter the threshold) is named, and a class folder
without images is refused. The split is then written as an ordinary split file (`data.write_split`)
for the record, with every sha1, so a later run reads exactly these images or says which one changed.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from .images import list_images
from .split import SUBSETS, Split, SplitItem, make_split, write_split

__all__ = ["FOLDER_FRACTIONS", "check_split_images", "class_folders", "split_from_folder", "split_from_folders",
           "split_from_options"]

FOLDER_FRACTIONS = (0.5, 0.2, 0.3)  # train, val, test of a single folder: the committed split's shares
_MAX_NAMED = 8  # problems listed in one error message


def class_folders(folder: str | Path) -> list[str]:
    """Sorted names of the class sub-folders of `folder` (hidden folders ignored).

    Raises:
        InputError: `folder` missing, without sub-folders, or with a class folder that holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {folder} does not exist")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise InputError(f"{folder} has no class sub-folders; put each class's images in a folder of its own "
                         f"(e.g. {folder}/normal/*.jpg, {folder}/landmark/*.jpg)")
    empty = [name for name in names if not list_images(folder / name)]
    if empty:
        raise InputError(f"class folder(s) without images in {folder}: {', '.join(empty)} (images: "
                         f".jpg .jpeg .png .bmp .tif .tiff .webp directly inside each class folder)")
    return names


def split_from_folders(train: str | Path, val: str | Path) -> Split:
    """ID train and validation from two folders with the same class sub-folders; no test part.

    Raises:
        InputError: see `class_folders`; the two folders name different classes.
    """
    parts = {"train": Path(train), "val": Path(val)}
    classes = {name: class_folders(folder) for name, folder in parts.items()}
    if classes["train"] != classes["val"]:
        only = {name: sorted(set(classes[name]) - set(classes[other]))
                for name, other in (("train", "val"), ("val", "train"))}
        raise InputError(f"--id-train and --id-val must hold the same class folders; only in train: "
                         f"{only['train'] or '-'}, only in val: {only['val'] or '-'}")
    # absolute(), not resolve(): class folders of symlinks must stay under the common root.
    root = Path(os.path.commonpath([p.absolute() for p in parts.values()]))
    subsets: dict[str, list[SplitItem]] = {name: [] for name in (*SUBSETS, "ood")}
    for subset, folder in parts.items():
        for label, class_name in enumerate(classes["train"]):
            subsets[subset] += [SplitItem(p.absolute().relative_to(root).as_posix(), class_name, label)
                                for p in list_images(folder / class_name)]
    total = len(subsets["train"]) + len(subsets["val"])
    fractions = (len(subsets["train"]) / total, 1.0 - len(subsets["train"]) / total, 0.0)
    return Split(root, tuple(classes["train"]), (), -1, fractions, subsets)


def split_from_folder(folder: str | Path, seed: int, fractions: Sequence[float] = FOLDER_FRACTIONS) -> Split:
    """One folder of class sub-folders, split per class into train / val / test by `seed` (`data.make_split`)."""
    return make_split(folder, class_folders(folder), seed, fractions)


def _sha1_if_decodable(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    # A reduced decode still parses the whole stream, at a fraction of the cost of a full one.
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4) is None:
        return None
    return hashlib.sha1(data).hexdigest()


def check_split_images(split: Split) -> Split:
    """Read and decode every ID image once; return the split with each image's sha1 recorded.

    Raises:
        InputError: naming unreadable / undecodable files, or images found in two parts (by content).
    """
    unreadable: list[str] = []
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    checked: dict[str, list[SplitItem]] = {"ood": list(split.subsets.get("ood", []))}
    for subset in SUBSETS:
        checked[subset] = []
        for item in split.subsets.get(subset, []):
            sha1 = _sha1_if_decodable(split.root / item.file)
            if sha1 is None:
                unreadable.append(str(split.root / item.file))
                continue
            seen[sha1].append((subset, item.file))
            checked[subset].append(SplitItem(item.file, item.class_name, item.label, sha1))
    if unreadable:
        raise InputError(f"{len(unreadable)} image(s) cannot be read or decoded; fix or remove them: "
                         + ", ".join(unreadable[:_MAX_NAMED]) + (" …" if len(unreadable) > _MAX_NAMED else ""))
    across = [places for places in seen.values() if len({subset for subset, _ in places}) > 1]
    if across:
        shown = ["; ".join(f"{subset}: {file}" for subset, file in places) for places in across[:_MAX_NAMED]]
        raise InputError(f"{len(across)} image(s) appear in more than one part (same content), which would "
                         f"make validation look better than it is; remove the copies: " + " | ".join(shown))
    return Split(split.root, split.id_classes, split.ood_classes, split.seed, split.fractions, checked)


def split_from_options(id_train: Path | None, id_val: Path | None, id_dir: Path | None, split_seed: int | None,
                       record: Path) -> Path | None:
    """The CLI's own-data options → a checked split written to `record` (returned); None without them.

    Raises:
        InputError: an incomplete or contradictory combination, or any problem `check_split_images` finds.
    """
    if id_dir is None and id_train is None and id_val is None:
        return None
    if id_dir is not None and (id_train is not None or id_val is not None):
        raise InputError("pass either --id-dir (one folder, split by --split-seed) or --id-train with --id-val")
    if id_dir is None and (id_train is None or id_val is None):
        raise InputError("--id-train and --id-val go together: training and validation folders, one "
                         "sub-folder per class in each")
    split = split_from_folder(id_dir, 0 if split_seed is None else split_seed) if id_dir is not None \
        else split_from_folders(id_train, id_val)
    return write_split(check_split_images(split), record)
