"""How the masked forward passes of the score-based methods run fast, without changing the user's model.

Score-CAM costs one forward pass per channel (512 for ResNet-18's ``layer4``, 2048 for ResNet-50's), so
the masked passes are nearly all of its time: the engine in :mod:`.scoring` already adds little around
them, and what is left to gain is in the forward pass itself. :class:`ScoringSpeed` holds the options,
:func:`fast_forward` applies them for one call. How much each option pays depends on the hardware and the
network; the measured factors, with the machine, model and command that gave them
(``benchmarks/forward_options.py``, ``benchmarks/score_speed.py``), are in docs/speed.md,
not here, where they would go stale. What each option does:

* ``channels_last`` (default on): the masked inputs are built in channels-last (NHWC) memory format.
  oneDNN (CPU) and cuDNN then run NHWC kernels through the whole network, because a convolution's output
  follows its input's format, and skip the reorders NCHW costs at every convolution.
  Only the inputs change format; the user's parameters are never converted.
* ``fuse_batchnorm`` (default on): an eval-mode BatchNorm after a convolution is an affine map, so it is
  folded into the convolution's weights (``torch.fx.experimental.optimization.fuse``) in a private copy of
  the model used for the masked passes only: one memory-bound pass less per block, a smaller gain on top
  of channels-last. The copy is exact up to float rounding (tests: maps within 1e-5). It is made only when
  the model has a BatchNorm, has no hooks (a copy traced by ``torch.fx`` would not call all of them) and
  can be traced; otherwise the model itself runs the masked passes, with a warning when tracing failed.
  The copy is cached per model (one copy, freed with the model or by :func:`clear_fused_copies`) and
  rebuilt whenever any parameter or buffer of the model changes (its storage or its in-place version
  counter), so explainers made anew for every image or method share it (building it costs a fraction of
  a second).
* ``autocast`` (default off): run the masked passes under ``torch.autocast`` in ``torch.bfloat16`` or
  ``torch.float16``; scores are read in float32. Meant for GPUs with tensor cores; on a CPU without bf16
  instructions it is slower. The maps change within the tolerance the tests state, not exactly.
* ``cudnn_benchmark`` (default on, CUDA only): let cuDNN pick the fastest convolution algorithm for the
  chunk shape, which repeats K / batch_size times; a short last chunk runs padded to the full size, so
  one shape is tuned once rather than once per image. The global flag is restored after the call.

``torch.inference_mode``, the reused input buffer and skipping constant channels are always on: they are
exact and never slower. ``ScoringSpeed.plain()`` switches every option off (the reference path).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)
_AUTOCAST_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


@dataclass(frozen=True)
class ScoringSpeed:
    """Options of the masked forward passes; see the module docstring for what each buys and costs.

    ``autocast`` accepts ``torch.bfloat16``, ``torch.float16``, their names (``"bf16"``, ``"fp16"``,
    ``"bfloat16"``, ``"float16"``) or None.
    """

    channels_last: bool = True
    fuse_batchnorm: bool = True
    autocast: torch.dtype | str | None = None
    cudnn_benchmark: bool = True

    def __post_init__(self) -> None:
        for name in ("channels_last", "fuse_batchnorm", "cudnn_benchmark"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        dtype = _AUTOCAST_NAMES.get(self.autocast, self.autocast) if isinstance(self.autocast, str) else self.autocast
        if dtype is not None and dtype not in AUTOCAST_DTYPES:
            raise ValueError(
                f"autocast={self.autocast!r} is not one of None, torch.bfloat16, torch.float16, 'bf16', 'fp16'"
            )
        object.__setattr__(self, "autocast", dtype)

    @classmethod
    def plain(cls) -> ScoringSpeed:
        """Every option off: the model as given, NCHW inputs, float32, cuDNN's default algorithm choice."""
        return cls(channels_last=False, fuse_batchnorm=False, autocast=None, cudnn_benchmark=False)


