"""One image of an evaluation set (:class:`ImageRecord`) and reading it as an RGB picture (:func:`load_rgb`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import ClassIndexError, DataSourceError
from .boxes import Box, map_boxes

#: File name endings read as images (those of torchvision's ImageFolder, lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    """An image to explain: where it is, which class it shows and, where known, where.

    Attributes:
        image_id: unique within its source (the file stem for ImageNet, e.g. ``ILSVRC2012_val_00000001``).
        path: the image file.
        class_index: the class explained, in the model's output order (torchvision order for ImageNet).
        boxes: bounding boxes of that class, ``(x0, y0, x1, y1)`` in pixels of the original image, corners
            inclusive; empty when the source has none.
        origin: where the label was read (``"labels.csv, line 7"``), for error messages; not compared.
    """

    image_id: str
    path: Path
    class_index: int
    boxes: tuple[Box, ...] = ()
    origin: str = field(default="", compare=False)


def check_class_indices(records: Sequence[ImageRecord], num_classes: int) -> None:
    """Raise :class:`~gradscorecam.errors.ClassIndexError` for the first record whose class index is not one of
    a model's ``num_classes`` outputs, naming the file and line the label came from and the model's number of
    classes. Without it, labels of another data set (ImageNet's 281 for a 10-class CIFAR model) would be
    evaluated as if they were the model's classes.
    """
    for record in records:
        if not 0 <= record.class_index < num_classes:
            where = record.origin or f"{record.path} ({record.image_id})"
            raise ClassIndexError(
                f"{where}: class index {record.class_index} is outside the model's {num_classes} classes "
                f"(valid indices 0..{num_classes - 1}). Are these labels for another model or data set (e.g. "
                "ImageNet labels with a CIFAR-10 model)? Use labels in the model's class order."
            )


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as a decoded 3-channel RGB PIL image.

    Grayscale, CMYK, palette and alpha images are converted to RGB (ImageNet's validation set holds a few
    grayscale and CMYK JPEGs). A missing, unreadable or truncated file, and one larger than PIL's
    decompression-bomb limit, raises :class:`~gradscorecam.errors.DataSourceError` naming the file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; treat both as the same refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now, so that a truncated file fails here and not in the transform
                return image.convert("RGB") if image.mode != "RGB" else image.copy()
    except FileNotFoundError as error:
        raise DataSourceError(f"image file not found: {path}") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataSourceError(
            f"image file {path} is larger than PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels "
            f"(a decompression bomb guard): {error}. Raise PIL.Image.MAX_IMAGE_PIXELS if you trust it."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataSourceError(f"cannot read image file {path}: {error}") from error


def load_batch(
    records: Sequence[ImageRecord], transform: Callable[[Image.Image], torch.Tensor]
) -> tuple[torch.Tensor, list[tuple[Box, ...] | None]]:
    """The records' images through ``transform`` as one (B, C, H, W) tensor, and their boxes in its pixels.

    A record's boxes are ``None`` when it has boxes that the transform cannot map (see
    :func:`~gradscorecam.datasets.boxes.map_boxes`), and ``()`` when it has none.
    """
    tensors, boxes = [], []
    for record in records:
        image = load_rgb(record.path)
        tensors.append(transform(image))
        boxes.append(map_boxes(record.boxes, image.size, transform) if record.boxes else ())
    return torch.stack(tensors), boxes
