"""Gradient-weighted methods: Grad-CAM and Grad-CAM++."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import BaseCAM, Captured
from .layers import LayerSpec


def gradcampp_pixel_weights(activations: Tensor, grad_2: Tensor, grad_3: Tensor, eps: float = 0.0) -> Tensor:
    r"""Grad-CAM++ pixel weights a^k_ij (Chattopadhyay et al. 2018, Eq. 19, closed form for Y = exp(S)).

    .. math::
        a^k_{ij} = \frac{(G^k_{ij})^2}{2 (G^k_{ij})^2 + \sum_{ab} A^k_{ab} (G^k_{ij})^3}

    ``grad_2`` and ``grad_3`` are the squared and cubed gradients (passed separately so that
    SmoothGrad-CAM++ can hand in their averages over noisy copies). Where the denominator is 0 the weight
    is 0. ``eps`` is added to the denominator; Eq. 19 has none (default 0), pytorch-grad-cam adds 1e-6.
    """
    sum_activations = activations.sum(dim=(-2, -1), keepdim=True)
    denominator = 2 * grad_2 + sum_activations * grad_3 + eps
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, grad_2 / safe, torch.zeros_like(grad_2))


class GradCAM(BaseCAM):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1–2).

    .. math::
        w_k = \frac{1}{hw} \sum_{ij} \frac{\partial Y^c}{\partial A^k_{ij}}, \qquad
        L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    Y^c is the class logit, A^k the k-th channel of the target layer. ``details``: ``gradients`` (B, K, h, w).
    """

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        assert captured.gradients is not None
        return captured.gradients.mean(dim=(-2, -1)), {"gradients": captured.gradients}


class GradCAMPlusPlus(BaseCAM):
    r"""Grad-CAM++ (Chattopadhyay et al., WACV 2018), closed form of Eq. 19 with the class logit Y^c.

    .. math::
        a^k_{ij} = \frac{(G^k_{ij})^2}{2 (G^k_{ij})^2 + \sum_{ab} A^k_{ab} (G^k_{ij})^3}, \qquad
        w_k = \sum_{ij} a^k_{ij} \, \mathrm{ReLU}(G^k_{ij}), \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    with G^k = dY^c/dA^k; a^k_ij = 0 where the denominator is 0.

    Args:
        eps: added to the denominator of a^k_ij. 0 (default) follows Eq. 19 exactly. pytorch-grad-cam
            uses 1e-6: with gradients of 1e-4 to 1e-3, as in real ImageNet networks, that changes the
            pixel weights by a large factor and the [0, 1] maps by up to about 0.05. Pass ``eps=1e-6`` to
            reproduce its numbers.

    ``details``: ``gradients`` and ``pixel_weights`` a^k_ij, both (B, K, h, w).
    """

    def __init__(self, model: nn.Module, target_layer: LayerSpec, *, eps: float = 0.0, **kwargs: object) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        self.eps = eps

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        grads = captured.gradients
        assert grads is not None
        alpha = gradcampp_pixel_weights(captured.activations, grads**2, grads**3, self.eps)
        weights = (alpha * torch.relu(grads)).sum(dim=(-2, -1))
        return weights, {"gradients": grads, "pixel_weights": alpha}
