"""Errors the library raises on bad input.

Each is also a subclass of the matching built-in exception, so ``except ValueError`` keeps working;
catching :class:`GradScoreCAMError` catches every problem the library diagnosed itself (the explorer
uses that to show the message and keep running).
"""

from __future__ import annotations


class GradScoreCAMError(Exception):
    """Base class: a problem with the input that the message names, with its fix."""


class TargetLayerError(GradScoreCAMError, ValueError):
    """The target layer does not exist in the model or its output is not a 4-D feature map."""


class ClassIndexError(GradScoreCAMError, IndexError):
    """A class index is outside the model's output range, or there are not as many targets as images."""


class InputImageError(GradScoreCAMError, ValueError):
    """The images are not a (B, C, H, W) float tensor the model can take."""


class UnsupportedModelError(GradScoreCAMError, ValueError):
    """The method is not defined for this model (e.g. CAM without a global-average-pooling head)."""


class WeightsUnavailableError(GradScoreCAMError, FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable."""


class DataSourceError(GradScoreCAMError, ValueError):
    """An image source (folder, labels file, annotation) is missing, malformed or unreadable."""


class ModelSourceError(GradScoreCAMError, ValueError):
    """A model source (torchvision name, or .py file with build_model()) is unknown or gives an invalid model."""


class ResultsMismatchError(GradScoreCAMError, ValueError):
    """A results file holds rows of another evaluation configuration than the one asked for."""
