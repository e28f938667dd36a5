"""Score-CAM (Wang et al., CVPR-W 2020): channels weighted by the score of the input they mask."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..torchutils import check_choice
from .base import Captured
from .layers import LayerSpec
from .score_based import ScoreBasedCAM
from .scoring import ALL_CHANNELS, Budget, budget_mask, non_constant_channels, resolve_budget

ScoreCAMVariant = Literal["authors", "pytorch-grad-cam", "torchcam"]
VARIANTS = ("authors", "pytorch-grad-cam", "torchcam")

# How each variant builds and scores its masks (arguments of score_masked_inputs).
_VARIANT_OPTIONS: dict[str, dict[str, object]] = {
    "authors": dict(score="probability", align_corners=False, norm_eps=0.0, mask_norm="upsampled"),
    "pytorch-grad-cam": dict(score="logit", align_corners=True, norm_eps=1e-8, mask_norm="upsampled"),
    "torchcam": dict(score="logit", align_corners=False, norm_eps=1e-8, mask_norm="feature"),
}


class ScoreCAM(ScoreBasedCAM):
    r"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for CNNs", CVPR-W 2020).

    The masks and scores of the authors' code (github.com/haofanwang/Score-CAM):

    .. math::
        H^k = \mathrm{minmax}(\mathrm{Up}(A^k)), \qquad s_k = \mathrm{softmax}(f(X \odot H^k))_c, \qquad
        L = \mathrm{ReLU}\Big(\sum_k s_k A^k\Big)

    with Up bilinear (align_corners=False) to the input size and X the normalised input. Channels whose
    map is constant are skipped (s_k = 0), as the authors' code does. The baseline term of the paper's
    Eq. 7 is not subtracted, again as in the authors' code. One difference: the authors' code upsamples
    first and takes the ReLU of the upsampled sum, ReLU(Up(sum_k s_k A^k)); this library, like every
    method here, takes ReLU(sum_k s_k A^k) at the feature resolution and upsamples after. Bilinear
    upsampling commutes with the sum, not with the ReLU, so the two agree where the weighted sum is
    non-negative (always, after a ReLU layer: s_k >= 0 and A >= 0) and can differ at the edges of negative
    regions otherwise.

    Args:
        variant: ``"authors"`` (default, above); the two others reproduce the reference libraries'
            ScoreCAM for comparison (tests/test_reference_parity.py, benchmarks/):

            * ``"pytorch-grad-cam"`` (PyPI ``grad-cam`` 1.5): Up with align_corners=True, masks
              ``(U - min) / (max - min + 1e-8)``, every channel scored (a constant one masks everything),
              and weights ``softmax_k(Y^c(X ⊙ H^k))``, a softmax over channels of the masked *logits*.
            * ``"torchcam"`` (torchcam 0.5): as above, but each A^k is min-max normalised at the feature
              resolution *before* the upsampling (align_corners=False), ``Up((A - min) / (max - min + 1e-8))``.
              torchcam subtracts the clean image's logit before the softmax over channels; a softmax is
              invariant to that constant, so the weights are the same.
        max_channels: ``"all"`` (default) scores every non-constant channel, as the method is defined. An int is
            a speed knob for quick checks, not part of Score-CAM: score only this many channels per image,
            those with the largest positive mean activation; the others get weight 0 (authors' variant only).
            ``None`` means not given: the default, ``"all"``.
        batch_size, progress, channels_last, fuse_batchnorm, autocast, cudnn_benchmark: see
            :class:`~.score_based.ScoreBasedCAM` (chunking and the speed options of the masked passes).

    ``details``: ``channel_scores`` (B, K) the raw scores s_k (logits in the reference variants) and
    ``scored`` (B, K) bool, which channels were scored.
    """

    backward_on_clean_image = False
    #: the budget ``max_channels=None`` (not given, the signature's default) stands for: the one place it is set
    default_max_channels: Budget = ALL_CHANNELS

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        variant: ScoreCAMVariant = "authors",
        max_channels: Budget | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        check_choice("variant", variant, VARIANTS)
        self.max_channels: Budget = resolve_budget(max_channels, self.default_max_channels)
        if self.max_channels != ALL_CHANNELS and variant != "authors":
            raise ValueError(f"max_channels applies to the authors' variant only; {variant} scores every channel")
        self.variant = variant

    def options(self) -> dict[str, Any]:
        return {**super().options(), "variant": self.variant, "max_channels": self.max_channels}

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        activations = captured.activations
        if self.variant == "authors":
            most_active = budget_mask(activations.mean(dim=(-2, -1)), self.max_channels)
            selected = non_constant_channels(activations) & most_active
        else:  # the reference libraries score every channel
            selected = torch.ones(activations.shape[:2], dtype=torch.bool, device=activations.device)
        with self._scoring_forward(captured.images.device) as forward:
            scores = self._score_channels(forward, captured, activations, selected, **_VARIANT_OPTIONS[self.variant])
        weights = scores if self.variant == "authors" else torch.softmax(scores, dim=1)
        return weights, {"channel_scores": scores, "scored": selected}
