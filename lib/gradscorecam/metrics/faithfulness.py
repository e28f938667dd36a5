r"""Average Drop and Average Increase: how well the explanation map alone keeps the model's confidence.

Following Grad-CAM++ (Chattopadhyay et al., WACV 2018, Sec. 5.1), Score-CAM (Wang et al., CVPR-W 2020,
Sec. 5.2) and Table 1 of Grad++ScoreCAM (Soomro et al., IEEE Access 2024, Sec. IV-A): for image i with
explained class c, Y_i is the model's score for c on the image X_i and O_i its score on the explanation map

.. math::
    E_i = X_i \odot S_i,

S_i the saliency map upsampled to the input, in [0, 1]. Then, averaging over **all** N images (an image
whose score rises counts as zero drop, not as missing):

.. math::
    \text{Average Drop} = \frac{1}{N}\sum_{i=1}^N \frac{\max(0,\ Y_i - O_i)}{Y_i} \times 100, \qquad
    \text{Average Increase} = \frac{1}{N}\sum_{i=1}^N \mathbb 1[Y_i < O_i] \times 100.

Lower drop and higher increase are better. Options of :func:`explanation_scores` (recorded with every result
by the runner):

* ``score="probability"`` (default): Y and O are softmax probabilities, as in the papers. ``"logit"``:
  raw logits. The two differ: softmax is unchanged when every logit moves by the same amount, so a mask that
  lowers all logits equally is a drop in logit but none in probability. A drop relative to a logit is only
  meaningful when Y > 0; :func:`drop_percent` gives NaN for Y <= 0.
* ``masking="normalized"`` (default): E = X ⊙ S with X the model's normalised input, as the reference
  implementations do (Grad-CAM++ and Score-CAM authors' code multiply the normalised tensor; a masked-out
  pixel becomes the data-set mean colour). ``"pixel"``: multiply the [0, 1] image and normalise afterwards,
  E = norm(unnorm(X) ⊙ S), so a masked-out pixel becomes black; it needs the normalisation ``mean``/``std``.
* ``top_percent=q``: keep only the q % most salient pixels of S (the others become 0, the kept ones keep
  their value), the Score-CAM authors' protocol with q = 50. Default ``None``: keep S as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..explainers.capture import model_state_guard
from ..explainers.checks import check_finite
from ..explainers.scoring import class_scores, check_choice

ScoreType = Literal["probability", "logit"]
Masking = Literal["normalized", "pixel"]
ArrayLike = Tensor | np.ndarray | Sequence[float]

SCORES = ("probability", "logit")
MASKINGS = ("normalized", "pixel")


def explanation_scores(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    targets: int | Sequence[int] | Tensor | None,
    score: ScoreType = "probability",
    masking: Masking = "normalized",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    top_percent: float | None = None,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """The scores Y (on the images) and O (on the explanation maps) of each image's explained class.

    Args:
        model: the classifier (run in eval mode without gradients; its modes are restored after).
        images: (B, C, H, W) inputs normalised for the model, X.
        saliency: (B, H, W) or (B, 1, H, W) maps in [0, 1] at the input resolution, S.
        targets: the explained class per image (an int, B ints) or None for each image's top class.
        score, masking, top_percent: see the module docstring.
        mean, std: the per-channel normalisation of ``images``; required for ``masking="pixel"``.
        batch_size: images per forward pass.

    Returns:
        ``(Y, O)``, two float64 CPU tensors of shape (B,).
    """
    check_choice("score", score, SCORES)
    check_choice("masking", masking, MASKINGS)
    saliency = _check_saliency(images, saliency)
    if top_percent is not None:
        saliency = keep_top_percent(saliency, top_percent)
    explanation = explanation_maps(images, saliency, masking, mean, std)
    targets_t = _targets(model, images, targets, batch_size)
    Y = model_scores(model, images, targets_t, score, batch_size)
    O = model_scores(model, explanation, targets_t, score, batch_size)
    return Y, O


def explanation_maps(
    images: Tensor,
    saliency: Tensor,
    masking: Masking = "normalized",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """E = X ⊙ S in the model's input space, for ``masking`` "normalized" or "pixel" (module docstring)."""
    check_choice("masking", masking, MASKINGS)
    mask = saliency.unsqueeze(1).to(images.dtype)
    if masking == "normalized":
        return images * mask
    if mean is None or std is None:
        raise ValueError('masking="pixel" needs the normalisation mean and std of the images (ModelSpec.mean/std)')
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return ((images * s + m) * mask - m) / s


