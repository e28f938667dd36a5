"""The score-based phase shared by Score-CAM and Grad++ScoreCAM: mask the input, score each masked copy.

For every selected (image, channel) pair the map M^k becomes a mask H^k in [0, 1], the input is
multiplied by it and the model scores the result for the image's class. Pairs stream through the model in
chunks of ``batch_size``: masks are upsampled per chunk and the masked inputs are written into one reused
buffer, so memory does not grow with the number of channels K.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Final, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..torchutils import ScoreType, check_choice, class_scores
from .postprocess import minmax_normalize, upsample

PerturbSpace = Literal["input", "feature"]
MaskNorm = Literal["upsampled", "feature"]
Progress = bool | Callable[[int, int], None]

SCORE_TYPES = ("probability", "logit")
PERTURB_SPACES = ("input", "feature")
MASK_NORMS = ("upsampled", "feature")


def non_constant_channels(maps: Tensor) -> Tensor:
    """(B, K) bool: channels whose (h, w) map is not constant. A constant map masks nothing in particular."""
    flat = maps.flatten(-2)
    return flat.amax(dim=-1) > flat.amin(dim=-1)


#: Every channel (``max_channels="all"``); distinct from None, which means "not given: the class default".
ALL_CHANNELS: Final = "all"
Budget = int | Literal["all"]


def check_budget(max_channels: object) -> None:
    """Raise ValueError unless ``max_channels`` is ``"all"`` (every channel), None (not given) or a positive int."""
    if max_channels is None or (isinstance(max_channels, str) and max_channels == ALL_CHANNELS):
        return
    if isinstance(max_channels, Integral) and not isinstance(max_channels, bool) and int(max_channels) >= 1:
        return
    raise ValueError(
        f'max_channels must be a positive int, "all" (every channel) or None (the method\'s default), '
        f"got {max_channels!r}"
    )


def resolve_budget(max_channels: Budget | None, default: Budget) -> Budget:
    """The budget an explainer uses: ``max_channels`` checked (a NumPy integer becomes an int), or ``default``
    when it is None (not given)."""
    check_budget(max_channels)
    if max_channels is None:
        return default
    return max_channels if max_channels == ALL_CHANNELS else int(max_channels)


def budget_mask(values: Tensor, budget: Budget) -> Tensor:
    """(B, K) bool: every channel for ``"all"``, else :func:`top_channels` of ``values``."""
    if budget == ALL_CHANNELS:
        return torch.ones_like(values, dtype=torch.bool)
    return top_channels(values, int(budget))


def top_channels(values: Tensor, budget: int) -> Tensor:
    """(B, K) bool: per image the ``budget`` channels with the largest positive ``values``."""
    k = min(budget, values.shape[1])
    chosen = torch.zeros_like(values, dtype=torch.bool).scatter_(1, values.topk(k, dim=1).indices, True)
    return chosen & (values > 0)


def score_masked_inputs(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    maps: Tensor,
    targets: Tensor,
    selected: Tensor,
    *,
    batch_size: int = 32,
    score: ScoreType = "probability",
    perturb: PerturbSpace = "input",
    align_corners: bool = False,
    norm_eps: float = 0.0,
    mask_norm: MaskNorm = "upsampled",
    progress: Progress = False,
) -> Tensor:
    """Score ``f(X_b ⊙ H^k)_c`` for every selected (b, k); returns (B, K) float32 with 0 where not selected.

    Args:
        model: the model, or the :class:`~.speed.ScoringForward` of :func:`~.speed.fast_forward`; the
            masked input buffer is built in its ``memory_format`` (NCHW for a plain model).
        images: (B, C, H, W) normalised input X.
        maps: (B, K, h, w) maps M^k the masks are made from.
        targets: (B,) class of each image.
        selected: (B, K) bool, which pairs to score.
        score: ``"probability"`` (softmax of the logits, Score-CAM) or ``"logit"``.
        perturb: ``"input"``: H^k = minmax(Up(M^k)) at the input resolution, score X ⊙ H^k (Score-CAM,
            Eq. 9 of the Grad++ScoreCAM paper). ``"feature"``: H^k = minmax(M^k) at the feature resolution,
            X is downsized to (h, w) (bilinear, antialiased), multiplied by H^k and resized back to (H, W)
            (bilinear) before scoring (Algorithm 1, steps 8-9 of the Grad++ScoreCAM paper).
        align_corners: for the mask upsampling (pytorch-grad-cam uses True).
        norm_eps: added to max - min in the mask normalisation (pytorch-grad-cam and torchcam use 1e-8).
        mask_norm: with ``perturb="input"``, ``"upsampled"`` normalises the upsampled mask,
            H^k = minmax(Up(M^k)) (Score-CAM authors, pytorch-grad-cam); ``"feature"`` normalises before
            upsampling, H^k = Up(minmax(M^k)) (torchcam 0.5). Bilinear upsampling stays within [0, 1] but
            need not reach 0 and 1, so the two differ slightly.
        progress: True for a tqdm bar, or a callable ``(done, total)`` called after each chunk.

    A ``model`` with ``pad_chunks`` true (see :class:`~.speed.ScoringForward`) gets every chunk at the full
    chunk size, a short last one padded with an earlier chunk's inputs whose scores are dropped.

    Memory: one (batch_size, C, H, W) buffer holds each chunk's masked inputs and masks are upsampled per
    chunk, so the peak does not grow with K (tests/test_speed.py checks the buffer is reused).
    """
    check_choice("score", score, SCORE_TYPES)
    check_choice("perturb", perturb, PERTURB_SPACES)
    check_choice("mask_norm", mask_norm, MASK_NORMS)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    size = (images.shape[-2], images.shape[-1])
    pad_chunks = bool(getattr(model, "pad_chunks", False))
    out = torch.zeros(selected.shape, dtype=torch.float32, device=images.device)
    pairs = selected.nonzero()
    total = len(pairs)
    report = _progress_reporter(progress, total)
    with torch.inference_mode():
        if perturb == "feature":
            small = F.interpolate(images, size=maps.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        else:
            memory_format = getattr(model, "memory_format", torch.contiguous_format)
            shape = (min(batch_size, max(total, 1)), *images.shape[1:])
            buffer = torch.empty(shape, dtype=images.dtype, device=images.device, memory_format=memory_format)
        for start in range(0, total, batch_size):
            b, k = pairs[start : start + batch_size].unbind(1)
            if perturb == "input":
                chunk_maps = maps[b, k].float()
                if mask_norm == "upsampled":
                    masks = _minmax_normalize_(upsample(chunk_maps, size, align_corners), norm_eps)
                else:
                    masks = upsample(minmax_normalize(chunk_maps, norm_eps), size, align_corners)
                masked = torch.index_select(images, 0, b, out=buffer[: len(b)])
                masked.mul_(masks.unsqueeze(1).to(masked.dtype))
            else:
                masks = minmax_normalize(maps[b, k].float(), norm_eps)
                masked = upsample(small[b] * masks.unsqueeze(1).to(small.dtype), size)
            if perturb == "input" and pad_chunks and len(b) < len(buffer):
                # One input shape for every chunk: the rows past len(b) hold an earlier chunk's inputs, and
                # are scored and dropped (samples are independent in an eval-mode network).
                logits = model(buffer)[: len(b)]
            else:
                logits = model(masked)
            out[b, k] = class_scores(logits, targets[b], score)
            report(min(start + batch_size, total))
    report(None)
    return out


def _minmax_normalize_(maps: Tensor, eps: float) -> Tensor:
    """In-place :func:`~.postprocess.minmax_normalize` of freshly upsampled masks, with the same result.

    The masks are the chunk's largest temporaries (batch_size x H x W); normalising them in place saves
    three of them per chunk. A constant map has ``maps - lo == 0``, divided by 1 it stays 0.
    """
    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)
    lo, span = lo[..., None, None], (hi - lo + eps)[..., None, None]
    denominator = torch.where(span > 0, span.clamp_min(torch.finfo(maps.dtype).tiny), torch.ones_like(span))
    return maps.sub_(lo).div_(denominator)


def _progress_reporter(progress: Progress, total: int) -> Callable[[int | None], None]:
    """A function taking the number of pairs done (None: finished)."""
    if callable(progress):
        return lambda done: progress(total if done is None else done, total)
    if not progress:
        return lambda done: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="pass", desc="masked forward passes", leave=False)

    def report(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return report