class ScoringForward:
    """``forward(x) -> logits`` for masked inputs: the prepared model, under inference mode and autocast.

    ``memory_format`` is the format the engine should build its input buffer in, so that no copy is
    needed before the model sees it. ``pad_chunks`` (on CUDA with cuDNN autotuning) asks the engine to run a
    short last chunk at the full chunk size: cuDNN autotunes once per input shape, and a last chunk whose
    size varies from image to image would otherwise trigger a new autotuning run (seconds) per image.
    """

    def __init__(self, model: nn.Module, device: torch.device, speed: ScoringSpeed) -> None:
        self.model = model
        self.memory_format = torch.channels_last if speed.channels_last else torch.contiguous_format
        self._autocast = speed.autocast
        self._device_type = device.type
        self.pad_chunks = speed.cudnn_benchmark and device.type == "cuda"

    def __call__(self, inputs: Tensor) -> Tensor:
        if inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=self.memory_format)  # a no-op for the engine's own buffer
        autocast = (
            torch.autocast(self._device_type, dtype=self._autocast)  # type: ignore[arg-type]
            if self._autocast is not None
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model(inputs)


class FusedModelCache:
    """Keeps one BatchNorm-folded copy of a model, rebuilt when the model's tensors change.

    The key is every parameter's and buffer's identity, storage address and in-place version counter, so
    an optimiser step, ``load_state_dict``, ``model.to(...)`` or a hand edit under ``torch.no_grad()`` all
    invalidate the copy.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._fused: nn.Module | None = None

    def get(self, model: nn.Module, channels_last: bool) -> nn.Module | None:
        """The folded copy (its weights in channels-last format if asked), or None (see :func:`fuse_batchnorm`)."""
        key = (_state_key(model), channels_last)
        if key != self._key:
            self._fused, self._key = None, None  # drop the old copy before building a new one (memory)
            fused = fuse_batchnorm(model)
            if fused is not None and channels_last:
                fused = fused.to(memory_format=torch.channels_last)  # the copy's own weights: NHWC kernels, no reorder
            self._fused, self._key = fused, key
        return self._fused


_SHARED: weakref.WeakKeyDictionary[nn.Module, FusedModelCache] = weakref.WeakKeyDictionary()


def shared_cache(model: nn.Module) -> FusedModelCache:
    """The fused-copy cache of ``model``, shared by every explainer of it; it lives as long as the model."""
    cache = _SHARED.get(model)
    if cache is None:
        cache = _SHARED[model] = FusedModelCache()
    return cache


def clear_fused_copies() -> None:
    """Drop every cached BatchNorm-folded copy (memory: one copy of each model explained so far)."""
    _SHARED.clear()


def _state_key(model: nn.Module) -> tuple[object, ...]:
    tensors = [*model.parameters(), *model.buffers()]
    return (id(model), tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in tensors))


def fuse_batchnorm(model: nn.Module) -> nn.Module | None:
    """A copy of the (eval-mode) model with every BatchNorm that follows a convolution folded into it.

    Returns None when there is nothing to fold, when the model has hooks (the traced copy would not call
    hooks of container modules), or when ``torch.fx`` cannot trace it (data-dependent control flow); the
    last case warns, because the user asked for a speed-up they do not get.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return None
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model, inplace=False)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the model as it is
        warnings.warn(
            f"fuse_batchnorm: torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc}); "
            "the masked passes use the model unfused. Pass fuse_batchnorm=False to silence this.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused.eval()


@contextmanager
def cudnn_benchmark(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = True`` inside the block on CUDA devices; the old value restored."""
    if not enabled or device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@contextmanager
def fast_forward(
    model: nn.Module, device: torch.device, speed: ScoringSpeed, cache: FusedModelCache | None = None
) -> Iterator[ScoringForward]:
    """The forward function of one explainer call's masked passes (call inside ``model_state_guard``).

    The user's model is never modified: folding happens on a copy, channels-last on the inputs only.
    """
    prepared = model
    if speed.fuse_batchnorm:
        prepared = (cache or shared_cache(model)).get(model, speed.channels_last) or model
    with cudnn_benchmark(speed.cudnn_benchmark, device):
        yield ScoringForward(prepared, device, speed)
