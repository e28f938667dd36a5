"""Post-processing shared by every explainer: ReLU, bilinear upsampling, per-image min-max scaling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def minmax_normalize(maps: Tensor, eps: float = 0.0) -> Tensor:
    """Scale each map (over its last two dimensions) to [0, 1]: ``(x - min) / (max - min + eps)``.

    A constant map carries no spatial information and becomes all zeros (never NaN).
    """
    flat = maps.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values.unsqueeze(-1)
    hi = flat.max(dim=-1, keepdim=True).values.unsqueeze(-1)
    span = hi - lo + eps
    # where() keeps 0/0 out of the result; the division itself is harmless on those entries.
    return torch.where(span > 0, (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def upsample(maps: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``(..., h, w)`` maps to ``size`` (``align_corners=False`` unless asked)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=align_corners)
    return out.reshape(*lead, *size)


def finalize(maps: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Turn raw (B, h, w) linear combinations into saliency maps in [0, 1].

    ReLU at the feature resolution, bilinear upsampling to ``size`` (skipped when ``None``), then per-image
    min-max normalisation, as all six methods' papers do.
    """
    out = torch.relu(maps.float())
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = upsample(out, size)
    return minmax_normalize(out)
