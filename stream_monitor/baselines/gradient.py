"""Gradient-based detectors: GradNorm (closed form on the linear head) and ODIN (needs the model).

GradNorm's gradient only reaches the head, so it reduces to a formula on features and logits and follows
the same fit/score contract as the other baselines. ODIN perturbs the input image, so it needs the whole
torch model and the images; it is a plain function, not a fitted detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from stream_monitor.baselines._common import Float64Array, HeadDetector, check_positive, softmax
from stream_monitor.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily: the numpy detectors should not pay its ~3 s import.
    import torch

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def gradnorm_score(features: Float64Array, logits: Float64Array, temperature: float = 1.0) -> Float64Array:
    """GradNorm (Huang, Geng & Li 2021), closed form for the gradient of a linear head.

    GradNorm is the L1 norm of the gradient, w.r.t. the head weight W, of the cross-entropy between
    softmax(f / T) and an all-ones target (the paper's code: `sum(-ones * log_softmax(f / T))`, i.e.
    C times the KL to uniform up to a constant). That gradient is the outer product
    `(C·softmax(f/T) - 1) a^T / T`, whose entry-wise L1 norm factorises:

        GradNorm(x) = ||C·p - 1||_1 · ||a||_1 / T,   p = softmax(f / T)

    GradNorm is LARGER for ID inputs (confident p far from uniform, large activations), so the OOD
    score returned here is its negation, `-GradNorm(x)`: higher = more OOD. With T = 1 this equals the
    `-||C·p - 1||_1 · ||a||_1` of NERO.md §8. features (N, D), logits (N, C) -> (N,) float64.
    """
    t = check_positive(temperature, "temperature")
    p = softmax(logits / t, axis=1)
    n_classes = logits.shape[1]
    return -np.abs(n_classes * p - 1.0).sum(axis=1) * np.abs(features).sum(axis=1) / t


class GradNorm(HeadDetector):
    """GradNorm (Huang et al. 2021) at temperature T (default 1, as the paper); see `gradnorm_score`."""

    name = "gradnorm"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")

    def _score(self, features: Float64Array) -> Float64Array:
        return gradnorm_score(features, self.logits(features), self.temperature)


def _as_images(images: torch.Tensor | ArrayLike, n_channels: int) -> torch.Tensor:
    """Check a (B, n_channels, H, W) finite, non-empty image batch; return it detached."""
    import torch

    x = images.detach() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or x.shape[1] != n_channels:
        raise InputError(f"images must have shape (B, {n_channels}, H, W); got {tuple(x.shape)}")
    if x.numel() == 0:
        raise InputError(f"images are empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"images must be floating point (normalised); got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("images contain NaN or infinite values")
    return x


def _model_device_dtype(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (images.device, images.dtype)


def _odin_batch(
    model: torch.nn.Module, x: torch.Tensor, temperature: float, epsilon: float, std: torch.Tensor
) -> torch.Tensor:
    """ODIN scores (B,) float64 of one batch already on the model's device and dtype."""
    import torch

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        # Softmax maths in float64: at T = 1000 the probabilities differ only in the 4th decimal.
        scaled = model(x).double() / temperature
        predicted = scaled.argmax(dim=1)
        # Sum, not mean: each sample's input gradient stays its own, unshrunk by the batch size.
        loss = torch.nn.functional.cross_entropy(scaled, predicted, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    # Liang et al.'s code takes sign via `grad >= 0` (zero counts as +1), then divides by the channel
    # std so that the step is epsilon in [0, 1] pixel units, not in normalised units.
    step = (grad >= 0).to(x.dtype) * 2 - 1
    perturbed = x.detach() - epsilon * step / std.view(1, -1, 1, 1)
    with torch.no_grad():
        probs = torch.softmax(model(perturbed).double() / temperature, dim=1)
    return -probs.max(dim=1).values


def odin_score(
    model: torch.nn.Module,
    images: torch.Tensor | ArrayLike,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    std: Sequence[float] = IMAGENET_STD,
    batch_size: int = 64,
) -> Float64Array:
    """ODIN (Liang, Li & Srikant 2018): temperature scaling plus a small input perturbation.

        x~ = x - epsilon * sign(dCE(f(x)/T, y^) / dx) / std,   y^ = argmax f(x)
        score = -max_c softmax(f(x~) / T)_c                     (higher = more OOD)

    Original definition, not the NERO reference's: T = 1000 (reference 100), the signed gradient divided by
    each channel's normalisation `std` (the reference skips it), epsilon = 0.0014 (OpenOOD's ImageNet
    value; the paper tunes it). `model` maps a (B, 3, H, W) float tensor of normalised images to
    (B, C) logits. The model is put in eval mode and left there; its parameters' `.grad` are untouched
    (the gradient is taken w.r.t. the input only). images (B, 3, H, W) -> (B,) float64 numpy.
    """
    import torch

    t = check_positive(temperature, "temperature")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise InputError(f"epsilon must be finite and >= 0; got {epsilon!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size!r}")
    std_values = [check_positive(s, "std") for s in std]
    x_all = _as_images(images, len(std_values))
    device, dtype = _model_device_dtype(model, x_all)
    std_t = torch.tensor(std_values, device=device, dtype=dtype)
    model.eval()
    scores = [
        _odin_batch(model, x_all[i : i + batch_size].to(device, dtype), t, float(epsilon), std_t)
        for i in range(0, x_all.shape[0], int(batch_size))
    ]
    return torch.cat(scores).cpu().numpy().astype(np.float64)
