"""An interactive explorer of CAM explanations for classrooms (ipywidgets).

>>> from gradscorecam.explorer import Explorer
>>> Explorer.default()                                   # torchvision models, built-in photographs
>>> Explorer({"my net": lambda: spec}, {"cat": lambda: pil_image})   # any models and images, injected

Layout: :mod:`.sources` (what models and images look like to the explorer, and the wiring of the
library's own), :mod:`.cache` (finished maps), :mod:`.compute` (running explainers, timing, estimates,
teaching data), :mod:`.session` (the selection and its rules), :mod:`.controller` (computing in the
background, stopping, collecting results and errors), :mod:`.render` (the pictures), :mod:`.widgets` (the
controls). Only :mod:`.widgets` imports ipywidgets, and only when :class:`Explorer` is first used, so
everything else runs and is tested without it.
"""

from typing import Any

from .cache import LRUCache, ResultKey
from .compute import MethodResult, TeachingView, estimate_seconds, find_classes, run_method
from .controller import ComputeController, RunReport
from .session import Session
from .sources import ImageEntry, LoadedModel, ModelLike, as_model_like, decode_image_bytes

_FROM_WIDGETS = ("DEFAULT_WARN_SECONDS", "Displayed", "Explorer")


def __getattr__(name: str) -> Any:
    # the view, imported on first use: ipywidgets is needed for the controls only
    if name in _FROM_WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ComputeController",
    "DEFAULT_WARN_SECONDS",
    "Displayed",
    "Explorer",
    "ImageEntry",
    "LRUCache",
    "LoadedModel",
    "MethodResult",
    "ModelLike",
    "ResultKey",
    "RunReport",
    "Session",
    "TeachingView",
    "as_model_like",
    "decode_image_bytes",
    "estimate_seconds",
    "find_classes",
    "run_method",
]
