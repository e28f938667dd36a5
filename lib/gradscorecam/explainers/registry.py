"""The six methods by display name, and THE factory that gives each its share of the common options.

Everything that builds explainers by method name (the runner, the figures, the explorer, the ablation)
goes through :func:`make_explainer`, so a common option means the same everywhere; the built explainer's
``options()`` says what it will run with, defaults included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .base import BaseCAM
from .cam import CAM
from .gradient import GradCAM, GradCAMPlusPlus
from .gradpp_scorecam import GradPlusPlusScoreCAM
from .layers import LayerSpec
from .scorecam import ScoreCAM
from .scoring import Budget, check_budget
from .smoothgrad import SmoothGradCAMPlusPlus

#: The methods of the paper's figures and Table 1, in its column order, by display name.
METHODS: dict[str, type[BaseCAM]] = {
    "CAM": CAM,
    "Grad-CAM": GradCAM,
    "Grad-CAM++": GradCAMPlusPlus,
    "Score-CAM": ScoreCAM,
    "SmoothGrad-CAM++": SmoothGradCAMPlusPlus,
    "Grad++ScoreCAM": GradPlusPlusScoreCAM,
}

# Which of the common options each method takes (the others do not apply to it).
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "Score-CAM": ("batch_size", "max_channels", "progress"),
    "SmoothGrad-CAM++": ("batch_size", "smooth_samples", "seed"),
    "Grad++ScoreCAM": ("batch_size", "max_channels", "progress"),
}
_RENAMED = {"smooth_samples": "n_samples"}


def method_options(
    methods: Sequence[str] = tuple(METHODS),
    *,
    batch_size: int | None = None,
    max_channels: Budget | None = None,
    smooth_samples: int | None = None,
    seed: int | None = None,
    progress: Any = None,
) -> dict[str, dict[str, Any]]:
    """Per method, the keyword arguments its class takes among these common options (``None``: not given).

    ``batch_size`` and ``max_channels`` go to the score-based methods, ``smooth_samples`` (as ``n_samples``)
    and ``seed`` to SmoothGrad-CAM++. ``max_channels``: an int caps both score-based methods, ``"all"`` makes
    both score every channel, ``None`` (not given) leaves each its own default (Score-CAM every channel,
    Grad++ScoreCAM 64). The result is what :func:`gradscorecam.evaluate` takes as ``explainer_options``.
    """
    check_budget(max_channels)
    given = {"batch_size": batch_size, "max_channels": max_channels, "smooth_samples": smooth_samples,
             "seed": seed, "progress": progress}  # fmt: skip
    options = {}
    for method in methods:
        _check_method(method)
        kwargs = {_RENAMED.get(k, k): given[k] for k in _ACCEPTS.get(method, ()) if given[k] is not None}
        if kwargs:
            options[method] = kwargs
    return options


def make_explainer(
    method: str,
    model: nn.Module,
    target_layer: LayerSpec,
    *,
    batch_size: int | None = None,
    max_channels: Budget | None = None,
    smooth_samples: int | None = None,
    seed: int | None = None,
    progress: Any = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> BaseCAM:
    """Build the explainer ``method`` (a key of :data:`METHODS`) with the common options that apply to it.

    Options left at ``None`` keep the class's defaults (see :func:`method_options`; ``max_channels="all"``
    scores every channel, ``None`` keeps each method's default budget); options that do not apply to the
    method are ignored. ``overrides`` adds per-method keyword arguments, e.g.
    ``{"Grad++ScoreCAM": {"mask_source": "gradient"}}``. The returned explainer's ``options()`` gives the
    effective options, defaults included, JSON-serialisable: record those, not the arguments passed here.
    """
    _check_method(method)
    common = method_options(
        [method], batch_size=batch_size, max_channels=max_channels, smooth_samples=smooth_samples, seed=seed,
        progress=progress,
    )  # fmt: skip
    kwargs = {**common.get(method, {}), **(overrides or {}).get(method, {})}
    return METHODS[method](model, target_layer, **kwargs)


def channel_budgets(
    methods: Sequence[str], model: nn.Module, target_layer: LayerSpec, max_channels: Budget | None = None
) -> dict[str, Budget]:
    """Per score-based method among ``methods``, the ``max_channels`` its explainer really uses.

    Read off ``make_explainer(...).options()``, so ``None`` shows each method's default, not a guess.
    """
    budgets = {}
    for method in methods:
        options = make_explainer(method, model, target_layer, max_channels=max_channels).options()
        if "max_channels" in options:
            budgets[method] = options["max_channels"]
    return budgets


def describe_budget(budget: Budget) -> str:
    """A channel budget in words, the one wording of captions and the explorer: ``"every non-constant channel"``
    (``"all"``: constant channels give a constant mask and are skipped) or ``"at most 64 channels"``."""
    return "every non-constant channel" if budget == "all" else f"at most {budget} channels"


def describe_channel_budgets(budgets: Mapping[str, Budget]) -> str:
    """One line for a caption: e.g. ``Score-CAM: every non-constant channel; Grad++ScoreCAM: at most 64 ...``."""
    if not budgets:
        return "no score-based method"
    parts = []
    for method, budget in budgets.items():
        if budget == "all":
            parts.append(f"{method}: {describe_budget(budget)}")
        else:
            rank = (
                "largest Grad-CAM++ weights w_k > 0"
                if method == "Grad++ScoreCAM"
                else "largest positive mean activations"
            )
            parts.append(f"{method}: {describe_budget(budget)} per image ({rank})")
    return "; ".join(parts)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(map(repr, METHODS))}")