def keep_top_percent(saliency: Tensor, percent: float) -> Tensor:
    """Zero all but the ``percent`` % most salient pixels of each map; kept pixels keep their values.

    Exactly ``ceil(percent / 100 * H * W)`` pixels are kept per map; ties are broken by position (row-major),
    so the result does not depend on the sort's internals.
    """
    if not 0 < percent <= 100:
        raise ValueError(f"top_percent must be in (0, 100], got {percent}")
    flat = saliency.flatten(1)
    keep = int(np.ceil(percent / 100 * flat.shape[1]))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :keep]
    kept = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
    return torch.where(kept, flat, torch.zeros_like(flat)).view_as(saliency)


def model_scores(model: nn.Module, images: Tensor, targets: Tensor, score: ScoreType, batch_size: int = 64) -> Tensor:
    """The model's score (softmax probability or logit) of ``targets`` on ``images``, (B,) float64 on the CPU."""
    out = []
    with model_state_guard(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size])
            out.append(class_scores(logits, targets[start : start + batch_size].to(logits.device), score).cpu())
    return torch.cat(out).double()


def drop_percent(Y: ArrayLike, O: ArrayLike) -> np.ndarray:
    """Per image ``max(0, Y - O) / Y * 100`` (NaN where Y <= 0, e.g. a negative logit: the ratio has no meaning)."""
    y, o = _as_arrays(Y, O)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.maximum(0.0, y - o) / y * 100.0
    return np.where(y > 0, drop, np.nan)


def increase_percent(Y: ArrayLike, O: ArrayLike) -> np.ndarray:
    """Per image ``1[Y < O] * 100``."""
    y, o = _as_arrays(Y, O)
    return (y < o).astype(np.float64) * 100.0


def average_drop(Y: ArrayLike, O: ArrayLike) -> float:
    r"""Average Drop in percent, :math:`\frac1N \sum_i \max(0, Y_i - O_i) / Y_i \times 100` over all N images.

    Raises ValueError if some Y_i <= 0 (possible with ``score="logit"``), where the ratio is undefined.
    """
    drop = drop_percent(Y, O)
    if np.isnan(drop).any():
        bad = int(np.flatnonzero(np.isnan(drop))[0])
        raise ValueError(
            f"Average Drop needs Y > 0, but Y[{bad}] = {float(_as_arrays(Y, O)[0][bad])}: a drop relative to a "
            'non-positive score is undefined (use score="probability", or drop_percent() to see which images).'
        )
    return float(drop.mean()) if len(drop) else float("nan")


def average_increase(Y: ArrayLike, O: ArrayLike) -> float:
    r"""Average Increase (Increase in Confidence) in percent, :math:`\frac1N \sum_i 1[Y_i < O_i] \times 100`."""
    increase = increase_percent(Y, O)
    return float(increase.mean()) if len(increase) else float("nan")


def _as_arrays(Y: ArrayLike, O: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = (Y.detach().cpu().double().numpy() if isinstance(Y, Tensor) else np.asarray(Y, dtype=np.float64)).ravel()
    o = (O.detach().cpu().double().numpy() if isinstance(O, Tensor) else np.asarray(O, dtype=np.float64)).ravel()
    if y.shape != o.shape:
        raise ValueError(f"Y and O must have the same length, got {y.shape[0]} and {o.shape[0]}")
    return y, o


def _check_saliency(images: Tensor, saliency: Tensor) -> Tensor:
    """The maps as (B, H, W) on the images' device; InputImageError for NaN or inf in either (every metric
    of this package goes through here, so no score is computed from a non-finite input)."""
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


def _targets(model: nn.Module, images: Tensor, targets: int | Sequence[int] | Tensor | None, batch_size: int) -> Tensor:
    if targets is None:
        with model_state_guard(model), torch.no_grad():
            return torch.cat([model(images[s : s + batch_size]).argmax(1).cpu() for s in range(0, len(images), batch_size)])
    if isinstance(targets, int):
        return torch.full((len(images),), targets, dtype=torch.long)
    resolved = torch.as_tensor(targets, dtype=torch.long).reshape(-1).cpu()
    if len(resolved) != len(images):
        raise ValueError(f"got {len(resolved)} targets for {len(images)} images")
    return resolved
