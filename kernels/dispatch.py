"""One entry point per kernel, picking the implementation from where the data lives.

- NumPy arrays and CPU torch tensors → the Numba CPU kernels (torch tensors are viewed, not copied);
- CUDA torch tensors → the Numba CUDA kernels, zero-copy through `__cuda_array_interface__`, launched
  on torch's current stream; the outputs are CUDA torch tensors and nothing visits host memory;
- Numba device arrays (what the CUDA simulator hands out) → the Numba CUDA kernels.

Outputs come back in the kind of container that went in. `STREAM_MONITOR_KERNELS=reference` routes
NumPy inputs to the NumPy reference instead (a debugging switch, and a way out if Numba misbehaves).
Rows with NaN get NaN / -1 / the INVALID flag, as `reference.py` defines.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

from . import cpu, reference
from .reference import FLAG_INVALID, FLAG_OVER

__all__ = ["FLAG_INVALID", "FLAG_OVER", "fuse_scores", "implementation_for", "low_relevance_ratio", "nearest_l1",
           "score_stage", "threshold_flags", "top_abs"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_cuda")


def implementation_for(x: Any) -> str:
    """"numba-cuda", "numba-cpu" or "numpy-reference": which implementation `x`'s kernels run on."""
    # Numba device arrays, real or simulated (the simulator's lack __cuda_array_interface__).
    device_array = hasattr(x, "copy_to_host") or hasattr(x, "__cuda_array_interface__")
    if (_is_torch(x) and x.is_cuda) or (device_array and not _is_torch(x)):
        return "numba-cuda"
    if os.environ.get("STREAM_MONITOR_KERNELS", "").lower() == "reference":
        return "numpy-reference"
    return "numba-cpu"


def _host(x: Any, dtype: Any = None) -> np.ndarray:
    """A C-contiguous NumPy view of a host array or CPU tensor (a copy only when layout or dtype demand)."""
    array = x.detach().numpy() if _is_torch(x) else np.asarray(x)
    if array.dtype not in (np.float32, np.float64) and dtype is None:
        array = array.astype(np.float64)
    return np.ascontiguousarray(array, dtype=dtype)


def _wrap(x: Any, like: Any) -> Any:
    if _is_torch(like):
        import torch

        return torch.from_numpy(x)
    return x


# ------------------------------------------------------------------------------------------ CUDA side
def _cuda_context(like: Any) -> tuple[Any, Any, Any]:
    """(numba.cuda, stream, allocate(shape, dtype) -> (container, device view)) for `like`'s device."""
    from numba import cuda

    from . import cuda as cuda_kernels

    cuda_kernels._kernels()  # binds the module's `cuda` global before the first launch
    if _is_torch(like):
        import torch

        stream = _external_stream(cuda, torch.cuda.current_stream(like.device).cuda_stream)

        def allocate(shape: tuple[int, ...], dtype: Any) -> tuple[Any, Any]:
            tensor = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=like.device)
            return tensor, cuda.as_cuda_array(tensor, sync=False)

        return cuda, stream, allocate

    def allocate_numba(shape: tuple[int, ...], dtype: Any) -> tuple[Any, Any]:
        array = cuda.device_array(shape, dtype=dtype)
        return array, array

    return cuda, 0, allocate_numba


@lru_cache(maxsize=16)
def _external_stream(cuda: Any, handle: int) -> Any:
    return cuda.external_stream(handle)


# Numba's view of a torch tensor costs tens of microseconds to build (it parses the tensor's
# __cuda_array_interface__ and queries the driver), which at live batch sizes is most of a launch.
# The engine's tensors repeat from call to call (CUDA-graph outputs are static), so views are kept,
# keyed by what makes them identical. A kept view holds its tensor, so the memory behind a key cannot
# be handed to another tensor while the key is cached: a hit is always the same memory.
_VIEWS: OrderedDict[tuple, Any] = OrderedDict()
_VIEWS_KEPT = 32


