"""Running the explainers for the explorer: timing, progress and stopping, cost estimates, teaching data.

Everything here is free of widgets, so it can be tested and reused on its own. A computation returns a
:class:`MethodResult`: the map on the CPU, the seconds it took, and a :class:`TeachingView` with what a
student needs to see how the map was built (the best channels with their masks and scores for the
score-based methods, the channel weights for the gradient methods).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import GradScoreCAMError, InputImageError
from ..explainers import CAM, METHODS, BaseCAM, GradCAM, GradCAMPlusPlus, GradPlusPlusScoreCAM, SmoothGradCAMPlusPlus
from ..explainers.postprocess import minmax_normalize, upsample
from ..explainers.registry import describe_budget
from ..explainers.score_based import ScoreBasedCAM
from ..explainers.scoring import ALL_CHANNELS, Budget
from ..torchutils import model_state_guard, synchronize
from .sources import ModelLike

ProgressCallback = Callable[[int, int], None]
#: How each gradient or CAM method weighs its channels, for the teaching panel.
_WEIGHT_FORMULAS: tuple[tuple[type[BaseCAM], str], ...] = (
    (SmoothGradCAMPlusPlus, "Grad-CAM++ weights with the gradients averaged over noisy copies of the image"),
    (GradCAMPlusPlus, "w_k = Σ_ij a^k_ij ReLU(∂Y/∂A^k_ij), with Grad-CAM++'s pixel weights a^k_ij"),
    (GradCAM, "w_k = mean of ∂Y/∂A^k over the channel"),
    (CAM, "w_k = the final linear layer's weight for the class"),
)


class _Stopped(Exception):
    """Raised inside the progress callback when a stop was requested (the Stop button).

    Private: the explorer catches it and says "stopped". The explainers restore the model's state when an
    exception passes through them, so stopping this way leaves the model as it was.
    """


# ------------------------------------------------------------------------------------------ images, classes
def prepare_image(spec: ModelLike, picture: Image.Image) -> Tensor:
    """The model's input for ``picture``: the model's own transform, a batch dimension, the model's device."""
    picture = picture.convert("RGB") if picture.mode != "RGB" else picture
    tensor = spec.transform(picture)
    if not isinstance(tensor, Tensor) or tensor.dim() != 3:
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise InputImageError(f"the transform of {spec.name} returned {shape}, not a (C, H, W) tensor.")
    return tensor.unsqueeze(0).to(model_device(spec.model))


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def class_probabilities(model: nn.Module, images: Tensor) -> Tensor:
    """Softmax probabilities (num_classes,) of the first image, on the CPU; the model's mode is restored."""
    with model_state_guard(model), torch.no_grad():
        logits = model(images[:1])
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise InputImageError(
            f"the model returned {shape}; the explorer needs a classifier returning (B, num_classes) logits."
        )
    return torch.softmax(logits[0].float(), dim=0).cpu()


