"""An interactive explorer of CAM explanations for classrooms (ipywidgets).

>>> from gradscorecam.explorer import Explorer
>>> Explorer.default()                                   # torchvision models, built-in photographs
>>> Explorer({"my net": lambda: spec}, {"cat": lambda: pil_image})   # any models and images, injected

Layout: :mod:`.sources` (what models and images look like to the explorer, and the wiring of the
library's own), :mod:`.cache` (finished maps), :mod:`.compute` (running explainers, timing, estimates,
teaching data), :mod:`.session` (the selection and its rules, without widgets), :mod:`.render` (the
pictures), :mod:`.widgets` (the controls).
"""

from .cache import LRUCache, ResultKey
from .compute import MethodResult, TeachingView, estimate_seconds, find_classes, run_method
from .session import Session
from .sources import ImageEntry, LoadedModel, ModelLike, as_model_like, decode_image_bytes
from .widgets import DEFAULT_WARN_SECONDS, Displayed, Explorer

__all__ = [
    "DEFAULT_WARN_SECONDS",
    "Displayed",
    "Explorer",
    "ImageEntry",
    "LRUCache",
    "LoadedModel",
    "MethodResult",
    "ModelLike",
    "ResultKey",
    "Session",
    "TeachingView",
    "as_model_like",
    "decode_image_bytes",
    "estimate_seconds",
    "find_classes",
    "run_method",
]
