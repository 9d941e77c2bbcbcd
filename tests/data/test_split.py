"""Data: deterministic stratified splits, the committed split file, image and video frame sources."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_monitor.data.images import iter_frames, list_images, read_image
from stream_monitor.data.split import load_split, make_split, resplit, split_to_dict, write_split
from stream_monitor.errors import InputError

REPO = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO / "configs" / "splits" / "hyperkvasir-lgi.json"
DATA_ROOT = REPO.parent / "shared" / "data" / "hyperkvasir-lgi"
CLIP = REPO.parent / "shared" / "data" / "clips" / "ulcer_detection_Endoscopy_0_gastric_ulcer.mp4"
ID_CLASSES = ("normal-cecum", "bbps-2-3", "bbps-0-1")
OOD_CLASSES = ("polyp", "ulcerative-colitis", "impacted-stool")


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"real data not present at {path}: this test reads it")


@pytest.fixture
def real_data() -> None:
    _require(DATA_ROOT)


needs_data = pytest.mark.usefixtures("real_data")


def _write_images(root: Path, counts: dict[str, int]) -> None:
    for class_index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in reversed(range(count)):  # created in reverse: the split must not depend on listing order
            image = np.full((6, 8, 3), (class_index * 40 + i) % 256, dtype=np.uint8)
            cv2.imwrite(str(root / name / f"img{i:03d}.png"), image)


@pytest.fixture()
def toy_root(tmp_path: Path) -> Path:
    _write_images(tmp_path / "data", {"a": 10, "b": 7, "c": 5, "ood": 3})
    return tmp_path / "data"


def test_split_is_stratified_disjoint_and_complete(toy_root: Path) -> None:
    split = make_split(toy_root, ["a", "b", "c"], seed=3, ood_classes=["ood"])
    per_class = {s: Counter(i.class_name for i in split.subsets[s]) for s in ("train", "val", "test")}
    # 0.5 / 0.2 / 0.3 per class, rounding half up, test takes the rest.
    assert per_class["train"] == {"a": 5, "b": 4, "c": 3}
    assert per_class["val"] == {"a": 2, "b": 1, "c": 1}
    assert per_class["test"] == {"a": 3, "b": 2, "c": 1}
    files = [i.file for s in ("train", "val", "test") for i in split.subsets[s]]
    assert len(files) == len(set(files)) == 22
    assert {i.label for i in split.subsets["train"] if i.class_name == "b"} == {1}
    assert [i.file for i in split.subsets["ood"]] == [f"ood/img{i:03d}.png" for i in range(3)]
    assert {i.label for i in split.subsets["ood"]} == {-1}


def test_split_is_deterministic_and_seed_dependent(toy_root: Path) -> None:
    first = make_split(toy_root, ["a", "b", "c"], seed=3)
    assert make_split(toy_root, ["a", "b", "c"], seed=3) == first
    other = resplit(first, seed=4)
    assert other.seed == 4 and other.subsets["train"] != first.subsets["train"]
    assert Counter(i.label for i in other.subsets["val"]) == Counter(i.label for i in first.subsets["val"])


def test_split_file_round_trip_and_data_root_override(toy_root: Path, tmp_path: Path) -> None:
    split = make_split(toy_root, ["a", "b"], seed=0, ood_classes=["c"])
    path = write_split(split, tmp_path / "splits" / "toy.json")
    raw = json.loads(path.read_text())
    assert raw["data_root"] == "../data" and raw["train"][0]["file"].startswith(("a/", "b/"))
    assert load_split(path) == split
    moved = tmp_path / "moved"
    toy_root.rename(moved)
    with pytest.raises(InputError, match="does not exist"):
        load_split(path)
    assert load_split(path, data_root=moved).paths("val")[0].is_file()


def test_bad_split_arguments(toy_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fractions"):
        make_split(toy_root, ["a"], seed=0, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match="overlap"):
        make_split(toy_root, ["a", "b"], seed=0, ood_classes=["a"])
    with pytest.raises(InputError, match="does not exist"):
        make_split(toy_root, ["a", "missing"], seed=0)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="format"):
        load_split(tmp_path / "bad.json")


@needs_data
def test_committed_split_equals_a_regeneration() -> None:
    """The committed file is the output of make_split(seed 0); regenerate it with
    `write_split(make_split(DATA_ROOT, ID_CLASSES, 0, ood_classes=OOD_CLASSES), SPLIT_FILE)`."""
    committed = json.loads(SPLIT_FILE.read_text())
    regenerated = split_to_dict(make_split(DATA_ROOT, ID_CLASSES, seed=0, ood_classes=OOD_CLASSES),
                                SPLIT_FILE.parent)
    # data_root is compared through the file system: a symlinked data folder changes the text only.
    assert load_split(SPLIT_FILE).root == DATA_ROOT.resolve()
    committed.pop("data_root"), regenerated.pop("data_root")
    assert committed == regenerated
    assert committed["counts"] == {"train": 280, "val": 112, "test": 168, "ood": 273}
    assert all(item["sha1"] for s in ("train", "val", "test", "ood") for item in committed[s])


@needs_data
def test_committed_split_sha1_matches_a_real_file() -> None:
    split = load_split(SPLIT_FILE)
    item = split.subsets["val"][0]
    assert hashlib.sha1((split.root / item.file).read_bytes()).hexdigest() == item.sha1
    assert read_image(split.root / item.file, item.sha1).dtype == np.uint8


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"broken\.jpg"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(InputError, match=r"absent\.jpg"):
        read_image(tmp_path / "absent.jpg")
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"ok\.png.*sha1"):
        read_image(tmp_path / "ok.png", expected_sha1="0" * 40)


def test_folder_source_is_sorted_recursive_and_strided(toy_root: Path) -> None:
    assert [p.name for p in list_images(toy_root / "c")] == [f"img{i:03d}.png" for i in range(5)]
    records = list(iter_frames(toy_root, stride=4))
    assert [r.index for r in records] == [0, 4, 8, 12, 16, 20, 24]
    assert records[0].name == "a/img000.png" and records[0].image.shape == (6, 8, 3)


def test_video_source_round_trip_with_stride(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for i in range(7):
        writer.write(np.full((24, 32, 3), i * 30, dtype=np.uint8))
    writer.release()
    records = list(iter_frames(path, stride=3))
    assert [r.index for r in records] == [0, 3, 6]
    assert records[1].image.shape == (24, 32, 3) and abs(int(records[1].image.mean()) - 90) <= 3


def test_real_mp4_clip_yields_bgr_frames() -> None:
    _require(CLIP)
    records = list(itertools.islice(iter_frames(CLIP, stride=5), 3))
    assert [r.index for r in records] == [0, 5, 10]
    assert records[0].image.shape == (462, 520, 3) and records[0].image.dtype == np.uint8


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither"):
        next(iter_frames(tmp_path / "absent"))
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match=r"fake\.mp4"):
        next(iter_frames(tmp_path / "fake.mp4"))
    with pytest.raises(InputError, match="stride"):
        next(iter_frames(tmp_path, stride=0))
