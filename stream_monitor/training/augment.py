"""Training augmentations: the NERO paper's, and what a capture chain does to a frame on top of it.

A capture card or encoder between the endoscope and the monitor rescales, re-frames and compresses every
frame and shifts its brightness a little. The "capture" recipe teaches the classifier that none of this
is a change of content, so that its penultimate features (what every detector scores) hold still under
it (benchmarks/benign_change.py measures exactly that). Every transform works on one (3, H, W) uint8 RGB
tensor, after the paper's augmentations, so the paper's recipe stays a prefix of the new one.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import InputError

RECIPES = ("paper", "paper+capture")
"""Names accepted by `augmentation(recipe)`; "paper" is the reference code's recipe, unchanged."""


def paper_augmentation() -> v2.Compose:
    """The reference training augmentation (NERO.md §9), for one (3, H, W) uint8 RGB tensor."""
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25),
        v2.RandomVerticalFlip(0.5),
        v2.RandomInvert(0.3),
        v2.RandomEqualize(0.3),
    ])


class RandomGamma(torch.nn.Module):
    """Gamma correction with gamma drawn uniformly in [1 - spread, 1 + spread] (torch's global RNG)."""

    def __init__(self, spread: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= spread < 1.0:
            raise InputError(f"gamma spread must lie in [0, 1); got {spread!r}")
        self.spread = float(spread)

    def forward(self, image: Tensor) -> Tensor:
        gamma = 1.0 + self.spread * (2.0 * float(torch.rand(())) - 1.0)
        return F.adjust_gamma(image, gamma)

    def __repr__(self) -> str:
        return f"RandomGamma(spread={self.spread})"


def capture_augmentation(size: int = 224) -> v2.Compose:
    """What a capture chain does, at the strengths benchmarks/benign_change.py tests (and a bit beyond).

    - re-framing: a crop keeping 94-100 % of the area at aspect 0.97-1.03, resized back to `size`
      (crops and shifts of 1-3 % of the border, the rescale of a capture card);
    - compression: JPEG at quality 50-95 on half the images (blocking and ringing of JPEG/H.264);
    - exposure: gamma 0.9-1.1 (brightness is already jittered by the paper's ColorJitter).
    """
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.94, 1.0), ratio=(0.97, 1.03), antialias=True),
        v2.RandomApply([v2.JPEG(quality=(50, 95))], p=0.5),
        RandomGamma(0.1),
    ])


def augmentation(recipe: str = "paper", size: int = 224) -> v2.Compose:
    """The training augmentation of a named recipe (see `RECIPES`)."""
    if recipe == "paper":
        return paper_augmentation()
    if recipe == "paper+capture":
        return v2.Compose([paper_augmentation(), capture_augmentation(size)])
    raise InputError(f"unknown augmentation recipe {recipe!r}; known: {', '.join(RECIPES)}")
