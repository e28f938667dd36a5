"""What every metric checks and resolves the same way: the saliency maps against the images, and the classes.

Shared by :mod:`.faithfulness` and :mod:`.deletion` (and any new metric taking ``(model, images, saliency,
targets)``), so that a map of the wrong size or a float class index gets the same error from each.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..explainers.checks import check_finite
from ..explainers.targets import Targets, check_class_range, class_indices
from ..torchutils import model_state_guard


def check_saliency(images: Tensor, saliency: Tensor) -> Tensor:
    """``saliency`` as (B, H, W) on the images' device; ValueError unless it matches the (B, C, H, W) images,
    InputImageError for NaN or inf in either (so no metric computes a score from a non-finite input)."""
    check_finite(images, "the images passed to the metric")
    check_finite(saliency, "the saliency maps passed to the metric")
    if saliency.dim() == 4 and saliency.shape[1] == 1:
        saliency = saliency[:, 0]
    if saliency.dim() != 3 or saliency.shape[0] != images.shape[0] or saliency.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"saliency must be (B, H, W) = ({images.shape[0]}, {images.shape[-2]}, {images.shape[-1]}) to match the "
            f"images, got {tuple(saliency.shape)}; call the explainer with upsample=True."
        )
    return saliency.to(images.device)


def metric_targets(model: nn.Module, images: Tensor, targets: Targets, batch_size: int) -> Tensor:
    """(B,) long CPU tensor of classes, resolved as the explainers do (:mod:`gradscorecam.explainers.targets`).

    ``None`` gives each image's top class. Given targets are checked for type and count, and against the
    model's class count, read off one forward pass of the first image, so that a float, a bool or an
    out-of-range class raises :class:`~gradscorecam.errors.ClassIndexError` rather than being truncated.
    """
    resolved = class_indices(targets, len(images))
    with model_state_guard(model), torch.no_grad():
        if resolved is None:
            return torch.cat(
                [model(images[s : s + batch_size]).argmax(1).cpu() for s in range(0, len(images), batch_size)]
            )
        num_classes = model(images[:1]).shape[1]
    check_class_range(resolved, num_classes)
    return resolved
