"""What Score-CAM and Grad++ScoreCAM share: chunking, progress and the speed options of the masked passes."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from .base import BaseCAM, Captured
from .layers import LayerSpec
from .scoring import Budget, Progress, score_masked_inputs
from .speed import ScoringForward, ScoringSpeed, fast_forward


class ScoreBasedCAM(BaseCAM):
    """Base of the methods that score masked copies of the input (one forward pass per scored channel).

    Args:
        batch_size: masked inputs per forward pass. Memory is bounded by it, not by the channel count K.
        progress: True for a tqdm bar over the masked passes, or a callable ``(done, total)``.
        channels_last: build the masked inputs in channels-last memory format (default True).
        fuse_batchnorm: run the masked passes on a cached copy of the model with BatchNorm folded into the
            convolutions (default True; exact up to float rounding; the user's model is not modified).
        autocast: None (default, float32), ``torch.bfloat16``/``"bf16"`` or ``torch.float16``/``"fp16"``:
            run the masked passes under ``torch.autocast`` (for GPUs; approximate, see tests/test_speed.py).
        cudnn_benchmark: on CUDA, let cuDNN autotune the chunk's convolutions (default True; flag restored).

    See :mod:`gradscorecam.explainers.speed` for why each option pays (the measured gains: docs/speed.md);
    every option off (``**ScoringSpeed.plain().__dict__``) is the reference path.
    """

    #: the budget ``max_channels=None`` (not given) stands for; each method sets its own
    default_max_channels: Budget

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        batch_size: int = 32,
        progress: Progress = False,
        channels_last: bool = True,
        fuse_batchnorm: bool = True,
        autocast: torch.dtype | str | None = None,
        cudnn_benchmark: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(model, target_layer, **kwargs)  # type: ignore[arg-type]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.progress = progress
        self.speed = ScoringSpeed(
            channels_last=channels_last,
            fuse_batchnorm=fuse_batchnorm,
            autocast=autocast,
            cudnn_benchmark=cudnn_benchmark,
        )

    def options(self) -> dict[str, Any]:
        """Adds ``batch_size`` and the speed options (``autocast`` by name, e.g. ``"bfloat16"``); ``progress`` is
        left out (it only displays)."""
        autocast = self.speed.autocast
        return {
            **super().options(),
            "batch_size": self.batch_size,
            "channels_last": self.speed.channels_last,
            "fuse_batchnorm": self.speed.fuse_batchnorm,
            "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
            "cudnn_benchmark": self.speed.cudnn_benchmark,
        }

    def _scoring_forward(self, device: torch.device) -> AbstractContextManager[ScoringForward]:
        """The forward function of this call's masked passes (inside the model state guard)."""
        return fast_forward(self.model, device, self.speed)

    def _score_channels(
        self, forward: ScoringForward, captured: Captured, maps: Tensor, selected: Tensor, **options: Any
    ) -> Tensor:
        """Scores of the selected masked inputs of this call, chunked by ``batch_size`` (see
        :func:`~.scoring.score_masked_inputs`, which ``options`` go to)."""
        return score_masked_inputs(
            forward, captured.images, maps, captured.targets, selected, batch_size=self.batch_size,
            progress=self.progress, **options,
        )  # fmt: skip