def _device_view(cuda: Any, x: Any) -> Any:
    if not _is_torch(x):
        return x
    x = x.detach()
    if not x.is_contiguous():
        x = x.contiguous()
    key = (x.data_ptr(), tuple(x.shape), x.dtype, x.device.index)
    view = _VIEWS.get(key)
    if view is None:
        # sync=False: the kernels run on torch's current stream, so they are already ordered after the
        # kernels that produced x; the default would make Numba synchronise on x's stream first.
        view = _VIEWS[key] = cuda.as_cuda_array(x, sync=False)
        if len(_VIEWS) > _VIEWS_KEPT:
            _VIEWS.popitem(last=False)
    else:
        _VIEWS.move_to_end(key)
    return view


def _float_dtype(x: Any) -> Any:
    name = str(x.dtype).replace("torch.", "")
    return np.float64 if name == "float64" else np.float32


# ---------------------------------------------------------------------------------------- the kernels
def nearest_l1(samples: Any, centroids: Any) -> tuple[Any, Any]:
    """L1 distance to the nearest centroid and its index: samples (B, P), centroids (K, P) → (B,), (B,) int64."""
    impl = implementation_for(samples)
    if impl == "numba-cuda":
        cuda, stream, allocate = _cuda_context(samples)
        dtype = _float_dtype(samples)
        distance, distance_view = allocate((samples.shape[0],), dtype)
        index, index_view = allocate((samples.shape[0],), np.int64)
        from . import cuda as cuda_kernels

        cuda_kernels.nearest_l1(_device_view(cuda, samples), _device_view(cuda, centroids), distance_view,
                                index_view, stream)
        return distance, index
    if impl == "numpy-reference":
        return reference.nearest_l1(_host(samples), _host(centroids))
    x = _host(samples)
    c = _host(centroids, x.dtype)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] != x.shape[1] or x.shape[1] < 1:
        raise ValueError(f"samples (B, P ≥ 1) and centroids (K ≥ 1, P) disagree: {x.shape}, {c.shape}")
    distance = np.empty(len(x), dtype=x.dtype)
    index = np.empty(len(x), dtype=np.int64)
    cpu.nearest_l1(x, c, distance, index)
    return _wrap(distance, samples), _wrap(index, samples)


def fuse_scores(distance: Any, bias_relevance: Any, rho: Any, lam: float, use_distance: bool = True,
                use_bias: bool = True, use_rho: bool = True, residual: Any = None) -> tuple[Any, Any]:
    """score = (d + λ·|R_bias|)·ρ[·residual], terms switchable (a sum of no terms is 1):
    (B,) inputs → score (B,), bias_term (B,)."""
    impl = implementation_for(distance)
    if impl == "numba-cuda":
        cuda, stream, allocate = _cuda_context(distance)
        dtype = _float_dtype(distance)
        score, score_view = allocate((distance.shape[0],), dtype)
        bias_term, bias_view = allocate((distance.shape[0],), dtype)
        from . import cuda as cuda_kernels

        cuda_kernels.fuse_scores(_device_view(cuda, distance), _device_view(cuda, bias_relevance),
                                 _device_view(cuda, rho), None if residual is None else _device_view(cuda, residual),
                                 lam, use_distance, use_bias, use_rho, score_view, bias_view, stream)
        return score, bias_term
    if impl == "numpy-reference":
        return reference.fuse_scores(_host(distance), _host(bias_relevance), _host(rho), lam, use_distance,
                                     use_bias, use_rho, None if residual is None else _host(residual))
    d = _host(distance)
    score = np.empty_like(d)
    bias_term = np.empty_like(d)
    cpu.fuse_scores(d, _host(bias_relevance, d.dtype), _host(rho, d.dtype),
                    None if residual is None else _host(residual, d.dtype), float(lam), bool(use_distance),
                    bool(use_bias), bool(use_rho), score, bias_term)
    return _wrap(score, distance), _wrap(bias_term, distance)


def threshold_flags(score: Any, threshold: float) -> Any:
    """(B,) uint8 bit flags: FLAG_OVER where score > threshold, FLAG_INVALID where it is not finite."""
    impl = implementation_for(score)
    if impl == "numba-cuda":
        cuda, stream, allocate = _cuda_context(score)
        flags, flags_view = allocate((score.shape[0],), np.uint8)
        from . import cuda as cuda_kernels

        cuda_kernels.threshold_flags(_device_view(cuda, score), threshold, flags_view, stream)
        return flags
    if impl == "numpy-reference":
        return reference.threshold_flags(_host(score), threshold)
    s = _host(score)
    flags = np.empty(len(s), dtype=np.uint8)
    cpu.threshold_flags(s, float(threshold), flags)
    return _wrap(flags, score)


