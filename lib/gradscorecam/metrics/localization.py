r"""Localisation metrics for images with ground-truth boxes: the pointing game, its energy-based variant,
and per-object scores for images with several objects of the explained class (the paper's Figure 5).

Boxes are ``(x0, y0, x1, y1)`` in saliency-map pixels (column, row), corners inclusive: pixel (x, y) is
inside when x0 <= x <= x1 and y0 <= y <= y1. Each image has a list of boxes (all of the explained class).

* **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018,
  Sec. 5.1): a hit when the saliency maximum lies inside a box or within ``tolerance`` pixels of one
  (Euclidean distance from the pixel to the nearest box pixel; the authors dilate the box mask by that
  radius, which is the same set). When several pixels share the maximum, the first in row-major order
  is taken, which keeps the result deterministic (an all-zero map "points" at the top-left corner).
* **Energy-based pointing game** (Wang et al., Score-CAM, CVPR-W 2020, Sec. 5.3): the share of the
  saliency energy inside the boxes,

  .. math::
      \mathrm{Proportion} = \frac{\sum_{(x,y) \in \text{boxes}} S_{xy}}{\sum_{(x,y)} S_{xy}},

  with overlapping boxes counted once (their union). NaN for an all-zero map, where the share is undefined.
* **Objects reached** (:func:`objects_reached`, Figure 5's caption): per box, whether the map's largest value
  within ``tolerance`` of the box is at least half of its peak. Lenient by design (a broad blob over one
  object "reaches" a neighbour): it shows what the figure shows, it does not separate methods.
* **Per-object localisation** (:func:`object_scores`), a score that can fail, for the claim that a method
  finds *every* object of the class:

  - *found*: box b holds its own local maximum of the map: a connected region R of pixels p with
    S_p >= S_q for their 8 neighbours q and S_p >= ``threshold`` · max S (0.5) that overlaps b and no other
    box of the image. Regions, not pixels, because a plateau (a flat map, a flat blob, the flat strips that
    upsampling leaves) is one maximum however many pixels it has: a uniform map, or one flat blob over two
    boxes, finds neither. A single blob over one object, or between two objects, finds at most that one (or
    none): its tail entering the other box is not a maximum there. ``objects_found`` is the share of the
    image's boxes found.
  - *energy*: the box's share of the map's energy over its share of the image's area,

    .. math::
        \rho_b = \frac{\sum_{p \in b} S_p / \sum_p S_p}{|b| / (H W)},

    1 for a uniform map (chance level), above 1 when the object holds more than its area's share, 0 when
    the map ignores it. ``min_object_energy`` is the smallest ρ_b of the image (the object served worst).

  Rationale: the energy-based pointing game (Wang et al. 2020) rewards a map for putting its mass on the
  union of the boxes, which one object can satisfy alone; relevance-mass accuracy (Arras, Osman, Samek,
  "CLEVR-XAI", Information Fusion 2022) measures the same share per object. Dividing by the area makes
  objects of different sizes comparable and gives a chance level; asking for a separate local maximum per
  object is the pointing game (Zhang et al. 2018) applied to every object, with the peak of a map that
  reaches two objects with one blob not counted twice.

**Tolerance in pixels on any input size.** Zhang et al.'s 15 pixels are what the CAM literature uses at the
224 x 224 input of ImageNet networks. Fixed in pixels it would be half of a 32 x 32 CIFAR image, so the
default (``tolerance=None``) is :func:`default_tolerance`: 15 pixels scaled to the map's shorter side,
15 · min(H, W) / 224 (15 px at 224, 2.1 px at 32). Pass a number to fix it in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..explainers.checks import check_finite

Box = tuple[int, int, int, int]

#: Zhang et al.'s pointing-game tolerance in pixels, at the reference input side below.
REFERENCE_TOLERANCE = 15.0
#: The input side (224 x 224, ImageNet networks) at which the tolerance is 15 pixels.
REFERENCE_SIDE = 224


def default_tolerance(shape: tuple[int, ...]) -> float:
    """15 pixels at 224 x 224, scaled to the shorter side of a map of ``shape`` (..., H, W): 15 · min(H, W) / 224."""
    return REFERENCE_TOLERANCE * min(shape[-2:]) / REFERENCE_SIDE


def pointing_game(
    saliency: Tensor | np.ndarray, boxes: Sequence[Sequence[Box]], tolerance: float | None = None
) -> np.ndarray:
    """Per image, whether the saliency maximum hits a box (within ``tolerance`` pixels): (B,) bool array.

    Args:
        saliency: (B, H, W) maps (or one (H, W) map with ``boxes`` a one-element list).
        boxes: per image a non-empty list of ``(x0, y0, x1, y1)`` in saliency pixels.
        tolerance: the largest distance in pixels from the maximum to a box that still counts as a hit;
            None: :func:`default_tolerance` (15 px at 224 x 224, scaled to the map's size).
    """
    maps = _as_maps(saliency)
    _check_boxes(maps, boxes)
    tolerance = default_tolerance(maps.shape) if tolerance is None else tolerance
    hits = np.zeros(len(maps), dtype=bool)
    width = maps.shape[-1]
    for i, (saliency_map, image_boxes) in enumerate(zip(maps, boxes, strict=True)):
        index = int(np.argmax(saliency_map))  # numpy's argmax returns the first maximum, row-major
        y, x = divmod(index, width)
        hits[i] = any(_distance_to_box(x, y, box) <= tolerance for box in image_boxes)
    return hits


def energy_pointing_game(saliency: Tensor | np.ndarray, boxes: Sequence[Sequence[Box]]) -> np.ndarray:
    """Per image, the share of saliency inside the union of its boxes: (B,) float64 in [0, 1] (NaN if all zero)."""
    maps = _as_maps(saliency)
    _check_boxes(maps, boxes)
    shares = np.full(len(maps), np.nan)
    for i, (saliency_map, image_boxes) in enumerate(zip(maps, boxes, strict=True)):
        inside = box_mask(saliency_map.shape, image_boxes)
        total = float(saliency_map.sum())
        if total > 0:
            shares[i] = float(saliency_map[inside].sum()) / total
    return shares


def objects_reached(saliency: Tensor | np.ndarray, boxes: Sequence[Box], threshold: float = 0.5,
                    tolerance: float | None = None) -> list[bool]:  # fmt: skip
    """Per box of one (H, W) map, whether the map reaches that object: its largest value within ``tolerance``
    pixels of the box is at least ``threshold`` of the map's maximum. The tolerance grows the box by that many
    pixels on every side (a square neighbourhood, where :func:`pointing_game` measures distance); None:
    :func:`default_tolerance`.

    A pointing game per box (Zhang et al. 2018 count only the global maximum, so at most one object per
    image): a map that points at two objects with similar strength reaches both. Lenient: see
    :func:`object_scores` for a score that separates methods.
    """
    values = _as_maps(saliency)[0]
    tolerance = default_tolerance(values.shape) if tolerance is None else tolerance
    peak = float(values.max())
    if peak <= 0:
        return [False] * len(boxes)
    grow = int(np.floor(tolerance))  # whole pixels: a box grown by 2.1 px covers 2 more pixels on each side
    found = []
    for x0, y0, x1, y1 in boxes:
        inside = box_mask(values.shape, [(x0 - grow, y0 - grow, x1 + grow, y1 + grow)])  # clipped there
        found.append(bool(values[inside].max() >= threshold * peak) if inside.any() else False)
    return found


@dataclass(frozen=True)
class ObjectScores:
    """Per-object localisation of one map (see the module docstring, "Per-object localisation").

    Attributes:
        found: (n_boxes,) bool, whether each box holds its own local maximum >= threshold · peak.
        energy: (n_boxes,) float, ρ_b = (box's share of the energy) / (box's share of the area); NaN for an
            all-zero map.
    """

    found: np.ndarray
    energy: np.ndarray

    @property
    def objects_found(self) -> float:
        """The share of the image's objects found, in [0, 1]."""
        return float(self.found.mean())

    @property
    def min_object_energy(self) -> float:
        """The smallest ρ_b of the image: how well the map serves its worst-served object (NaN if all zero)."""
        return float(self.energy.min())


def object_scores(saliency: Tensor | np.ndarray, boxes: Sequence[Box], threshold: float = 0.5) -> ObjectScores:
    """Per-object localisation of one (H, W) map with the boxes of its class (module docstring).

    Raises ValueError for an empty box list or malformed boxes, InputImageError for a map with NaN or inf.
    An all-zero map finds nothing and its energies are NaN.
    """
    maps = _as_maps(saliency)
    if len(maps) != 1:
        raise ValueError(f"object_scores takes one (H, W) map, got {len(maps)}")
    _check_boxes(maps, [boxes])
    values = maps[0]
    height, width = values.shape
    peak, total = float(values.max()), float(values.sum())
    masks = [box_mask(values.shape, [box]) for box in boxes]
    found = np.zeros(len(boxes), dtype=bool)
    if peak > 0:
        from scipy import ndimage  # only this metric needs it; importing the metrics stays light

        peaks = _local_maxima(values) & (values >= threshold * peak)
        regions, count = ndimage.label(peaks, structure=np.ones((3, 3), dtype=bool))
        for region in range(1, count + 1):
            touched = [i for i, mask in enumerate(masks) if (mask & (regions == region)).any()]
            if len(touched) == 1:  # a maximum shared by two boxes (or overlapping ones) is neither's own
                found[touched[0]] = True
    if total > 0:
        energy = np.array([(values[mask].sum() / total) / (mask.sum() / (height * width)) for mask in masks])
    else:
        energy = np.full(len(boxes), np.nan)
    return ObjectScores(found, energy)


def _local_maxima(values: np.ndarray) -> np.ndarray:
    """Pixels at least as large as each of their 8 neighbours (plateaus count; borders compare inwards)."""
    padded = np.pad(values, 1, constant_values=-np.inf)
    height, width = values.shape
    neighbours = [padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]  # fmt: skip
    return values >= np.max(neighbours, axis=0)


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
    maps = (
        saliency.detach().float().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency, float)
    )
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"saliency must be (B, H, W), got shape {maps.shape}")
    check_finite(maps, "the saliency maps")
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
