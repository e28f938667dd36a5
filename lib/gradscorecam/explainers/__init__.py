"""The six CAM explainers, sharing one base class (:class:`BaseCAM`) and one post-processing."""

from .base import BaseCAM, Explanation
from .cam import CAM
from .gradient import GradCAM, GradCAMPlusPlus, gradcampp_pixel_weights
from .gradpp_scorecam import GradPlusPlusScoreCAM
from .layers import feature_layers, resolve_target_layer
from .scorecam import ScoreCAM
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

__all__ = [
    "BaseCAM",
    "CAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradPlusPlusScoreCAM",
    "METHODS",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "feature_layers",
    "gradcampp_pixel_weights",
    "resolve_target_layer",
]
