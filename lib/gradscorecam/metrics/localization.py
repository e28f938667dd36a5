r"""Localisation metrics for images with ground-truth boxes: the pointing game and its energy-based variant.

Boxes are ``(x0, y0, x1, y1)`` in saliency-map pixels (column, row), corners inclusive: pixel (x, y) is
inside when x0 <= x <= x1 and y0 <= y <= y1. Each image has a list of boxes (all of the explained class).

* **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018,
  Sec. 5.1): a hit when the saliency maximum lies inside a box or within ``tolerance`` = 15 pixels of one
  (Euclidean distance from the pixel to the nearest box pixel; the authors dilate the box mask by that
  radius, which is the same set). When several pixels share the maximum, the first in row-major order
  is taken, which keeps the result deterministic (an all-zero map "points" at the top-left corner).
* **Energy-based pointing game** (Wang et al., Score-CAM, CVPR-W 2020, Sec. 5.3): the share of the
  saliency energy inside the boxes,

  .. math::
      \mathrm{Proportion} = \frac{\sum_{(x,y) \in \text{boxes}} S_{xy}}{\sum_{(x,y)} S_{xy}},

  with overlapping boxes counted once (their union). NaN for an all-zero map, where the share is undefined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

Box = tuple[int, int, int, int]


def pointing_game(saliency: Tensor | np.ndarray, boxes: Sequence[Sequence[Box]], tolerance: float = 15) -> np.ndarray:
    """Per image, whether the saliency maximum hits a box (within ``tolerance`` pixels): (B,) bool array.

    Args:
        saliency: (B, H, W) maps (or one (H, W) map with ``boxes`` a one-element list).
        boxes: per image a non-empty list of ``(x0, y0, x1, y1)`` in saliency pixels.
        tolerance: the largest distance in pixels from the maximum to a box that still counts as a hit.
    """
    maps = _as_maps(saliency)
    _check_boxes(maps, boxes)
    hits = np.zeros(len(maps), dtype=bool)
    width = maps.shape[-1]
    for i, (saliency_map, image_boxes) in enumerate(zip(maps, boxes)):
        index = int(np.argmax(saliency_map))  # numpy's argmax returns the first maximum, row-major
        y, x = divmod(index, width)
        hits[i] = any(_distance_to_box(x, y, box) <= tolerance for box in image_boxes)
    return hits


def energy_pointing_game(saliency: Tensor | np.ndarray, boxes: Sequence[Sequence[Box]]) -> np.ndarray:
    """Per image, the share of saliency inside the union of its boxes: (B,) float64 in [0, 1] (NaN if all zero)."""
    maps = _as_maps(saliency)
    _check_boxes(maps, boxes)
    shares = np.full(len(maps), np.nan)
    for i, (saliency_map, image_boxes) in enumerate(zip(maps, boxes)):
        inside = box_mask(saliency_map.shape, image_boxes)
        total = float(saliency_map.sum())
        if total > 0:
            shares[i] = float(saliency_map[inside].sum()) / total
    return shares


def box_mask(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    """(H, W) bool mask of the union of the boxes (clipped to the map)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = True
    return mask


def _distance_to_box(x: int, y: int, box: Box) -> float:
    x0, y0, x1, y1 = box
    dx = max(x0 - x, 0, x - x1)
    dy = max(y0 - y, 0, y - y1)
    return float(np.hypot(dx, dy))


def _as_maps(saliency: Tensor | np.ndarray) -> np.ndarray:
    maps = saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency, float)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"saliency must be (B, H, W), got shape {maps.shape}")
    return maps


def _check_boxes(maps: np.ndarray, boxes: Sequence[Sequence[Box]]) -> None:
    if len(boxes) != len(maps):
        raise ValueError(f"got boxes for {len(boxes)} images but {len(maps)} saliency maps")
    for i, image_boxes in enumerate(boxes):
        if not image_boxes:
            raise ValueError(f"image {i} has no boxes; the pointing games need at least one box per image")
        for box in image_boxes:
            if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"image {i}: box {box} is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
