"""SmoothGrad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with gradients averaged over noisy copies."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import BaseCAM, Captured
from .gradient import gradcampp_pixel_weights, warn_unbounded_pixel_weights
from .layers import LayerSpec


class SmoothGradCAMPlusPlus(BaseCAM):
    r"""SmoothGrad-CAM++ (Omeiza, Speakman, Cintas, Weldemariam, arXiv:1908.01224, 2019, Eqs. 9–12).

    Grad-CAM++ whose gradient terms are SmoothGrad averages over ``n`` copies of the input with Gaussian
    noise, :math:`X_s = X + \epsilon_s`, :math:`\epsilon_s \sim \mathcal N(0, \sigma^2)`:

    .. math::
        D_1 = \frac1n \sum_s G(X_s), \quad D_2 = \frac1n \sum_s G(X_s)^2, \quad D_3 = \frac1n \sum_s G(X_s)^3

        a^k_{ij} = \frac{D^k_{2,ij}}{2 D^k_{2,ij} + \sum_{ab} A^k_{ab} D^k_{3,ij}}, \qquad
        w_k = \sum_{ij} a^k_{ij}\,\mathrm{ReLU}(D^k_{1,ij}), \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    where G = dY^c/dA is taken on each noisy copy for the class c explained on the clean image, and A is
    the clean image's activation (as torchcam does).

    Consequence worth knowing: at a layer followed directly by global average pooling and one linear layer
    (ResNet ``layer4``, MobileNetV2's last block), dY^c/dA = W_c / (hw) does not depend on the input, so
    the noise changes nothing and SmoothGrad-CAM++ equals Grad-CAM++ exactly. It differs where more
    network follows the layer (VGG16 ``features.29``, AlexNet, inner layers). Implementations that average
    the maps of the noisy copies instead (Kawai's) use the noisy activations too; that is another method.

    Defaults: the paper fixes neither n nor σ in its text. σ follows SmoothGrad (Smilkov et al.,
    arXiv:1706.03825, Sec. 3), which sets it relative to the input range, σ = noise_level · (max X − min X),
    and recommends noise levels of 10–20%; we take 15%. n = 25 and 15% are the defaults of the PyTorch
    implementation by Kawai (github.com/yiskw713/SmoothGradCAMplusplus), which reproduces the paper's
    figures (that code divides by the range where SmoothGrad multiplies; we follow SmoothGrad).

    Args:
        n_samples: number of noisy copies n.
        noise_level: σ as a fraction of each image's value range (max − min, in the normalised input).
        seed: seeds the noise; the same seed gives the same maps, and each image's noise does not depend
            on the other images in the batch. ``None`` draws fresh noise on every call.
        batch_size: noisy copies per forward/backward pass (bounds memory).
        eps: added to the a^k_ij denominator, as in :class:`GradCAMPlusPlus` (which also says why a layer with
            signed activations warns).

    The noise is drawn in float32 on the CPU (so a seed gives the same noise on every device and dtype) and
    added in the images' dtype; the moments D_1..D_3 are accumulated in float32, also for a bf16/fp16 model.

    ``details``: ``pixel_weights`` a^k_ij and the averaged gradients ``gradients`` (D_1), (B, K, h, w).
    """

    backward_on_clean_image = False  # the clean pass gives A only; the gradients come from the noisy copies

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        n_samples: int = 25,
        noise_level: float = 0.15,
        seed: int | None = 0,
        batch_size: int = 16,
        eps: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.seed = seed
        self.batch_size = batch_size
        self.eps = eps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "n_samples": self.n_samples, "noise_level": self.noise_level, "seed": self.seed,
                "batch_size": self.batch_size, "eps": self.eps}  # fmt: skip

    def _noise(self, shape: torch.Size) -> Tensor:
        # Drawn on the CPU so that a seed gives the same noise on every device.
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        return torch.randn((self.n_samples, *shape), generator=generator)

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        images, activations, targets = captured.images, captured.activations, captured.targets
        batch = len(images)
        flat = images.detach().flatten(1).float()
        sigma = (self.noise_level * (flat.max(dim=1).values - flat.min(dim=1).values)).view(-1, 1, 1, 1)
        noise = self._noise(images.shape[1:])

        moments = [torch.zeros_like(activations, dtype=torch.float32) for _ in range(3)]
        pairs = [(s, b) for s in range(self.n_samples) for b in range(batch)]
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            sample_idx = torch.tensor([s for s, _ in chunk])
            image_idx = torch.tensor([b for _, b in chunk], device=images.device)
            noisy = (images[image_idx].float() + sigma[image_idx] * noise[sample_idx].to(images.device)).to(
                images.dtype
            )
            _, _, grads, _ = self._class_gradients(noisy, targets[image_idx])
            grads = grads.float()
            for moment, power in zip(moments, (1, 2, 3), strict=True):
                moment.index_add_(0, image_idx, grads**power)
        d1, d2, d3 = (m / self.n_samples for m in moments)
        alpha = gradcampp_pixel_weights(activations.float(), d2, d3, self.eps)
        warn_unbounded_pixel_weights(activations.float(), d2, d3, d1 > 0, self.target_layer_name, "SmoothGrad-CAM++")
        weights = (alpha * torch.relu(d1)).sum(dim=(-2, -1))
        return weights, {"gradients": d1, "pixel_weights": alpha}
