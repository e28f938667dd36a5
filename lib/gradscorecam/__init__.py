"""gradscorecam: CAM explainers, faithfulness metrics and plotting for the Grad++ScoreCAM compendium.

>>> from gradscorecam import GradCAM
>>> saliency = GradCAM(model, target_layer="layer4")(images)   # (B, H, W) in [0, 1]
"""

from importlib.metadata import PackageNotFoundError, version

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
from . import datasets, metrics
from .models import ModelSpec, load_model
from .runner import evaluate, merge_results, read_results
from .summary import summarize
from .verdict import claim_verdicts, compare

try:
    __version__ = version("gradscorecam")
except PackageNotFoundError:  # imported from a checkout without installing
    __version__ = "0.1.0+checkout"

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