def score_stage(projected: Any, centroids: Any, relevance: Any, raw_means: Any, bias_relevance: Any, rho: Any,
                lam: float, threshold: float, switches: tuple[bool, bool, bool] = (True, True, True),
                residual: Any = None, outputs: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """The scoring stage after the graph: nearest centroid, fused score, flags and the explanation's
    nearest raw class mean (L1 over [relevance, R_bias] against raw_means (C, D+1)).

    Returns distance, index, reference (int64), score, bias_term, flags (uint8), each (B,). On CUDA
    tensors it is one kernel launch (`cuda.score_rows`); elsewhere the single kernels in turn.
    """
    if implementation_for(projected) == "numba-cuda":
        cuda, stream, allocate = _cuda_context(projected)
        dtype = _float_dtype(projected)
        rows = projected.shape[0]
        view = lambda x: None if x is None else _device_view(cuda, x)  # noqa: E731
        if outputs is None:
            pairs = [allocate((rows,), t) for t in (dtype, np.int64, np.int64, dtype, dtype, np.uint8)]
            made, views = [p[0] for p in pairs], tuple(p[1] for p in pairs)
        else:
            made, views = list(outputs), tuple(view(o) for o in outputs)
        from . import cuda as cuda_kernels

        cuda_kernels.score_rows(view(projected), view(centroids), view(relevance), view(raw_means),
                                view(bias_relevance), view(rho), view(residual), lam, switches, threshold,
                                views, stream)
        return dict(zip(("distance", "index", "reference", "score", "bias_term", "flags"), made))
    distance, index = nearest_l1(projected, centroids)
    score, bias_term = fuse_scores(distance, bias_relevance, rho, lam, *switches, residual=residual)
    raw = np.concatenate([_host(relevance), _host(bias_relevance, _host(relevance).dtype)[:, None]], axis=1)
    _, reference_index = nearest_l1(raw, _host(raw_means, raw.dtype))
    return {"distance": distance, "index": index, "reference": _wrap(reference_index, projected), "score": score,
            "bias_term": bias_term, "flags": threshold_flags(score, threshold)}


def low_relevance_ratio(features: Any, relevance: Any, k: int) -> Any:
    """ρ on the host: features, relevance (B, D), 1 ≤ k ≤ D → (B,). (On a GPU ρ is computed inside the
    fused graph with `topk`, so there is no CUDA kernel for it.)"""
    if implementation_for(relevance) == "numba-cuda":
        raise ValueError("low_relevance_ratio runs on the host; on the GPU the fused graph computes rho")
    r = _host(relevance)
    a = _host(features, r.dtype)
    if not 1 <= k <= r.shape[1] or a.shape != r.shape:
        raise ValueError(f"need features and relevance of one shape (B, D) and 1 ≤ k ≤ D, got {a.shape}, "
                         f"{r.shape}, k={k}")
    if implementation_for(relevance) == "numpy-reference":
        return reference.low_relevance_ratio(a, r, k)
    rho = np.empty(len(r), dtype=r.dtype)
    cpu.low_relevance_ratio(a, r, int(k), rho)
    return _wrap(rho, relevance)


def top_abs(values: Any, n: int) -> tuple[Any, Any]:
    """The n entries of largest |value| per row, largest first: values (B, D) → index (B, n), value (B, n).

    On CUDA tensors this is `torch.topk` (whose order among exactly equal magnitudes is unspecified).
    """
    if _is_torch(values) and values.is_cuda:
        import torch

        index = torch.topk(values.abs(), n, dim=1, sorted=True).indices
        return index, torch.gather(values, 1, index)
    v = _host(values)
    if not 1 <= n <= v.shape[1]:
        raise ValueError(f"n must be in [1, D={v.shape[1]}], got {n}")
    if implementation_for(values) == "numpy-reference":
        return reference.top_abs(v, n)
    index = np.empty((len(v), n), dtype=np.int64)
    top = np.empty((len(v), n), dtype=v.dtype)
    cpu.top_abs(v, n, index, top)
    return _wrap(index, values), _wrap(top, values)
