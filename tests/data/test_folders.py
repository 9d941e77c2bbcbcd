"""Own labelled folders as a split (issue 17): the checks the committed split gets, on real images."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_monitor.data.folders import (
    check_split_images,
    split_from_folder,
    split_from_folders,
    split_from_options,
)
from stream_monitor.data.images import read_image
from stream_monitor.data.split import load_split
from stream_monitor.errors import InputError
from stream_monitor.evaluation.datasets import SHARED_DATA

HYPERKVASIR = SHARED_DATA / "hyperkvasir-lgi"
CLASSES = ("bbps-0-1", "normal-cecum")


def _images(class_name: str, start: int, count: int) -> list[Path]:
    files = sorted((HYPERKVASIR / class_name).glob("*.jpg"))[start:start + count]
    assert len(files) == count, f"development data missing at {HYPERKVASIR}"
    return files


def _folder(root: Path, per_class: dict[str, list[Path]]) -> Path:
    for class_name, files in per_class.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for source in files:
            (root / class_name / source.name).symlink_to(source)
    return root


@pytest.fixture
def train_val(tmp_path: Path) -> tuple[Path, Path]:
    train = _folder(tmp_path / "data" / "train", {c: _images(c, 0, 4) for c in CLASSES})
    val = _folder(tmp_path / "data" / "val", {c: _images(c, 4, 2) for c in CLASSES})
    return train, val


def test_train_and_val_folders_become_a_checked_split_file(train_val, tmp_path: Path) -> None:
    record = split_from_options(*train_val, None, None, tmp_path / "runs" / "nero.split.json")
    split = load_split(record)
    assert split.id_classes == CLASSES and split.ood_classes == ()
    assert [len(split.subsets[s]) for s in ("train", "val", "test")] == [8, 4, 0]
    assert split.labels("train").tolist() == [0] * 4 + [1] * 4
    assert split.subsets["val"][0].file == f"val/{CLASSES[0]}/{_images(CLASSES[0], 4, 1)[0].name}"
    item = split.subsets["train"][5]
    assert item.sha1 and read_image(split.root / item.file, item.sha1).ndim == 3  # recorded sha1 is the file's


def test_one_folder_is_split_by_the_seed(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "all", {c: _images(c, 0, 10) for c in CLASSES})
    a, b, c = (split_from_folder(folder, seed) for seed in (0, 0, 1))
    assert a.subsets == b.subsets and a.subsets["train"] != c.subsets["train"]
    assert [len(a.subsets[s]) for s in ("train", "val", "test")] == [10, 4, 6]
    record = split_from_options(None, None, folder, 1, tmp_path / "split.json")
    assert load_split(record).subsets["train"] == check_split_images(c).subsets["train"]


def test_an_image_in_two_parts_is_named(train_val) -> None:
    train, val = train_val
    copy = _images(CLASSES[1], 0, 1)[0]  # already in train: a second copy under another name in val
    (val / CLASSES[1] / "copy.jpg").symlink_to(copy)
    with pytest.raises(InputError, match=rf"more than one part.*train: train/{CLASSES[1]}/{copy.name}; "
                                         rf"val: val/{CLASSES[1]}/copy\.jpg"):
        check_split_images(split_from_folders(train, val))


def test_unreadable_images_are_named(train_val) -> None:
    train, val = train_val
    (train / CLASSES[0] / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match=r"1 image\(s\) cannot be read.*broken\.jpg"):
        check_split_images(split_from_folders(train, val))


def test_empty_or_mismatched_classes_are_refused(train_val, tmp_path: Path) -> None:
    train, val = train_val
    (train / "polyp").mkdir()
    with pytest.raises(InputError, match="without images.*polyp"):
        split_from_folders(train, val)
    (train / "polyp" / "p.jpg").symlink_to(_images("polyp", 0, 1)[0])
    with pytest.raises(InputError, match=r"same class folders; only in train: \['polyp'\]"):
        split_from_folders(train, val)
    with pytest.raises(InputError, match="no class sub-folders"):
        split_from_folders(train / "polyp", val)


def test_option_combinations_say_what_to_pass(train_val, tmp_path: Path) -> None:
    train, val = train_val
    assert split_from_options(None, None, None, None, tmp_path / "s.json") is None
    with pytest.raises(InputError, match="go together"):
        split_from_options(train, None, None, None, tmp_path / "s.json")
    with pytest.raises(InputError, match="either --id-dir"):
        split_from_options(train, val, train, None, tmp_path / "s.json")
