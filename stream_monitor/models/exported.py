"""A classifier saved with `torch.export` (`.pt2`) as a `ClassifierAdapter` — no pickle, no user code.

    >>> ep = torch.export.export(model.eval(), (torch.zeros(2, 3, 224, 224),),
    ...                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    >>> torch.export.save(ep, "my_model.pt2")                       # then: stream-monitor fit --model my_model.pt2

`torch.export.load` rebuilds the graph from its serialised form; unlike a pickled module it cannot run
code from the file. The graph's output must come straight from one `aten.linear` (an `nn.Linear`, as
`torch.export.export` records it): the graph is cut there so that it returns the linear layer's input —
the pooled feature — and that layer becomes the adapter's head. A graph whose output is made by anything
else (a softmax, a decomposed `addmm` after `run_decompositions()`) is refused with what to do.
"""

from __future__ import annotations

import operator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from stream_monitor.errors import CheckpointError, InputError, UnsupportedModelError
from stream_monitor.models.base import ClassifierAdapter

__all__ = ["EXPORT_SUFFIX", "ExportedAdapter", "load_exported"]

EXPORT_SUFFIX = ".pt2"
# Live scoring runs batches of one and of several: an export specialised to its example batch fails on either.
_PROBE_BATCHES = (1, 3)


class ExportedAdapter(ClassifierAdapter):
    """An exported graph cut before its final linear layer; that layer is `self.classifier`."""

    has_feature_map = False

    def __init__(self, graph: fx.GraphModule, classifier: nn.Linear, arch: str) -> None:
        super().__init__(graph, arch=arch, feature_dim=classifier.in_features, num_classes=classifier.out_features)
        self.classifier = classifier

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.backbone(x), None

    @property
    def head(self) -> nn.Linear:
        return self.classifier

    def train(self, mode: bool = True) -> "ExportedAdapter":
        # The graph was exported in eval mode and torch refuses train()/eval() on it; only the flag changes.
        self.training = mode
        self.classifier.train(mode)
        return self


def _final_linear(graph_module: fx.GraphModule, path: Path) -> tuple[fx.Node, fx.Node, nn.Linear]:
    """(output node, feature node, the linear layer) of the graph's single output."""
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    leaves = output.args[0]
    if not isinstance(leaves, (tuple, list)) or len(leaves) != 1:
        raise UnsupportedModelError(f"{path}: the exported program returns {len(leaves)} outputs; export a model "
                                    f"that returns only its logits")
    final = leaves[0]
    if not (isinstance(final, fx.Node) and final.op == "call_function" and final.target == torch.ops.aten.linear.default):
        made_by = getattr(final, "target", final)
        raise UnsupportedModelError(
            f"{path}: the logits are made by {made_by}, not by an nn.Linear (aten.linear). NERO needs a linear head "
            f"as the last step: export the model without a softmax or other layer after its final nn.Linear, and "
            f"without run_decompositions() (which turns linear into addmm)")
    features, weight_node, *rest = final.args
    bias_node = rest[0] if rest else None
    if any(n is not None and n.op != "get_attr" for n in (weight_node, bias_node)):
        raise UnsupportedModelError(f"{path}: the final linear layer's weights are computed in the graph, not stored")
    weight = operator.attrgetter(weight_node.target)(graph_module).detach()
    bias = None if bias_node is None else operator.attrgetter(bias_node.target)(graph_module).detach()
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    return output, features, head


@torch.no_grad()
def load_exported(path: str | Path, image_size: int = 224) -> ExportedAdapter:
    """Load a `.pt2` program and cut it before its final linear layer; arch is "export:<file name>".

    Raises:
        CheckpointError: the file is missing or not a readable exported program.
        UnsupportedModelError: its output is not an `aten.linear` over a pooled (B, D) feature.
        InputError: it cannot run on batches of 1 and 3 `image_size`² images (export with a dynamic batch).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported program {path} does not exist")
    try:
        program = torch.export.load(path)
    except Exception as exc:  # torch raises many types for a foreign or corrupt archive
        raise CheckpointError(f"cannot read {path} as a torch.export program: {exc}") from exc
    graph_module = program.module()
    output, features, head = _final_linear(graph_module, path)
    generator = torch.Generator().manual_seed(0)
    try:
        for batch in _PROBE_BATCHES:
            x = torch.randn(batch, 3, image_size, image_size, generator=generator)
            expected = graph_module(x)
    except Exception as exc:
        raise InputError(
            f"{path} cannot run on a batch of {batch} {image_size}×{image_size} RGB images "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Export it with a dynamic batch dimension "
            f"(dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}}) and {image_size}×{image_size} input") from exc
    output.args = ((features,),)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    pooled = graph_module(x)
    if pooled.ndim != 2 or not torch.allclose(F.linear(pooled, head.weight, head.bias), expected, rtol=1e-4, atol=1e-5):
        raise UnsupportedModelError(f"{path}: the final linear layer's input has shape {tuple(pooled.shape)}; NERO "
                                    f"needs it pooled to (B, D)")
    return ExportedAdapter(graph_module, head, arch=f"export:{path.name}").eval()