def top_classes(probabilities: Tensor, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` most probable classes as ``(index, probability)``, most probable first."""
    values, indices = probabilities.topk(min(k, len(probabilities)))
    return [(int(i), float(v)) for i, v in zip(indices, values, strict=True)]


def class_name(categories: Sequence[str], index: int) -> str:
    """The category name, or ``class <index>`` when the model has no name for it."""
    return str(categories[index]) if 0 <= index < len(categories) else f"class {index}"


def find_classes(categories: Sequence[str], query: str, limit: int = 20) -> list[int]:
    """Indices of categories whose name contains ``query`` (case-insensitive): exact matches, then prefixes, then others.

    A query that is a number finds that class index. Used by the explorer's class search box.
    """
    text = query.strip().lower()
    if not text:
        return []
    if text.isdigit() and int(text) < len(categories):
        return [int(text)]
    names = [str(c).lower() for c in categories]
    exact = [i for i, n in enumerate(names) if n == text]
    prefix = [i for i, n in enumerate(names) if n.startswith(text) and i not in exact]
    inside = [i for i, n in enumerate(names) if text in n and i not in exact and i not in prefix]
    return (exact + prefix + inside)[:limit]


# --------------------------------------------------------------------------------------- methods and their cost
def is_score_based(method: type[BaseCAM] | BaseCAM) -> TypeGuard[type[ScoreBasedCAM] | ScoreBasedCAM]:
    """Whether the method scores one masked input per channel (its cost grows with the channel count)."""
    return issubclass(method if isinstance(method, type) else type(method), ScoreBasedCAM)


#: Effective options that change how fast a map is made, not the map: left out of the cache key.
_SPEED_ONLY = frozenset({"batch_size"})


def method_tag(name: str, options: Mapping[str, Any]) -> str:
    """The method part of a cache key: its name and the effective options that change the map.

    ``options`` are the explainer's own :meth:`~gradscorecam.explainers.BaseCAM.options` (defaults included),
    so a new channel budget is a new key, and "not given" and the default it stands for are the same key.
    """
    shown = {key: value for key, value in options.items() if key not in _SPEED_ONLY}
    return f"{name} {json.dumps(shown, sort_keys=True, default=str)}"


def channel_budget(options: Mapping[str, Any]) -> Budget | None:
    """The channel budget in a score-based method's effective options (``"all"`` or an int), else None."""
    return options.get("max_channels")


#: What the explorer's "channels scored" box shows for None (not given: each method's own default).
DEFAULT_BUDGET_TEXT = "default"


def budget_text(budget: Budget | None) -> str:
    """The text of the "channels scored" box for a budget: ``"default"``, ``"all"`` or the number."""
    return DEFAULT_BUDGET_TEXT if budget is None else str(budget)


def parse_budget(text: str) -> Budget | None:
    """The budget typed in the "channels scored" box: ``"default"`` (or nothing) is None, each method's own
    default (Score-CAM every channel, Grad++ScoreCAM 64); ``"all"`` every channel; a number at most that many.

    Raises :class:`~gradscorecam.errors.GradScoreCAMError` for anything else (0 included), naming the choices.
    """
    value = str(text).strip().lower()
    if value in ("", DEFAULT_BUDGET_TEXT):
        return None
    if value == ALL_CHANNELS:
        return ALL_CHANNELS
    if value.isdigit() and int(value) >= 1:
        return int(value)
    defaults = ", ".join(
        f"{name} {describe_budget(cls.default_max_channels)}" for name, cls in METHODS.items() if is_score_based(cls)
    )
    raise GradScoreCAMError(
        f'channels scored: {text!r} is not a budget; type a number of at least 1, "all" (every channel), or '
        f'"default" (each method\'s own: {defaults}).'
    )


def channels_to_score(channels: int, budget: Budget) -> int:
    """How many masked passes a score-based method makes at a layer with ``channels`` channels (an upper bound)."""
    return channels if budget == ALL_CHANNELS else min(channels, int(budget))


def time_forward(model: nn.Module, images: Tensor, batch_size: int) -> float:
    """Seconds one forward pass of ``batch_size`` copies of the image takes (after one warm-up pass).

    Measured once per model and input size by the explorer, then used for every estimate.
    """
    batch = images[:1].expand(batch_size, *images.shape[1:]).contiguous()
    with model_state_guard(model), torch.inference_mode():
        model(batch[:1])
        synchronize(images.device)
        start = time.perf_counter()
        model(batch)
        synchronize(images.device)
        return time.perf_counter() - start


def estimate_seconds(
    method: type[BaseCAM] | BaseCAM, channels: int, options: Mapping[str, Any], seconds_per_pass: float, batch_size: int
) -> float:
    """Rough seconds a method will take: the masked passes of the score-based methods dominate.

    ``options`` are the explainer's effective options (:meth:`~gradscorecam.explainers.BaseCAM.options`).
    ``seconds_per_pass`` is :func:`time_forward` at ``batch_size``, so one image costs
    ``seconds_per_pass / batch_size``. Score-based: one masked image per channel to score
    (:func:`channels_to_score` of ``max_channels``), plus the clean forward and backward pass (about 3 images'
    worth). SmoothGrad-CAM++: a forward and backward pass per noisy copy (``n_samples``). Others: one forward
    and backward pass.
    """
    per_image = seconds_per_pass / batch_size
    cls = method if isinstance(method, type) else type(method)
    if is_score_based(cls):
        return (channels_to_score(channels, options["max_channels"]) + 3) * per_image
    if issubclass(cls, SmoothGradCAMPlusPlus):
        return 3 * per_image * int(options["n_samples"])
    return 3 * per_image


# ------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TeachingView:
    """How one map was built, for the teaching panel.

    Attributes:
        kind: ``"scores"`` (score-based: each channel's mask was scored by the network) or ``"weights"``
            (gradient or CAM weights).
        channels: the best channels, best first (highest score or weight).
        values: their score or weight.
        value_name: what the values are, for labels (e.g. ``"score"``, ``"α = score − baseline"``, ``"w"``).
        masks: (n, H, W) in [0, 1] on the CPU: for ``"scores"`` the mask H^k the input was multiplied by,
            for ``"weights"`` the channel's activation map, upsampled and min-max scaled.
        all_values: (K,) every channel's score or weight (0 for channels not scored).
        scored: (K,) bool, which channels were scored (score-based methods), else None.
        baseline: the baseline score subtracted (Grad++ScoreCAM with a baseline), else None.
        note: one sentence on how the map combines these values.
    """

    kind: Literal["scores", "weights"]
    channels: tuple[int, ...]
    values: tuple[float, ...]
    value_name: str
    masks: Tensor
    all_values: Tensor
    scored: Tensor | None
    baseline: float | None
    note: str


@dataclass(frozen=True)
class MethodResult:
    """A finished map with what the explorer shows about it.

    Attributes:
        saliency: (H, W) float32 in [0, 1] on the CPU, the explainer's output for the image and class.
        seconds: wall-clock seconds of the explainer call.
        channels_scored: masked passes made (score-based methods), else None.
        channels_total: channels of the target layer.
        options: the explainer's effective options, defaults included (what ran; e.g. ``max_channels``).
    """

    method: str
    saliency: Tensor
    seconds: float
    target: int
    channels_scored: int | None
    channels_total: int
    teaching: TeachingView | None
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """What ran, in a line: the seconds, and for a score-based method the channels scored and the budget,
        e.g. ``"1.23 s · 62 of 1280 channels scored (budget: at most 64 channels)"``."""
        text = f"{self.seconds:.2f} s"
        if self.channels_scored is not None:
            text += f" · {self.channels_scored} of {self.channels_total} channels scored"
            if (budget := channel_budget(self.options)) is not None:
                text += f" (budget: {describe_budget(budget)})"
        return text


def run_method(
    name: str,
    explainer: BaseCAM,
    images: Tensor,
    target: int,
    *,
    should_stop: Callable[[], bool] | None = None,
    teaching_channels: int = 6,
) -> MethodResult:
    """Explain class ``target`` of the first image with ``explainer`` and time it.

    ``explainer`` comes from the library's factory (:func:`~gradscorecam.explainers.make_explainer`); for a
    score-based method its ``progress`` should be :func:`stop_aware_progress`, so that a stop requested during
    the masked passes ends it. A stop (:class:`_Stopped`) or a KeyboardInterrupt propagates: the caller decides
    what to say, and nothing half-done is returned.
    """
    if should_stop is not None and should_stop():
        raise _Stopped
    image = images[:1]
    synchronize(image.device)
    start = time.perf_counter()
    explanation = explainer.explain(image, target)
    saliency = explanation.saliency((image.shape[-2], image.shape[-1]))[0]
    synchronize(image.device)
    seconds = time.perf_counter() - start
    scored = explanation.details.get("scored")
    return MethodResult(
        method=name,
        saliency=saliency.detach().float().cpu(),
        seconds=seconds,
        target=int(explanation.targets[0]),
        channels_scored=int(scored[0].sum()) if scored is not None else None,
        channels_total=int(explanation.activations.shape[1]),
        teaching=teaching_view(explainer, explanation, (image.shape[-2], image.shape[-1]), teaching_channels),
        options=explainer.options(),
    )


def stop_aware_progress(progress: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> ProgressCallback:
    """A score-based method's ``progress``: reports ``(done, total)`` to ``progress``, then raises
    :class:`_Stopped` if ``should_stop()`` says so (checked after each chunk of masked images)."""

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if should_stop is not None and should_stop() and done < total:
            raise _Stopped

    return report


def teaching_view(explainer: BaseCAM, explanation: Any, size: tuple[int, int], n: int) -> TeachingView:
    """The teaching data of one explanation (first image): best channels, their masks and values."""
    activations = explanation.activations[0].float()
    details = explanation.details
    if isinstance(explainer, ScoreBasedCAM) and "channel_scores" in details:
        scored = details["scored"][0].bool()
        if isinstance(explainer, GradPlusPlusScoreCAM):
            values = details["scores"][0].float()
            maps = details["masks"][0].float()
            source = "a ⊙ ReLU(∂Y/∂A) ⊙ A" if explainer.mask_source == "gradient" else "A"
            baseline = float(details["baseline_score"][0]) if explainer.baseline is not None else None
            value_name = "α = score − baseline" if baseline is not None else "α = score"
            weighting = "α_k · w_k" if explainer.combine == "score_x_grad" else "α_k"
            note = (
                f"Each mask is min-max(upsampled {source}) for one channel; the network scores the masked image "
                f"(class probability{', minus the score of a blank image' if baseline is not None else ''}). "
                f"The map is ReLU(Σ_k {weighting} A^k) over the {int(scored.sum())} scored channels."
            )
        else:
            values = details["channel_scores"][0].float()
            maps, value_name = activations, "score"
            baseline = None
            note = (
                "Each mask is one channel's activation map A^k, upsampled and scaled to [0, 1]; the network scores "
                f"the masked image (class probability s_k). The map is ReLU(Σ_k s_k A^k) over the {int(scored.sum())} "
                "scored channels."
            )
        ranked = torch.where(scored, values, torch.full_like(values, -math.inf))
        count = min(n, int(scored.sum()))
        top = ranked.topk(count).indices if count else torch.zeros(0, dtype=torch.long)
        masks = minmax_normalize(upsample(maps[top].float(), size)) if count else torch.zeros(0, *size)
        return TeachingView("scores", _ints(top), _floats(values[top]), value_name, masks.cpu(), values.cpu(),
                            scored.cpu(), baseline, note)  # fmt: skip
    weights = explanation.weights[0].float()
    top = weights.topk(min(n, len(weights))).indices
    masks = minmax_normalize(upsample(activations[top], size))
    formula = next(
        (text for cls, text in _WEIGHT_FORMULAS if isinstance(explainer, cls)), "w_k, the method's channel weight"
    )
    note = f"Channel weights: {formula}. The map is ReLU(Σ_k w_k A^k); shown are the channels with the largest w_k."
    return TeachingView("weights", _ints(top), _floats(weights[top]), "w", masks.cpu(), weights.cpu(), None, None, note)


def _ints(values: Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in values.tolist())


def _floats(values: Tensor) -> tuple[float, ...]:
    return tuple(float(v) for v in values.tolist())
