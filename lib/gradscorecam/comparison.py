"""Run several methods on the same images: the computation behind the paper's Figures 2–5."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import UnsupportedModelError
from .explainers import METHODS, make_explainer
from .explainers.base import resolve_targets
from .explainers.layers import LayerSpec
from .torchutils import model_state_guard, synchronize


@dataclass
class MethodComparison:
    """Maps of several methods for the same images and classes, all on the CPU.

    Attributes:
        targets: (B,) class explained per image (the top prediction unless given).
        probabilities: (B,) the model's softmax probability of that class on the clean image.
        maps: method -> (B, H, W) saliency in [0, 1], or the reason why the method has no map for this model.
        seconds: method -> seconds per image (wall time of the batch divided by B).
    """

    targets: Tensor
    probabilities: Tensor
    maps: dict[str, Tensor | str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def compare_methods(
    model: nn.Module,
    target_layer: LayerSpec,
    images: Tensor,
    targets: int | Sequence[int] | Tensor | None = None,
    methods: Sequence[str] = tuple(METHODS),
    **explainer_options: Any,
) -> MethodComparison:
    """Explain ``images`` with each of ``methods`` (display names of :data:`METHODS`).

    ``explainer_options`` go to :func:`~gradscorecam.explainers.make_explainer` (batch_size, max_channels,
    smooth_samples, seed, overrides). A method that is not defined for the model (CAM without a
    global-average-pooling head) gets its reason instead of a map; every other error propagates.
    """
    with model_state_guard(model), torch.no_grad():
        logits = model(images)
    resolved = resolve_targets(targets, logits, len(images), logits.shape[1])
    probabilities = torch.softmax(logits.float(), dim=1).gather(1, resolved.view(-1, 1)).squeeze(1)
    comparison = MethodComparison(resolved.cpu(), probabilities.cpu())
    for method in methods:
        explainer = make_explainer(method, model, target_layer, **explainer_options)
        start = _synchronized_clock(images.device)
        try:
            saliency = explainer(images, resolved)
        except UnsupportedModelError as error:
            comparison.maps[method] = _short_reason(method, error)
            continue
        comparison.seconds[method] = (_synchronized_clock(images.device) - start) / len(images)
        comparison.maps[method] = saliency.cpu()
    return comparison


def _short_reason(method: str, error: Exception) -> str:
    text = str(error)
    if "global average" in text or "no nn.Linear" in text:
        return f"{method} is not defined for this model:\nno global-average-pooling head\n(see Grad-CAM)"
    return f"{method} is not defined for this model"


def _synchronized_clock(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


def row_titles(comparison: MethodComparison, categories: Sequence[str]) -> list[str]:
    """ "class (p = 0.83)" for each image, as the figures title their rows."""
    return [
        f"{categories[int(t)]}\n(p = {float(p):.2f})"
        for t, p in zip(comparison.targets, comparison.probabilities, strict=True)
    ]
