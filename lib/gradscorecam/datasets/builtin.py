"""Photographs that ship with installed packages, labelled with the ImageNet-1k class each shows.

The default image source when no ImageNet folder is given: nothing is downloaded. Only files bundled
inside the scikit-image and matplotlib wheels are used (``skimage/data/*.png``, ``mpl-data/sample_data``),
never the scikit-image images that need ``pooch`` to fetch them.

Each class index was chosen by looking at the photograph; the comment says what it shows. The
shared ImageNet MobileNetV2 (used only as a check, not by the library) has the label in its top 5 for
all but ``grace_hopper`` (see :data:`BUILTIN_PHOTOS`), whose uniform it reads as a mortarboard/academic gown.
ImageNet-1k has no "rocket" nor "motorcycle" class; the nearest classes are used and said so.

Multi-object example: no bundled photograph shows several objects of one class, so ``two_cats`` is an
honestly labelled **composite** made here: the ``chelsea`` photograph pasted twice, at half size, on a
canvas of the ImageNet mean colour. Its two boxes are the pasted rectangles, known by construction.
Composites are written once to a cache folder (see :func:`builtin_images`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import DataSourceError
from .boxes import Box
from .records import ImageRecord


@dataclass(frozen=True)
class BuiltinPhoto:
    """A bundled photograph: package, file inside its data folder, ImageNet class, and what it shows."""

    image_id: str
    package: str  # "skimage" or "matplotlib"
    file: str
    class_index: int
    class_name: str
    shows: str


#: The bundled photographs, checked by eye.
BUILTIN_PHOTOS: tuple[BuiltinPhoto, ...] = (
    # A close-up of a striped brown tabby cat's face (MobileNetV2 top-5: Egyptian cat, tiger cat, tabby).
    BuiltinPhoto("chelsea", "skimage", "chelsea.png", 281, "tabby", "a tabby cat's face"),
    # An espresso in a red cup on a saucer, crema visible (MobileNetV2 top-1).
    BuiltinPhoto("coffee", "skimage", "coffee.png", 967, "espresso", "an espresso cup on a saucer"),
    # A rocket on its launch pad at dusk between lightning towers; ImageNet's nearest class is "missile"
    # (MobileNetV2 top-1).
    BuiltinPhoto("rocket", "skimage", "rocket.jpg", 657, "missile", "a rocket on a launch pad"),
    # Grayscale: a man filming with a camera on a tripod (MobileNetV2 top-1: tripod).
    BuiltinPhoto("camera", "skimage", "camera.png", 872, "tripod", "a cameraman at a camera on a tripod"),
    # A red motorcycle in a garage; ImageNet-1k has no motorcycle class, "moped" is the nearest
    # (MobileNetV2 top-2, after "motor scooter").
    BuiltinPhoto("motorcycle", "skimage", "motorcycle_left.png", 665, "moped", "a red motorcycle in a garage"),
    # Grace Hopper's official portrait in US Navy dress uniform. MobileNetV2's top 5 do not include
    # "military uniform" (it says mortarboard, academic gown); kept as an honest hard case.
    BuiltinPhoto(
        "grace_hopper", "matplotlib", "grace_hopper.jpg", 652, "military uniform", "a portrait in navy uniform"
    ),
)

# The composite: chelsea at (40, 56) and (256, 312), each 216 x 144, on a 512 x 512 canvas: diagonal, with
# 112 pixels between them vertically, so that a map reaching one does not reach the other by proximity. Both
# copies lie inside the central 448 x 448 that Resize(256) + CenterCrop(224) keeps. The file name carries the
# layout's version, so a cached copy of an older layout is never reused.
COMPOSITE_ID = "two_cats"
_COMPOSITE_VERSION = 2
_CANVAS = 512
_TILE = (216, 144)
_TILE_ORIGINS = ((40, 56), (256, 312))
_MEAN_RGB = (124, 116, 104)  # the ImageNet mean (0.485, 0.456, 0.406) in 8-bit pixels


def builtin_images(cache_dir: str | Path | None = None, include_composite: bool = True) -> list[ImageRecord]:
    """Records for the bundled photographs and (by default) the ``two_cats`` composite.

    Args:
        cache_dir: where the composite is written (once; it is deterministic). Default
            ``$XDG_CACHE_HOME/gradscorecam/builtin`` (``~/.cache/gradscorecam/builtin``).
        include_composite: add the two-cats composite, with its two boxes.
    """
    records = [ImageRecord(p.image_id, builtin_path(p), p.class_index) for p in BUILTIN_PHOTOS]
    if include_composite:
        records.append(two_cats_composite(cache_dir))
    return records


def builtin_path(photo: BuiltinPhoto) -> Path:
    """The installed file of a bundled photograph."""
    if photo.package == "skimage":
        import skimage.data

        folder = Path(skimage.data.__file__).parent
    else:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "sample_data"
    path = folder / photo.file
    if not path.is_file():
        raise DataSourceError(f"the {photo.package} photograph {photo.file} is not installed at {path}.")
    return path


def two_cats_composite(cache_dir: str | Path | None = None) -> ImageRecord:
    """The ``two_cats`` composite (two copies of ``chelsea``), written to ``cache_dir`` if not there yet."""
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = folder / f"{COMPOSITE_ID}_v{_COMPOSITE_VERSION}.png"
    boxes: tuple[Box, ...] = tuple((x, y, x + _TILE[0] - 1, y + _TILE[1] - 1) for x, y in _TILE_ORIGINS)
    if not path.is_file():
        chelsea = next(p for p in BUILTIN_PHOTOS if p.image_id == "chelsea")
        with Image.open(builtin_path(chelsea)) as source:
            tile = source.convert("RGB").resize(_TILE, Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (_CANVAS, _CANVAS), _MEAN_RGB)
        for origin in _TILE_ORIGINS:
            canvas.paste(tile, origin)
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        canvas.save(partial, format="PNG")
        partial.replace(path)  # atomic: a concurrent reader never sees half a file
    return ImageRecord(COMPOSITE_ID, path, 281, boxes)


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradscorecam" / "builtin"
