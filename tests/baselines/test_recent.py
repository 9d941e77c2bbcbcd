"""Residual, RMDS, fDBD, NNGuide and NCI: against per-sample restatements of their papers' formulas and
against pytorch-ood's implementations, on real penultimate features of the bundled EfficientNet-Lite0
(a few HyperKvasir images from ../shared/data: ID train by class, ID test, polyps as OOD).

pytorch-ood computes in float32 (its detectors call `.float()`), so those comparisons use rtol 1e-4;
the restatements are float64 and use rtol 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance

from stream_monitor.baselines import FDBD, NCI, RMDS, NNGuide, Residual
from stream_monitor.errors import InputError

RTOL = 1e-9
RTOL_FLOAT32 = 1e-4  # pytorch-ood's float32 arithmetic against our float64


def _lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def _fit(det, d):
    return det.fit(d["train"], d["labels"], d["weight"], d["bias"])


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _head(d) -> torch.nn.Linear:
    head = torch.nn.Linear(d["weight"].shape[1], d["weight"].shape[0])
    with torch.no_grad():
        head.weight.copy_(_t(d["weight"])), head.bias.copy_(_t(d["bias"]))
    return head


# ---- Residual -------------------------------------------------------------------------------------------

def test_residual_matches_openood_recipe(real) -> None:
    """OpenOOD's Residual: u = -pinv(W) b, EmpiricalCovariance(assume_centered) of train - u, the
    eigenvectors past the top `dim` (by eigenvalue), score = norm of the projection on them. OpenOOD calls
    the general `eig`; on this rank-deficient symmetric matrix it returns non-orthogonal vectors inside the
    degenerate null space (norms off by 30 %), so the restatement uses `eigh`."""
    dim = 20
    u = -np.linalg.pinv(real["weight"]) @ real["bias"]
    cov = EmpiricalCovariance(assume_centered=True).fit(real["train"] - u).covariance_
    vals, vecs = np.linalg.eigh(cov)
    ns = vecs[:, np.argsort(vals)[::-1][dim:]]
    expected = [np.linalg.norm((a - u) @ ns) for a in real["test"]]
    np.testing.assert_allclose(_fit(Residual(dim=dim), real).score(real["test"]), expected, rtol=1e-7)


def test_residual_equals_pytorch_ood_vim_without_its_energy(real) -> None:
    """pytorch-ood has no Residual; its ViM is alpha·residual − logsumexp(f), so the residual is
    (ViM + logsumexp) / alpha — an independent check of u, the eigenbasis and the norm."""
    from pytorch_ood.detector import ViM as TorchViM

    dim = 20
    theirs = TorchViM(None, d=dim, w=_t(real["weight"]), b=_t(real["bias"]))
    theirs.fit_features(_t(real["train"]), _t(real["labels"]))
    vim = theirs.predict_features(_t(real["test"])).double().numpy()
    logits = real["test"] @ real["weight"].T + real["bias"]
    np.testing.assert_allclose(_fit(Residual(dim=dim), real).score(real["test"]),
                               (vim + _lse(logits)) / theirs.alpha, rtol=1e-3)  # float32 eigh of a 1280² matrix


def test_residual_default_dim_stays_inside_the_training_rank(real) -> None:
    det = _fit(Residual(), real)
    assert det.dim_ == len(real["train"]) // 2 == 15


# ---- RMDS ------------------------------------------------------------------------------------------------

def _low_dim(real, width: int = 12) -> dict[str, np.ndarray]:
    """The `width` highest-variance feature columns: N_train - C = 27 > width, so every covariance is invertible
    and pytorch-ood's explicit inverse can be compared with our pseudo-inverse."""
    cols = np.argsort(real["train"].var(axis=0))[::-1][:width]
    return {**real, "train": real["train"][:, cols], "test": real["test"][:, cols], "weight": real["weight"][:, cols]}


def test_rmds_matches_openood_recipe(real) -> None:
    """OpenOOD's RMDS: class means, EmpiricalCovariance of class-centred train features, background
    Gaussian of all train features; score = min_c [MD_c − MD_0] (its confidence, negated)."""
    d = _low_dim(real)
    train, labels = d["train"], d["labels"]
    means = np.array([train[labels == c].mean(axis=0) for c in range(3)])
    precision = EmpiricalCovariance().fit(train - means[labels]).precision_
    whole_mean = train.mean(axis=0)
    whole_precision = EmpiricalCovariance().fit(train - whole_mean).precision_
    expected = [min((a - m) @ precision @ (a - m) for m in means) - (a - whole_mean) @ whole_precision @ (a - whole_mean)
                for a in d["test"]]
    np.testing.assert_allclose(_fit(RMDS(), d).score(d["test"]), expected, rtol=1e-7)


