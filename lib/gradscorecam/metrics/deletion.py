r"""Deletion and Insertion (Petsiuk, Das, Saenko, "RISE", BMVC 2018, Sec. 4.1 "causal metrics").

Deletion removes pixels from the image in order of decreasing saliency and follows the model's score of
the explained class; a good explanation makes it fall fast (low area under the curve). Insertion starts
from a baseline image and puts pixels back in the same order; a good explanation makes the score rise fast
(high area). With P = H·W pixels ranked by saliency and ``steps`` = T, step j = 0..T has the first

.. math::
    n_j = \lfloor j P / T \rfloor

ranked pixels replaced (deletion: image pixels by the baseline; insertion: baseline pixels by the image),
and the area under the curve of scores s_0..s_T on x = j/T in [0, 1] is the trapezoidal rule

.. math::
    \mathrm{AUC} = \frac{1}{T}\Big(\sum_{j=0}^{T} s_j - \frac{s_0 + s_T}{2}\Big)

as in the RISE authors' code (github.com/eclique/RISE, ``evaluation.py``), which uses T = H·W/224 (224
steps at 224 x 224); T is a parameter here (default 100, one step per 1 % of the pixels).

Baselines, in the model's normalised input space like RISE: ``"zeros"`` (the data-set mean colour;
RISE's deletion substrate) and ``"blur"``, a Gaussian blur of the image with kernel 11 and σ = 5 (RISE's
insertion substrate; here with reflected instead of zero padding so that borders are not darkened).
Ties in the saliency are broken by pixel position (row-major), so curves are deterministic. All
(image, step) inputs stream through the model in chunks of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from ..torchutils import ScoreType, check_choice, class_scores, model_state_guard
from .inputs import check_saliency, metric_targets

Mode = Literal["deletion", "insertion"]
Baseline = Literal["zeros", "blur"]

BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


def perturbation_curves(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    *,
    mode: Mode = "deletion",
    steps: int = 100,
    baseline: Baseline | None = None,
    score: ScoreType = "probability",
    batch_size: int = 64,
) -> Tensor:
    """The (B, steps + 1) score curves of deletion or insertion (module docstring).

    ``baseline=None`` takes RISE's choice: ``"zeros"`` for deletion, ``"blur"`` for insertion.
    """
    check_choice("mode", mode, ("deletion", "insertion"))
    baseline = baseline or ("zeros" if mode == "deletion" else "blur")
    check_choice("baseline", baseline, ("zeros", "blur"))
    check_choice("score", score, ("probability", "logit"))
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    saliency = check_saliency(images, saliency)
    targets_t = metric_targets(model, images, targets, batch_size)
    batch, _, height, width = images.shape
    pixels = height * width
    # rank[b, p] = position of pixel p in image b's saliency order (0 = most salient)
    order = torch.sort(saliency.flatten(1), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=order.device).expand(batch, -1))
    rank = rank.view(batch, 1, height, width)
    counts = torch.tensor([j * pixels // steps for j in range(steps + 1)], device=images.device)
    substrate = (
        torch.zeros_like(images) if baseline == "zeros" else gaussian_blur(images, [BLUR_KERNEL] * 2, [BLUR_SIGMA] * 2)
    )
    start_from, put_in = (images, substrate) if mode == "deletion" else (substrate, images)

    pairs = torch.cartesian_prod(torch.arange(batch), torch.arange(steps + 1)).to(images.device)
    curves = torch.empty(batch, steps + 1, dtype=torch.float64)
    with model_state_guard(model), torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            b, j = pairs[start : start + batch_size].unbind(1)
            changed = rank[b] < counts[j].view(-1, 1, 1, 1)
            inputs = torch.where(changed, put_in[b], start_from[b])
            values = class_scores(model(inputs), targets_t[b.cpu()].to(images.device), score)
            curves[b.cpu(), j.cpu()] = values.double().cpu()
    return curves


def curve_auc(curves: Tensor) -> Tensor:
    """Trapezoidal area under (B, T + 1) curves sampled at x = 0, 1/T, ..., 1; returns (B,)."""
    steps = curves.shape[1] - 1
    if steps < 1:
        raise ValueError("a curve needs at least two points")
    return (curves.sum(dim=1) - (curves[:, 0] + curves[:, -1]) / 2) / steps


def deletion_auc(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    *,
    steps: int = 100,
    baseline: Baseline = "zeros",
    score: ScoreType = "probability",
    batch_size: int = 64,
) -> Tensor:
    """Deletion AUC per image, (B,) float64 (lower is better)."""
    curves = perturbation_curves(
        model,
        images,
        saliency,
        targets,
        mode="deletion",
        steps=steps,
        baseline=baseline,
        score=score,
        batch_size=batch_size,
    )
    return curve_auc(curves)


def insertion_auc(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    *,
    steps: int = 100,
    baseline: Baseline = "blur",
    score: ScoreType = "probability",
    batch_size: int = 64,
) -> Tensor:
    """Insertion AUC per image, (B,) float64 (higher is better)."""
    curves = perturbation_curves(
        model,
        images,
        saliency,
        targets,
        mode="insertion",
        steps=steps,
        baseline=baseline,
        score=score,
        batch_size=batch_size,
    )
    return curve_auc(curves)
