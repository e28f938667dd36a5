"""CAM (Zhou et al., CVPR 2016): the classifier's own weights on a global-average-pooled layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from .base import BaseCAM, Captured
from .layers import LayerSpec, resolve_target_layer

_SUGGESTION = "Use GradCAM, which generalises CAM to any architecture (it gives the same map where CAM is defined)."


class CAM(BaseCAM):
    r"""Class Activation Mapping (Zhou et al., "Learning Deep Features for Discriminative Localization", 2016).

    .. math::
        w_k = W_{c,k}, \qquad L = \mathrm{ReLU}\Big(\sum_k W_{c,k} A^k\Big)

    where W is the weight matrix of the final linear layer. CAM is only defined when the target layer is
    followed by global average pooling and that one linear layer, i.e. ``logits = W GAP(A) + b``
    (ResNet ``layer4``, MobileNet, DenseNet ...). Each call checks this identity numerically on the
    batch and raises :class:`~gradscorecam.errors.UnsupportedModelError` otherwise (VGG16 and AlexNet have
    a three-layer classifier). On such models CAM equals Grad-CAM after normalisation.

    The check recomputes the logits in float32 from the captured A and W and allows a relative difference of
    ``max(1e-3, 4 * eps)`` of the largest logit, eps the machine epsilon of the model's logits (bf16: 0.031,
    fp16: 0.004), because a half-precision model rounds its own pooling and product at that precision.

    Args:
        fc_layer: the final linear layer, by name or module; default the last ``nn.Linear`` of the model.
    """

    backward_on_clean_image = False

    def __init__(
        self, model: nn.Module, target_layer: LayerSpec, *, fc_layer: LayerSpec | None = None, **kwargs: object
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        if fc_layer is None:
            linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise UnsupportedModelError(
                    f"CAM needs the target layer to be followed by global average pooling and one linear layer; "
                    f"{type(model).__name__} has no nn.Linear. {_SUGGESTION}"
                )
            self.fc_name, self.fc = linears[-1]
        else:
            fc_name, fc = resolve_target_layer(model, fc_layer)
            if not isinstance(fc, nn.Linear):
                raise UnsupportedModelError(f"fc_layer {fc_name!r} is a {type(fc).__name__}, not nn.Linear.")
            self.fc_name, self.fc = fc_name, fc

    def options(self) -> dict[str, Any]:
        return {**super().options(), "fc_layer": self.fc_name}

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        activations = captured.activations.float()
        channels = activations.shape[1]
        weight = self.fc.weight.detach().float()
        if weight.shape[1] != channels:
            raise UnsupportedModelError(
                f"CAM is not defined here: target layer {self.target_layer_name!r} has {channels} channels but the "
                f"final linear layer {self.fc_name!r} takes {weight.shape[1]} features, so more than a global average "
                f"pooling lies between them (e.g. VGG16/AlexNet's flatten and three-layer classifier). {_SUGGESTION}"
            )
        pooled = activations.mean(dim=(-2, -1))
        predicted = pooled @ weight.T
        if self.fc.bias is not None:
            predicted = predicted + self.fc.bias.detach().float()
        logits = captured.logits.float()
        gap = (predicted - logits).abs().max().item()
        scale = logits.abs().max().item() + 1e-6
        tolerance = max(1e-3, 4 * torch.finfo(captured.logits.dtype).eps)
        if gap > tolerance * scale:
            raise UnsupportedModelError(
                f"CAM is not defined here: the logits are not {self.fc_name}(global average pool of "
                f"{self.target_layer_name!r}) (they differ by up to {gap:.3g}), so the linear weights do not "
                f"describe how the class score depends on this layer. {_SUGGESTION}"
            )
        return weight[captured.targets], {}
