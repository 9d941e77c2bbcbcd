"""The inference engine: frames in, scored frames out (logits, NERO score and parts, explanation).

The contract the live pipeline uses is in contract.py (`FrameScorer`, `ScoredBatch`); build.py's
`build_scorer` picks the scorer for a `model.backend` value.
`Scorer` (scorer.py) is the reference path — torch forward, then `NeroDetector.explain` in NumPy
float64. `create_scorer` builds the fast path behind the same
`score_batch(images) -> ScoredBatch`: the fused module (fused.py) run by a back-end plugin (backends/:
tensorrt, torch-cuda, openvino, torch-cpu), finished by the Numba kernels (`stream_monitor.kernels`).
"""

from .backends import EngineOptions, list_backends
from .build import build_scorer
from .contract import FrameScorer, ScoredBatch
from .fast import EngineScorer, create_scorer
from .fused import FusedNero, NeroHead
from .scorer import Scorer

__all__ = ["EngineOptions", "EngineScorer", "FrameScorer", "FusedNero", "NeroHead", "ScoredBatch", "Scorer",
           "build_scorer", "create_scorer", "list_backends"]
