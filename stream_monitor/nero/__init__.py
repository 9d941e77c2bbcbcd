"""NERO: neuron-level relevance at the classifier head (Chhetri et al., MICCAI 2025).

    from stream_monitor.nero import NeroDetector
    det = NeroDetector(mode="parity").fit(features, labels, weight, bias)
    scores = det.score(test_features)        # (N,) float64, higher = more OOD
"""

from .config import NeroConfig
from .detector import Explanation, NeroDetector, NeroParts

__all__ = ["NeroConfig", "NeroDetector", "NeroParts", "Explanation"]
