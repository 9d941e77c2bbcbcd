"""The embedded default: a classifier and a fitted NERO detector that ship inside the package.

EfficientNet-Lite0 fine-tuned on the three HyperKvasir ID classes (see assets/MODEL_CARD.md), and
the NERO detector fitted on its features and calibrated on ID validation images.
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
MODEL = ASSETS / "efficientnet_lite0_hyperkvasir.pt"
DETECTOR = ASSETS / "nero_default.npz"
MODEL_CARD = ASSETS / "MODEL_CARD.md"
