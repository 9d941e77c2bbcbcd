"""Images with polyp masks, and the fixed split of them into a part that may choose map settings
("select") and a part that is only reported on ("report").

Two sets from ../shared/data/masks (see the data README):
- `hyperkvasir-polyp`: the 200 HyperKvasir polyp images, Kvasir-SEG masks (JPEG, thresholded at 128);
  split image by image with a seeded permutation (the images are independent photographs);
- `cvc-clinicdb`: the 317 frames of the 15 CVC-ClinicDB sequences (PNG masks); split by SEQUENCE, so
  that neighbouring frames of one polyp never sit on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["MASKED_SETS", "Frame", "MapFamily", "MaskedImage", "load_masked_set", "read_mask", "split_parts"]

MASKED_SETS = ("hyperkvasir-polyp", "cvc-clinicdb")
SPLIT_SEED = 0


@dataclass(frozen=True)
class MaskedImage:
    """One image and its mask: `group` is what the select/report split keeps together (the file for
    HyperKvasir, the sequence for CVC-ClinicDB)."""

    name: str
    group: str
    image_path: Path
    mask_path: Path


def read_mask(path: Path) -> np.ndarray:
    """(H, W) bool: any channel ≥ 128 (JPEG masks carry compression noise around 0 and 255)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"cannot read mask {path}")
    return mask >= 128


def load_masked_set(name: str, data_root: Path) -> list[MaskedImage]:
    """Every (image, mask) pair of one set, sorted; a missing image or mask is an error."""
    data_root = Path(data_root)
    if name == "hyperkvasir-polyp":
        mask_dir, image_dir = data_root / "masks" / "hyperkvasir-polyp", data_root / "hyperkvasir-lgi" / "polyp"
        masks = sorted(mask_dir.glob("*.jpg"))
        items = [MaskedImage(m.stem, m.stem, image_dir / m.name, m) for m in masks]
    elif name == "cvc-clinicdb":
        mask_dir, image_dir = data_root / "masks" / "cvc-clinicdb", data_root / "sequences" / "cvc-clinicdb"
        masks = sorted(mask_dir.glob("*/*.png"))
        items = [MaskedImage(f"{m.parent.name}/{m.stem}", m.parent.name, image_dir / m.parent.name / m.name, m)
                 for m in masks]
    else:
        raise InputError(f"unknown masked set {name!r}; choose one of {MASKED_SETS}")
    if not items:
        raise InputError(f"no masks found in {mask_dir}; is the development data at {data_root}?")
    missing = [str(i.image_path) for i in items if not i.image_path.is_file()]
    if missing:
        raise InputError(f"{len(missing)} image(s) of masked set {name} are missing, first {missing[0]}")
    return items


def split_parts(items: list[MaskedImage], seed: int = SPLIT_SEED) -> dict[str, list[MaskedImage]]:
    """{"select": …, "report": …}: a seeded half of the groups each (select gets the smaller half)."""
    groups = sorted({i.group for i in items})
    order = np.random.default_rng(seed).permutation(len(groups))
    chosen = {groups[j] for j in order[: len(groups) // 2]}
    return {"select": [i for i in items if i.group in chosen], "report": [i for i in items if i.group not in chosen]}


@dataclass
class Frame:
    """One masked image with what every map family needs: the model input (3, 224, 224) and its
    (224, 224, 3) uint8 RGB, the last feature map (D, h, w) float32, the predicted class and the live explanation's neurons."""

    name: str
    set_name: str
    part: str
    mask: np.ndarray
    image: np.ndarray
    rgb: np.ndarray
    feature_map: np.ndarray
    predicted: int
    top_neurons: np.ndarray
    deviations: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MapFamily:
    """A kind of map and the settings it may be chosen from: `make(frame, **settings) -> (h, w)`."""

    name: str
    make: Callable[..., np.ndarray]
    candidates: tuple[dict[str, Any], ...] = ({},)
