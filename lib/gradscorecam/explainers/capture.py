"""Reading a layer's activations and gradients without leaving a trace on the model.

:class:`LayerCapture` registers a forward hook on the target layer for exactly one ``with`` block; the
model's state around a call is kept by :func:`gradscorecam.torchutils.model_state_guard`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import TargetLayerError


class LayerCapture:
    """Forward hook that keeps the target layer's output ``A`` of one forward pass.

    With ``need_grad=True`` the hook hands the rest of the network a copy of ``A`` that hangs off a fresh
    leaf tensor, so ``torch.autograd.grad(score, capture.activations)`` is exactly dY/dA: nothing before
    the layer is differentiated, and in-place operations after it (``ReLU(inplace=True)``) act on the copy,
    never on the stored activations.
    """

    def __init__(self, layer: nn.Module, layer_name: str, need_grad: bool) -> None:
        self.layer = layer
        self.layer_name = layer_name
        self.need_grad = need_grad
        self.activations: Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, _module: nn.Module, _inputs: object, output: object) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise TargetLayerError(
                f"target layer {self.layer_name!r} outputs {shape}, not a 4-D (B, C, h, w) feature map; "
                "CAM methods need a convolutional layer (list candidates with gradscorecam.feature_layers(model))."
            )
        if self.activations is not None:
            raise TargetLayerError(
                f"target layer {self.layer_name!r} runs more than once per forward pass (a shared module); "
                "pick a layer that is used once."
            )
        self.activations = output.detach()
        if self.need_grad:
            self.activations.requires_grad_(True)
        return self.activations.clone() if self.need_grad else output.clone()

    def __enter__(self) -> LayerCapture:
        self.activations = None
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def forward_with_capture(
    model: nn.Module, layer: nn.Module, layer_name: str, images: Tensor, need_grad: bool
) -> tuple[Tensor, Tensor]:
    """One forward pass of ``images``; returns ``(logits, A)``. ``A`` is a grad-enabled leaf if ``need_grad``."""
    with LayerCapture(layer, layer_name, need_grad) as capture, torch.set_grad_enabled(need_grad):
        logits = model(images)
    if capture.activations is None:
        raise TargetLayerError(
            f"target layer {layer_name!r} was not called during the forward pass; "
            "pick a layer on the path from input to output."
        )
    return logits, capture.activations
