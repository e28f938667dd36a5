r"""Grad++ScoreCAM (Soomro, Niaz, Choi, IEEE Access 2024), as this project reads the paper.

The paper combines a Grad-CAM++ phase with a Score-CAM phase but leaves open how (Sec. III, Algorithm 1,
Fig. 1). Every place where it can be read in more than one way is an argument of
:class:`GradPlusPlusScoreCAM`; this table says where each comes from.

========================  ==================================================================================
option (default first)    where in the paper
========================  ==================================================================================
(always)                  Algorithm 1 step 1, Sec. III "Grad++ ... computes the gradients of the class score",
                          contributions "we assign weights to each pixel ... based on its gradient": one forward
                          and backward pass gives A, G = dY^c/dA, the Grad-CAM++ pixel weights a^k_ij and the
                          channel weights w_k = sum_ij a^k_ij ReLU(G^k_ij) (Chattopadhyay et al., Eq. 19).
``mask_source``           ``"activation"``: M^k = A^k, as Eq. 13 and step 5 write (H = s(A)) and as Score-CAM
  ``"activation"``        does. ``"gradient"``: step 2 "obtain the corresponding gradient activation A_l" and
  ``"gradient"``          step 9 "perturb ... with the gradient activation maps": M^k = a^k ⊙ ReLU(G^k) ⊙ A^k,
                          the per-pixel terms whose sum is Grad-CAM++'s w_k A^k.
``max_channels``          Fig. 1: "a forward-passing score on the target class for each weight ... repeated k
  ``64``                  times ... where k is the number of weights", and the claimed speed-up: only the
  int or ``"all"``        channels with the largest w_k > 0 are scored, the rest get weight 0. ``"all"`` scores
                          every channel whose map is not constant (the slowest reading). ``None`` means not
                          given: the default, 64.
``perturb``               Steps 8-9 and Sec. IV "we downsize the original input image corresponding to the size
  ``"input"``             of activation weights": ``"feature"`` downsizes X to (h, w), multiplies it by
  ``"feature"``           H^k = minmax(M^k) and resizes the product back to (H, W) before scoring. ``"input"``
                          scores X ⊙ minmax(Up(M^k)) as Score-CAM (Eq. 9): the mask is normalised after the
                          bilinear upsampling, so it spans exactly [0, 1] at the input resolution.
``baseline``              Eq. 12 and step 4: C = f(X ⊙ H^k) − f(X_b). ``"zeros"``: X_b is the all-zero
  ``"zeros"``             normalised input (the data-set mean image). ``None`` drops the subtraction, as the
  ``None``                Score-CAM authors' code does.
``combine``               Eq. 14-15: L = ReLU(sum_k α_k A^k) with α_k = C(...): ``"score"``. Fig. 1 caption:
  ``"score"``             "a linear combination of class scores and gradient weights yields the final outcome":
  ``"score_x_grad"``      ``"score_x_grad"``, L = ReLU(sum_k α_k w_k A^k).
========================  ==================================================================================

f(·) is the softmax probability of the class (Score-CAM's choice; the paper does not say otherwise).

Why these defaults: the ablation chose them (``notebooks/06_ablation.ipynb``, :mod:`gradscorecam.ablation`;
the measured numbers, with the model, images and command that gave them, are in docs/ablation.md,
not here, where they would go stale). In short: ``perturb="input"`` wins by far at the usual layer;
``mask_source="activation"`` gives the same masks as ``"gradient"`` there (see below) and better ones at an
inner layer; ``baseline`` and ``combine`` change little (within the confidence intervals), so Eq. 12's
baseline and Eq. 14's scores-only weights are kept; a budget of 64 channels explains about as well as every
channel for a fraction of the masked passes at the model's usual layer, while smaller budgets lose, and at an
inner layer 64 can be too few. The paper's literal step 9 stays available as ``mask_source="gradient"``, and
``max_channels="all"`` scores every channel. With ``mask_source="activation", perturb="input",
baseline=None, combine="score", max_channels="all"`` the method is exactly Score-CAM (tested). At a layer
followed directly by global average pooling and a linear layer (ResNet ``layer4``, MobileNetV2 ``head``),
G^k is constant over space, so the two mask sources give the same masks wherever w_k > 0; the readings
differ at layers followed by more structure.

The Grad-CAM++ phase uses Eq. 19 as :class:`~.gradient.GradCAMPlusPlus` does, including its warning at
layers with signed activations (BatchNorm or convolution outputs), where w_k can be arbitrarily large or
negative and so pick the wrong channels.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..torchutils import check_choice, class_scores
from .base import Captured
from .gradient import gradcampp_pixel_weights, warn_unbounded_pixel_weights
from .layers import LayerSpec
from .score_based import ScoreBasedCAM
from .scoring import (
    PERTURB_SPACES,
    Budget,
    PerturbSpace,
    budget_mask,
    non_constant_channels,
    resolve_budget,
)

MaskSource = Literal["gradient", "activation"]
Baseline = Literal["zeros"] | None
Combine = Literal["score", "score_x_grad"]


class GradPlusPlusScoreCAM(ScoreBasedCAM):
    r"""Grad++ScoreCAM (Soomro, Niaz, Choi, IEEE Access 2024); the reading is documented in the module docstring.

    .. math::
        a^k_{ij} = \frac{(G^k_{ij})^2}{2 (G^k_{ij})^2 + \sum_{ab} A^k_{ab} (G^k_{ij})^3}, \quad
        w_k = \sum_{ij} a^k_{ij} \mathrm{ReLU}(G^k_{ij}), \quad
        M^k = A^k \ \ (\text{or } a^k \odot \mathrm{ReLU}(G^k) \odot A^k)

        \alpha_k = \mathrm{softmax}(f(X \odot H^k))_c - \mathrm{softmax}(f(X_b))_c, \qquad
        L = \mathrm{ReLU}\Big(\sum_k \alpha_k A^k\Big) \ \ (\text{or } \textstyle\sum_k \alpha_k w_k A^k)

    with H^k = minmax(Up(M^k)) (``perturb="input"``) and α_k = 0 for channels not scored: by default only
    the 64 channels with the largest w_k > 0 are scored, so the Grad-CAM++ phase picks what Score-CAM scores.

    Args:
        mask_source: ``"activation"`` (M^k = A^k, default) or ``"gradient"`` (M^k = a^k ⊙ ReLU(G^k) ⊙ A^k).
        perturb: ``"input"`` or ``"feature"`` (the paper's literal steps 8-9), see the module docstring.
        baseline: ``"zeros"`` subtracts the score of the all-zero input; ``None`` does not.
        combine: ``"score"`` (α_k) or ``"score_x_grad"`` (α_k w_k) as channel weights.
        max_channels: score only the channels with the largest w_k > 0, at most this many per image
            (default 64, chosen by the ablation); ``"all"`` scores every non-constant channel; ``None`` means
            not given, i.e. 64. The masked passes are nearly all of the time, so the time falls about in
            proportion to the channels scored (measured speed-ups: docs/speed.md).
        eps: added to the a^k_ij denominator, as in :class:`GradCAMPlusPlus`.
        batch_size, progress, channels_last, fuse_batchnorm, autocast, cudnn_benchmark: see
            :class:`~.score_based.ScoreBasedCAM` (chunking and the speed options of the masked passes).

    ``details``: ``gradients``, ``pixel_weights``, ``masks`` M^k (B, K, h, w); ``grad_weights`` w_k,
    ``channel_scores`` (softmax scores of the masked inputs), ``scores`` α_k, ``scored`` (bool), all (B, K);
    and ``baseline_score`` (B,) (zeros when ``baseline=None``).
    """

    #: the budget ``max_channels=None`` (not given, the signature's default) stands for: the one place it is set
    default_max_channels: Budget = 64

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        mask_source: MaskSource = "activation",
        perturb: PerturbSpace = "input",
        baseline: Baseline = "zeros",
        combine: Combine = "score",
        max_channels: Budget | None = None,
        eps: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        check_choice("mask_source", mask_source, ("gradient", "activation"))
        check_choice("perturb", perturb, PERTURB_SPACES)
        check_choice("baseline", baseline, ("zeros", None))
        check_choice("combine", combine, ("score", "score_x_grad"))
        self.mask_source = mask_source
        self.perturb = perturb
        self.baseline = baseline
        self.combine = combine
        self.max_channels: Budget = resolve_budget(max_channels, self.default_max_channels)
        self.eps = eps

    def options(self) -> dict[str, Any]:
        """The reading (``mask_source``, ``perturb``, ``baseline``, ``combine``), the budget, ``eps`` and the
        options of :class:`~.score_based.ScoreBasedCAM`."""
        return {
            **super().options(),
            "mask_source": self.mask_source,
            "perturb": self.perturb,
            "baseline": self.baseline,
            "combine": self.combine,
            "max_channels": self.max_channels,
            "eps": self.eps,
        }

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        activations, grads = captured.activations.float(), captured.gradients
        assert grads is not None
        grads = grads.float()
        positive_grads = torch.relu(grads)
        alpha = gradcampp_pixel_weights(activations, grads**2, grads**3, self.eps)
        warn_unbounded_pixel_weights(
            activations, grads**2, grads**3, grads > 0, self.target_layer_name, "Grad++ScoreCAM"
        )
        grad_weights = (alpha * positive_grads).sum(dim=(-2, -1))

        maps = alpha * positive_grads * activations if self.mask_source == "gradient" else activations
        selected = non_constant_channels(maps) & budget_mask(grad_weights, self.max_channels)

        baseline_score = torch.zeros(len(activations), device=activations.device)
        with self._scoring_forward(captured.images.device) as forward:
            channel_scores = self._score_channels(forward, captured, maps, selected, perturb=self.perturb)
            if (
                self.baseline == "zeros"
            ):  # scored by the same forward as the masked inputs, so α_k compares like with like
                zero_logits = forward(torch.zeros_like(captured.images[:1]))
                baseline_score = class_scores(zero_logits.expand(len(activations), -1), captured.targets, "probability")
        scores = torch.where(selected, channel_scores - baseline_score.unsqueeze(1), torch.zeros_like(channel_scores))
        weights = scores if self.combine == "score" else scores * grad_weights
        return weights, {
            "gradients": grads,
            "pixel_weights": alpha,
            "masks": maps,
            "grad_weights": grad_weights,
            "channel_scores": channel_scores,
            "scores": scores,
            "scored": selected,
            "baseline_score": baseline_score,
        }