def test_rmds_equals_pytorch_ood_rmd_times_n_train(real) -> None:
    """pytorch-ood's RMD uses the scatter matrices (not divided by N) plus a 1e-6 ridge, so its distances
    are ours divided by N_train."""
    from pytorch_ood.detector import RMD

    d = _low_dim(real)
    theirs = RMD(None).fit_features(_t(d["train"]).float(), _t(d["labels"]))  # it mixes dtypes unless float32
    expected = theirs.predict_features(_t(d["test"]).float()).double().numpy() * len(d["train"])
    np.testing.assert_allclose(_fit(RMDS(), d).score(d["test"]), expected, rtol=1e-3)  # float32 inverses


# ---- fDBD ------------------------------------------------------------------------------------------------

def test_fdbd_matches_per_sample_formula(real) -> None:
    w, b = real["weight"], real["bias"]
    mu = real["train"].mean(axis=0)
    expected = []
    for a in real["test"]:
        f = w @ a + b
        y = int(np.argmax(f))
        dist = [abs(f[y] - f[c]) / np.linalg.norm(w[y] - w[c]) for c in range(3) if c != y]
        expected.append(-np.mean(dist) / np.linalg.norm(a - mu))
    np.testing.assert_allclose(_fit(FDBD(), real).score(real["test"]), expected, rtol=RTOL)


def test_fdbd_equals_pytorch_ood(real) -> None:
    from pytorch_ood.detector import fDBD

    theirs = fDBD(None, _head(real)).fit_features(_t(real["train"]))
    expected = theirs.predict_features(_t(real["test"])).double().numpy()
    np.testing.assert_allclose(_fit(FDBD(), real).score(real["test"]), expected, rtol=RTOL_FLOAT32)


def test_fdbd_needs_two_classes(real) -> None:
    with pytest.raises(InputError, match="at least 2 classes"):
        FDBD().fit(real["train"], np.zeros(len(real["train"]), int), real["weight"][:1], real["bias"][:1])


# ---- NNGuide ---------------------------------------------------------------------------------------------

def test_nnguide_matches_brute_force(real) -> None:
    w, b, k = real["weight"], real["bias"], 5
    train_logits = real["train"] @ w.T + b
    bank = real["train"] / np.linalg.norm(real["train"], axis=1, keepdims=True) * _lse(train_logits)[:, None]
    expected = []
    for a in real["test"]:
        sims = np.sort(bank @ (a / np.linalg.norm(a)))[::-1][:k]
        expected.append(-sims.mean() * _lse((w @ a + b)[None])[0])
    np.testing.assert_allclose(_fit(NNGuide(k=k), real).score(real["test"]), expected, rtol=RTOL)


def test_nnguide_equals_pytorch_ood(real) -> None:
    from pytorch_ood.detector import NNGuide as TorchNNGuide

    theirs = TorchNNGuide(None, _head(real), k=5).fit_features(_t(real["train"]), _t(real["labels"]))
    expected = theirs.predict_features(_t(real["test"]).float()).double().numpy()  # its head is float32
    np.testing.assert_allclose(_fit(NNGuide(k=5), real).score(real["test"]), expected, rtol=RTOL_FLOAT32)


# ---- NCI -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_nci_matches_per_sample_formula(real, alpha: float) -> None:
    w, b = real["weight"], real["bias"]
    mu = real["train"].mean(axis=0)
    expected = [-(w[np.argmax(w @ a + b)] @ (a - mu) / np.linalg.norm(a - mu) + alpha * np.abs(a).sum())
                for a in real["test"]]
    np.testing.assert_allclose(_fit(NCI(alpha=alpha), real).score(real["test"]), expected, rtol=RTOL)


@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_nci_equals_pytorch_ood(real, alpha: float) -> None:
    from pytorch_ood.detector import NCI as TorchNCI

    theirs = TorchNCI(None, _head(real), alpha=alpha).fit_features(_t(real["train"]))
    expected = theirs.predict_features(_t(real["test"])).double().numpy()
    np.testing.assert_allclose(_fit(NCI(alpha=alpha), real).score(real["test"]), expected, rtol=RTOL_FLOAT32)


def test_nci_rejects_negative_alpha() -> None:
    with pytest.raises(InputError, match="alpha"):
        NCI(alpha=-1.0)
