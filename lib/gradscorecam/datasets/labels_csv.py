"""Any folder of images with a labels CSV: ``file,class_index`` and optional columns.

Columns:

* ``file`` (required): the image path, relative to ``root`` (default: the CSV's folder) or absolute.
* ``class_index`` (required): the class to explain, in the model's output order (an int >= 0).
* ``image_id`` (optional): a unique id; default the ``file`` value.
* ``wnid`` (optional): the ImageNet WordNet id; when present it must be one of the 1000 and agree with
  ``class_index`` in torchvision's order, which catches labels written in another class order.
* ``x0,y0,x1,y1`` (optional): one bounding box of the class, in pixels of the original image, corners
  inclusive; a file may appear on several rows to give several boxes (its class must then agree), and
  empty box cells mean "no box".

``../shared/data/imagenet_samples/labels.csv`` (``file,class_index,wnid,class_name``) has this form.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataSourceError
from .boxes import Box
from .imagenet import imagenet_wnids, wnid_to_index
from .records import ImageRecord

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def labels_csv(path: str | Path, root: str | Path | None = None) -> list[ImageRecord]:
    """Records for the images a labels CSV lists, in file order (see the module docstring for the columns).

    Raises :class:`~gradscorecam.errors.DataSourceError` naming the CSV and line for a missing column, a bad
    class index or WordNet id, a malformed box, or a listed image file that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"labels file not found: {path}")
    base = Path(root) if root is not None else path.parent
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = {"file", "class_index"} - columns
        if missing:
            raise DataSourceError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; a labels CSV needs 'file,class_index' "
                f"(found: {', '.join(reader.fieldnames or []) or 'no header'})."
            )
        has_boxes = set(BOX_COLUMNS) <= columns
        entries: dict[str, tuple[Path, int, list[Box]]] = {}
        origins: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            file = (row.get("file") or "").strip()
            if not file:
                raise DataSourceError(f"{where}: empty 'file'.")
            class_index = _class_index(row.get("class_index"), where)
            wnid = (row.get("wnid") or "").strip()
            if wnid:
                expected = wnid_to_index(wnid, where)
                if expected != class_index:
                    raise DataSourceError(
                        f"{where}: wnid {wnid} is ImageNet class {expected} in torchvision's order, but class_index "
                        f"is {class_index} ({imagenet_wnids()[class_index] if class_index < 1000 else 'out of range'})."
                    )
            image_id = (row.get("image_id") or "").strip() or file
            image_path = Path(file) if Path(file).is_absolute() else base / file
            if image_id not in entries:
                if not image_path.is_file():
                    raise DataSourceError(f"{where}: image file not found: {image_path}")
                entries[image_id] = (image_path, class_index, [])
                origins[image_id] = where
            elif entries[image_id][1] != class_index or entries[image_id][0] != image_path:
                raise DataSourceError(f"{where}: {image_id!r} appears again with another file or class.")
            if has_boxes:
                box = _box_from_row(row, where)
                if box is not None:
                    entries[image_id][2].append(box)
    if not entries:
        raise DataSourceError(f"{path} lists no images.")
    return [ImageRecord(image_id, p, c, tuple(b), origins[image_id]) for image_id, (p, c, b) in entries.items()]


def _class_index(value: str | None, where: str) -> int:
    try:
        index = int((value or "").strip())
    except ValueError:
        raise DataSourceError(f"{where}: class_index {value!r} is not an integer.") from None
    if index < 0:
        raise DataSourceError(f"{where}: class_index {index} is negative.")
    return index


def _box_from_row(row: dict[str, str], where: str) -> Box | None:
    values = [(row.get(c) or "").strip() for c in BOX_COLUMNS]
    if not any(values):
        return None
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in values)
    except ValueError:
        raise DataSourceError(f"{where}: box {values} is not four numbers x0,y0,x1,y1.") from None
    if x1 < x0 or y1 < y0 or min(x0, y0) < 0:
        raise DataSourceError(f"{where}: box {values} must have 0 <= x0 <= x1 and 0 <= y0 <= y1.")
    return x0, y0, x1, y1
