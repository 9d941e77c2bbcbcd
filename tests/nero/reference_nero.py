"""An independent, deliberately naive restatement of docs/NERO.md, written the way the paper's
reference code computes it: a Python loop over samples, a full sort for the k least-relevant neurons,
an SVD-based PCA, plain class means, λ in the raw (D+1) space. Nothing here imports stream_monitor,
so a mistake shared by both implementations would have to be made twice.
"""

import math

import numpy as np

K_REFERENCE = 175


def relevance_one(a, W, b):
    """R_d = Σ_c p_c · W'_{c,d} · a'_d / f_c for one sample, ε = 0, bias as an extra input."""
    a_ext = np.append(a, 1.0)
    W_ext = np.hstack([W, b[:, None]])
    f = W @ a + b
    p = np.exp(f - f.max())
    p = p / p.sum()
    R = np.zeros(len(a_ext))
    for c in range(len(f)):
        R += p[c] * W_ext[c] * a_ext / f[c]
    return R


def rho_one(a, R_neurons, k):
    idx = np.argsort(R_neurons, kind="stable")[:k]
    return np.abs(a[idx]).sum() / np.abs(a).sum()


def fit_reference(A, y, W, b, k=K_REFERENCE, n_components=None):
    N, D = A.shape
    C = W.shape[0]
    R = np.array([relevance_one(a, W, b) for a in A])
    neurons = R[:, :D]
    n_comp = math.floor(2 * D / 3) if n_components is None else n_components
    mean = neurons.mean(axis=0)
    _, _, vt = np.linalg.svd(neurons - mean, full_matrices=False)
    comps = vt[:n_comp]
    Z = (neurons - mean) @ comps.T
    centroids = np.array([Z[y == c].mean(axis=0) for c in range(C)])
    raw_means = np.array([R[y == c].mean(axis=0) for c in range(C)])
    raw_dist = [min(np.abs(R[i] - raw_means[c]).sum() for c in range(C)) for i in range(N)]
    lam = np.mean(raw_dist) / np.mean(np.abs(R[:, D]))
    return dict(W=W, b=b, mean=mean, comps=comps, centroids=centroids, lam=lam, k=k)


def score_reference(A, state):
    scores = []
    D = A.shape[1]
    for a in A:
        R = relevance_one(a, state["W"], state["b"])
        z = (R[:D] - state["mean"]) @ state["comps"].T
        d = min(np.abs(z - m).sum() for m in state["centroids"])
        rho = rho_one(a, R[:D], state["k"])
        scores.append((d + state["lam"] * abs(R[D])) * rho)
    return np.array(scores)
