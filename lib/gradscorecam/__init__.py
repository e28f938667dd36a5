"""gradscorecam: CAM explainers, faithfulness metrics and plotting for the Grad++ScoreCAM compendium.

>>> from gradscorecam import GradCAM
>>> saliency = GradCAM(model, target_layer="layer4")(images)   # (B, H, W) in [0, 1]

Every name below is imported on first use (PEP 562 ``__getattr__``), so ``from gradscorecam import GradCAM``
loads torch and the explainers only, not pandas, scipy, matplotlib, papermill or the notebook stack, which
the evaluation, summaries, figures and pipeline need (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ClassIndexError,
    DataSourceError,
    GradScoreCAMError,
    InputImageError,
    ModelSourceError,
    ResultsMismatchError,
    TargetLayerError,
    UnsupportedModelError,
    WeightsUnavailableError,
)

# name -> the module that defines it (a submodule itself when the name is the module's own)
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("BaseCAM", "CAM", "Explanation", "GradCAM", "GradCAMPlusPlus", "GradPlusPlusScoreCAM", "METHODS", "ScoreCAM",
         "SmoothGradCAMPlusPlus", "feature_layers", "make_explainer"),
        ".explainers",
    ),
    "ModelSpec": ".models",
    "load_model": ".models",
    "evaluate": ".runner",
    "merge_results": ".results",
    "read_results": ".results",
    "summarize": ".summary",
    "compare": ".verdict",
    "claim_verdicts": ".verdict",
    "library_version": ".version",
    "datasets": ".datasets",
    "metrics": ".metrics",
}  # fmt: skip

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from . import datasets, metrics
    from .explainers import (
        CAM,
        METHODS,
        BaseCAM,
        Explanation,
        GradCAM,
        GradCAMPlusPlus,
        GradPlusPlusScoreCAM,
        ScoreCAM,
        SmoothGradCAMPlusPlus,
        feature_layers,
        make_explainer,
    )
    from .models import ModelSpec, load_model
    from .results import merge_results, read_results
    from .runner import evaluate
    from .summary import summarize
    from .verdict import claim_verdicts, compare
    from .version import library_version

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from .version import package_version

        return package_version()
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    value = module if _LAZY[name] == f".{name}" else getattr(module, name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


__all__ = [
    "BaseCAM",
    "CAM",
    "ClassIndexError",
    "DataSourceError",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradPlusPlusScoreCAM",
    "GradScoreCAMError",
    "InputImageError",
    "ModelSourceError",
    "ResultsMismatchError",
    "METHODS",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "TargetLayerError",
    "UnsupportedModelError",
    "WeightsUnavailableError",
    "__version__",
    "claim_verdicts",
    "compare",
    "feature_layers",
    "library_version",
    "make_explainer",
    "ModelSpec",
    "datasets",
    "evaluate",
    "load_model",
    "merge_results",
    "metrics",
    "read_results",
    "summarize",
]
