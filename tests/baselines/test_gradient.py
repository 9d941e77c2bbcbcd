"""GradNorm's closed form against torch autograd, and ODIN on a tiny float64 linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.baselines import GradNorm, gradnorm_score, odin_score
from stream_monitor.errors import InputError

RTOL = 1e-9
STD = (0.229, 0.224, 0.225)


def gradnorm_autograd(features: np.ndarray, weight: np.ndarray, bias: np.ndarray, temperature: float) -> np.ndarray:
    """Huang et al.'s code, one sample at a time: L1 norm of d(sum -1 * log_softmax(f/T))/dW."""
    fc = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight))
        fc.bias.copy_(torch.from_numpy(bias))
    out = []
    for a in features:
        fc.zero_grad()
        outputs = fc(torch.from_numpy(a)[None]) / temperature
        targets = torch.ones((1, weight.shape[0]), dtype=torch.float64)
        loss = torch.mean(torch.sum(-targets * torch.log_softmax(outputs, dim=-1), dim=-1))
        loss.backward()
        out.append(fc.weight.grad.abs().sum().item())
    return np.array(out)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_gradnorm_closed_form_is_minus_the_autograd_gradient_norm(temperature: float) -> None:
    rng = np.random.default_rng(5)
    a = np.maximum(rng.normal(size=(10, 16)), 0.0)
    w, b = rng.normal(size=(4, 16)), rng.normal(size=4)
    det = GradNorm(temperature=temperature).fit(a, np.arange(10) % 4, w, b)
    expected = -gradnorm_autograd(a, w, b, temperature)
    np.testing.assert_allclose(det.score(a), expected, rtol=RTOL)
    np.testing.assert_allclose(gradnorm_score(a, a @ w.T + b, temperature), expected, rtol=RTOL)


def test_gradnorm_is_higher_for_uniform_softmax_than_confident() -> None:
    """GradNorm is large for ID (confident); the OOD score, its negation, must be larger for flat p."""
    a = np.ones((2, 3))
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    confident, flat = gradnorm_score(a, logits)
    assert flat == pytest.approx(0.0, abs=1e-12) and confident < flat


def _linear_model(seed: int, n_classes: int = 4, hw: int = 8) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * hw * hw, n_classes, dtype=torch.float64))


def odin_numpy(weight, bias, images, temperature, epsilon, std) -> np.ndarray:
    """ODIN for f(x) = W vec(x) + b with the input gradient written out: W^T (softmax(f/T) - onehot) / T."""
    out = []
    for x in images:
        v = x.ravel()
        f = weight @ v + bias
        p = np.exp(f / temperature - np.max(f / temperature))
        p /= p.sum()
        onehot = np.eye(len(f))[np.argmax(f)]
        grad = (weight.T @ (p - onehot) / temperature).reshape(x.shape)
        step = np.where(grad >= 0, 1.0, -1.0) / np.asarray(std)[:, None, None]
        g = weight @ (x - epsilon * step).ravel() + bias
        q = np.exp(g / temperature - np.max(g / temperature))
        out.append(-np.max(q / q.sum()))
    return np.array(out)


@pytest.mark.parametrize(("temperature", "epsilon"), [(1000.0, 0.0014), (1.0, 0.01), (5.0, 0.0)])
def test_odin_matches_numpy_restatement(temperature: float, epsilon: float) -> None:
    model = _linear_model(0)
    images = np.random.default_rng(1).normal(size=(7, 3, 8, 8))
    lin = model[1]
    expected = odin_numpy(lin.weight.detach().numpy(), lin.bias.detach().numpy(), images, temperature, epsilon, STD)
    got = odin_score(model, images, temperature=temperature, epsilon=epsilon, std=STD, batch_size=3)
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_odin_perturbation_lowers_the_loss_and_leaves_the_model_alone() -> None:
    model = _linear_model(1)
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # stale grads a caller might hold: must survive untouched
    images = torch.from_numpy(np.random.default_rng(2).normal(size=(5, 3, 8, 8)))
    before = odin_score(model, images, temperature=1000.0, epsilon=0.0)
    after = odin_score(model, images, temperature=1000.0, epsilon=0.002)
    # Moving against the loss gradient raises the predicted class's tempered softmax: lower score.
    assert np.all(np.isfinite(after)) and np.all(after < before)
    assert not model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())


def test_odin_float32_model_and_tensor_input() -> None:
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    images = torch.randn(4, 3, 4, 4, requires_grad=True)
    got = odin_score(model, images)
    assert got.shape == (4,) and got.dtype == np.float64 and np.all(np.isfinite(got))
    assert images.grad is None


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (np.zeros((2, 1, 8, 8)), {}, r"shape \(B, 3, H, W\)"),
        (np.zeros((0, 3, 8, 8)), {}, "empty"),
        (np.full((1, 3, 8, 8), np.nan), {}, "NaN"),
        (np.zeros((1, 3, 8, 8), dtype=np.int64), {}, "floating point"),
        (np.zeros((1, 3, 8, 8)), {"epsilon": -1.0}, "epsilon"),
        (np.zeros((1, 3, 8, 8)), {"temperature": 0.0}, "temperature"),
        (np.zeros((1, 3, 8, 8)), {"std": (0.2, 0.0, 0.2)}, "std"),
    ],
)
def test_odin_rejects_bad_inputs(images, kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        odin_score(_linear_model(0), images, **kwargs)
