"""Gradient-weighted methods: Grad-CAM and Grad-CAM++."""

from __future__ import annotations

import warnings
from typing import Any

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

    Eq. 19 is derived for non-negative activations (a layer after a ReLU). There, for G > 0,
    a = 1 / (2 + ΣA·G) lies in (0, 1/2]. Where ΣA^k < 0 (a BatchNorm or convolution output before its
    ReLU), the denominator 2G² + ΣA·G³ = G²(2 + ΣA·G) falls to 0 at G = −2/ΣA and changes sign beyond: a
    grows without bound, then turns negative. This function keeps Eq. 19's values (as pytorch-grad-cam and
    torchcam do, so results stay comparable); the explainers warn through :func:`warn_unbounded_pixel_weights`.
    """
    sum_activations = activations.sum(dim=(-2, -1), keepdim=True)
    denominator = 2 * grad_2 + sum_activations * grad_3 + eps
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, grad_2 / safe, torch.zeros_like(grad_2))


def unbounded_pixel_weights(activations: Tensor, grad_2: Tensor, grad_3: Tensor, positive: Tensor) -> Tensor:
    r"""(B, K, h, w) bool: pixels that count (``positive``, where ReLU(G) > 0) whose a^k_ij leaves (0, 1].

    That is ``grad_2 + ΣA·grad_3 <= 0``; for Grad-CAM++ (grad_2 = G², grad_3 = G³, G > 0) it reads
    1 + ΣA·G <= 0, i.e. a >= 1 (at least twice the largest weight a layer with A >= 0 can give), a < 0,
    or a zero denominator. It can only happen where ΣA^k < 0.
    """
    sum_activations = activations.sum(dim=(-2, -1), keepdim=True)
    return positive & (grad_2 + sum_activations * grad_3 <= 0)


def warn_unbounded_pixel_weights(
    activations: Tensor, grad_2: Tensor, grad_3: Tensor, positive: Tensor, layer_name: str, method: str
) -> None:
    """RuntimeWarning naming the layer when :func:`unbounded_pixel_weights` finds any pixel (Eq. 19 kept as is)."""
    bad = unbounded_pixel_weights(activations, grad_2, grad_3, positive)
    if not bool(bad.any()):
        return
    channels = int(bad.flatten(-2).any(dim=-1).sum())
    warnings.warn(
        f"{method} at layer {layer_name!r}: Grad-CAM++ pixel weights a^k_ij leave (0, 1] in {channels} "
        "(image, channel) pairs, because those channels' activations sum to a negative value (a BatchNorm or "
        "convolution output before its ReLU). Eq. 19's denominator 2G^2 + sum(A) G^3 then nears or crosses 0, "
        "so the weights are arbitrarily large or negative; they are kept as Eq. 19 gives them. Explain the "
        "layer after the ReLU for meaningful Grad-CAM++ weights.",
        RuntimeWarning,
        stacklevel=4,
    )


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

    Signed activations: at a layer whose channels can sum to a negative value (a BatchNorm or convolution
    output before its ReLU), the denominator can reach 0 or turn negative for G > 0, giving arbitrarily large
    or negative pixel weights (see :func:`gradcampp_pixel_weights`). The weights are kept as Eq. 19 gives
    them, like the reference libraries, and a ``RuntimeWarning`` names the layer whenever a pixel with G > 0
    gets a weight outside (0, 1]; after a ReLU this cannot happen (a lies in (0, 1/2]).

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

    def options(self) -> dict[str, Any]:
        return {**super().options(), "eps": self.eps}

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        grads = captured.gradients
        assert grads is not None
        grads = grads.float()
        activations = captured.activations.float()
        alpha = gradcampp_pixel_weights(activations, grads**2, grads**3, self.eps)
        warn_unbounded_pixel_weights(activations, grads**2, grads**3, grads > 0, self.target_layer_name, "Grad-CAM++")
        weights = (alpha * torch.relu(grads)).sum(dim=(-2, -1))
        return weights, {"gradients": grads, "pixel_weights": alpha}
