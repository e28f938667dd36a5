"""Score-CAM (Wang et al., CVPR-W 2020): channels weighted by the score of the input they mask."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .base import BaseCAM, Captured
from .layers import LayerSpec
from .scoring import Progress, check_choice, non_constant_channels, score_masked_inputs, top_channels

ScoreCAMVariant = Literal["authors", "pytorch-grad-cam"]


class ScoreCAM(BaseCAM):
    r"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for CNNs", CVPR-W 2020).

    As in the authors' code (github.com/haofanwang/Score-CAM):

    .. math::
        H^k = \mathrm{minmax}(\mathrm{Up}(A^k)), \qquad s_k = \mathrm{softmax}(f(X \odot H^k))_c, \qquad
        L = \mathrm{ReLU}\Big(\sum_k s_k A^k\Big)

    with Up bilinear (align_corners=False) to the input size and X the normalised input. Channels whose
    map is constant are skipped (s_k = 0), as the authors' code does. The baseline term of the paper's
    Eq. 7 is not subtracted, again as in the authors' code.

    Args:
        batch_size: masked inputs per forward pass. Memory is bounded by it, not by the channel count K.
        variant: ``"authors"`` (default, above) or ``"pytorch-grad-cam"``, which reproduces PyPI
            ``grad-cam``'s ScoreCAM exactly for comparison: Up with align_corners=True, masks
            ``(U - min) / (max - min + 1e-8)``, every channel scored (a constant one masks everything),
            and weights ``softmax_k(Y^c(X ⊙ H^k))``, a softmax over channels of the masked *logits*.
        max_channels: a speed knob for quick checks, not part of Score-CAM: score only this many channels per
            image, those with the largest positive mean activation; the others get weight 0. ``None``
            (default) scores every non-constant channel, as the method is defined. Authors' variant only.
        progress: True for a tqdm bar over the masked passes, or a callable ``(done, total)``.

    ``details``: ``channel_scores`` (B, K) the raw scores s_k (logits in the pytorch-grad-cam variant) and
    ``scored`` (B, K) bool, which channels were scored.
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        batch_size: int = 32,
        variant: ScoreCAMVariant = "authors",
        max_channels: int | None = None,
        progress: Progress = False,
        **kwargs: object,
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        check_choice("variant", variant, ("authors", "pytorch-grad-cam"))
        if max_channels is not None and (not isinstance(max_channels, int) or max_channels < 1):
            raise ValueError(f"max_channels must be None or a positive int, got {max_channels!r}")
        if max_channels is not None and variant != "authors":
            raise ValueError("max_channels applies to the authors' variant only; pytorch-grad-cam scores every channel")
        self.max_channels = max_channels
        self.batch_size = batch_size
        self.variant = variant
        self.progress = progress

    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        activations = captured.activations
        if self.variant == "authors":
            selected = non_constant_channels(activations)
            if self.max_channels is not None:
                selected &= top_channels(activations.mean(dim=(-2, -1)), self.max_channels)
            options = dict(score="probability", align_corners=False, norm_eps=0.0)
        else:
            selected = torch.ones(activations.shape[:2], dtype=torch.bool, device=activations.device)
            options = dict(score="logit", align_corners=True, norm_eps=1e-8)
        scores = score_masked_inputs(
            self.model,
            captured.images,
            activations,
            captured.targets,
            selected,
            batch_size=self.batch_size,
            progress=self.progress,
            **options,  # type: ignore[arg-type]
        )
        weights = scores if self.variant == "authors" else torch.softmax(scores, dim=1)
        return weights, {"channel_scores": scores, "scored": selected}
