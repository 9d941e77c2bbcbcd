"""Fine-tune a classifier on the ID classes of a split with the NERO paper's recipe (docs/NERO.md §9):
Adam lr 1e-4, batch 32, flips, colour jitter 0.25, RandomInvert 0.3, RandomEqualize 0.3; the best epoch
by ID validation accuracy is kept, in float16, with a JSON sidecar.

examples:
  stream-monitor train --out runs/effnet.pt                       # EfficientNet-Lite0, committed split, 20 epochs
  stream-monitor train --arch resnet18 --init-checkpoint resnet18_imagenet.pth --out runs/r18.pt
"""

from ..training.train import add_train_arguments as add_arguments  # noqa: F401
from ..training.train import run_train as run  # noqa: F401
