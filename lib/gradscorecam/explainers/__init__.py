"""The six CAM explainers, sharing one base class (:class:`BaseCAM`) and one post-processing."""

from .base import BaseCAM, Explanation
from .cam import CAM
from .gradient import GradCAM, GradCAMPlusPlus, gradcampp_pixel_weights
from .gradpp_scorecam import GradPlusPlusScoreCAM
from .layers import feature_layers, resolve_target_layer
from .registry import METHODS, channel_budgets, describe_channel_budgets, make_explainer, method_options
from .scorecam import ScoreCAM
from .smoothgrad import SmoothGradCAMPlusPlus

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
    "channel_budgets",
    "describe_channel_budgets",
    "feature_layers",
    "gradcampp_pixel_weights",
    "make_explainer",
    "method_options",
    "resolve_target_layer",
]
