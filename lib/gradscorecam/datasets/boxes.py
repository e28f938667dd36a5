"""Bounding boxes through a model's preprocessing: from original-image pixels to the model-input pixels.

A box is ``(x0, y0, x1, y1)``: column and row of its top-left and bottom-right pixels, both inclusive (as
ImageNet's annotations give them). A box covers the continuous area ``[x0, x1 + 1) x [y0, y1 + 1)``; a
resize scales that area and the mapped box is the set of output pixels it touches.

Which transforms can be mapped: the ones whose geometry is a resize followed by a centre crop, which is
every torchvision classification preset (``weights.transforms()``, e.g. Resize(256) + CenterCrop(224)) and
every ``Compose`` (torchvision.transforms or transforms.v2) of ``Resize`` and ``CenterCrop`` steps plus steps
that do not move pixels (ToTensor, PILToTensor, ToImage, ToDtype, ConvertImageDtype, Normalize). For any
other transform (a user's own function, random crops, padding) the geometry is unknown and
:func:`map_boxes` returns ``None``: the runner then leaves the pointing-game columns empty for that image
rather than guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torchvision import transforms as T
from torchvision.transforms import v2 as T2
from torchvision.transforms._presets import ImageClassification

Box = tuple[int, int, int, int]
# one geometric step, given the current (width, height): (scale_x, scale_y, offset_x, offset_y, new_w, new_h)
Step = Callable[[int, int], tuple[float, float, int, int, int, int]]

_PIXEL_PRESERVING = (
    T.ToTensor,
    T.PILToTensor,
    T.ConvertImageDtype,
    T.Normalize,
    T2.ToImage,
    T2.ToDtype,
    T2.Normalize,
    T2.ToPureTensor,
)


def map_boxes(boxes: Sequence[Box], image_size: tuple[int, int], transform: object) -> tuple[Box, ...] | None:
    """Map boxes given in pixels of an image of ``image_size`` = (width, height) through ``transform``.

    Returns the boxes in pixels of the transformed image (clipped to it; boxes the crop removes entirely
    are dropped), or ``None`` when the transform's geometry is not known (see the module docstring).
    """
    steps = geometry_steps(transform)
    if steps is None:
        return None
    width, height = image_size
    # continuous edges: the left/top edge of the first pixel, the right/bottom edge of the last
    edges = [(float(x0), float(y0), x1 + 1.0, y1 + 1.0) for x0, y0, x1, y1 in boxes]
    for step in steps:
        sx, sy, offset_x, offset_y, width, height = step(width, height)
        moved = []
        for x0, y0, x1, y1 in edges:
            x0, x1 = x0 * sx - offset_x, x1 * sx - offset_x
            y0, y1 = y0 * sy - offset_y, y1 * sy - offset_y
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                continue  # cropped away
            moved.append((max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))))
        edges = moved
    return tuple(
        (math.floor(x0), math.floor(y0), max(math.ceil(x1) - 1, math.floor(x0)), max(math.ceil(y1) - 1, math.floor(y0)))
        for x0, y0, x1, y1 in edges
    )


def geometry_steps(transform: object) -> list[Step] | None:
    """The transform's resize/crop steps, each a function of the current (width, height), or None if unknown.

    Each step returns ``(scale_x, scale_y, offset_x, offset_y, new_width, new_height)``.
    """
    if isinstance(transform, ImageClassification):
        return [_resize_step(list(transform.resize_size), None), _crop_step(list(transform.crop_size))]
    if isinstance(transform, (T.Compose, T2.Compose)):
        steps: list[Step] = []
        for part in transform.transforms:
            if isinstance(part, (T.Resize, T2.Resize)):
                if part.size is None:
                    return None
                steps.append(_resize_step(part.size, part.max_size))
            elif isinstance(part, (T.CenterCrop, T2.CenterCrop)):
                steps.append(_crop_step(part.size))
            elif not isinstance(part, _PIXEL_PRESERVING):
                return None
        return steps
    return None


def resized_size(width: int, height: int, size: int | Sequence[int], max_size: int | None) -> tuple[int, int]:
    """(new_width, new_height) of torchvision's Resize: an int (or one-element list) sets the shorter side."""
    if isinstance(size, int) or len(size) == 1:
        requested = size if isinstance(size, int) else size[0]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_short, new_long) if width <= height else (new_long, new_short)
    new_height, new_width = size
    return new_width, new_height


def _resize_step(size: int | Sequence[int], max_size: int | None) -> Step:
    def step(width: int, height: int) -> tuple[float, float, int, int, int, int]:
        new_width, new_height = resized_size(width, height, size, max_size)
        return new_width / width, new_height / height, 0, 0, new_width, new_height

    return step


def _crop_step(size: int | Sequence[int]) -> Step:
    crop_height, crop_width = (size, size) if isinstance(size, int) else (size[0], size[-1])

    def step(width: int, height: int) -> tuple[float, float, int, int, int, int]:
        # torchvision.transforms.functional.center_crop rounds the offsets the same way
        top = int(round((height - crop_height) / 2.0))
        left = int(round((width - crop_width) / 2.0))
        return 1.0, 1.0, left, top, crop_width, crop_height

    return step
