"""The inference engine: frames in, scored frames out (logits, NERO score and parts, explanation).

`Scorer` (scorer.py) is the reference path — torch forward, then `NeroDetector.explain` in NumPy
float64 — and the contract the live pipeline uses. `create_scorer` builds the fast path behind the same
`score_batch(images) -> ScoredBatch`: the fused module (fused.py) run by a back-end plugin (backends/:
tensorrt, torch-cuda, openvino, torch-cpu), finished by the Numba kernels (`stream_monitor.kernels`).
"""

from .backends import EngineOptions, list_backends
from .fast import EngineScorer, create_scorer
from .fused import FusedNero, NeroHead
from .scorer import ScoredBatch, Scorer

__all__ = ["EngineOptions", "EngineScorer", "FusedNero", "NeroHead", "ScoredBatch", "Scorer", "create_scorer",
           "list_backends"]
