"""The ILSVRC2012 (ImageNet-1k) validation set as users have it on disk.

Layouts read by :func:`imagenet_folder`:

* **flat**: the official folder of 50 000 files ``ILSVRC2012_val_00000001.JPEG`` ... with the labels in
  - ``LOC_val_solution.csv`` (the Kaggle "ImageNet Object Localization Challenge" layout: columns
    ``ImageId,PredictionString``, the string holding ``wnid x0 y0 x1 y1`` per box), found next to the
    folder or up to four folders above it, or passed as ``labels``; it carries the boxes too;
  - the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (line i is the ILSVRC2012_ID of image i),
    which needs the devkit's ``meta.mat`` in the same folder to turn ILSVRC2012_IDs into WordNet ids
    (the ILSVRC2012_ID order is *not* torchvision's class order);
  - or the per-image XML annotations (``annotations=``; each names the class of its boxes).
* **class folders**: one sub-folder per class named by WordNet id (``n01440764/...``), the layout of
  torchvision's ``ImageFolder`` and of ``valprep.sh``.

Boxes come from ``LOC_val_solution.csv`` or from the XML folder (``ILSVRC2012_val_00000001.xml``, PASCAL VOC
format), and only the boxes of the image's own class are kept.

Class indices follow torchvision: the 1000 WordNet ids sorted lexicographically, shipped as
``imagenet_wnids.txt`` next to this module (from timm's ``imagenet_synsets.txt``; checked in the tests
against torchvision's category names).
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from ..errors import DataSourceError
from .boxes import Box
from .records import IMAGE_EXTENSIONS, ImageRecord

WNID_PATTERN = re.compile(r"^n\d{8}$")
LOC_SOLUTION = "LOC_val_solution.csv"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids; position = torchvision class index."""
    text = (Path(__file__).with_name("imagenet_wnids.txt")).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: index for index, wnid in enumerate(imagenet_wnids())}


def wnid_to_index(wnid: str, where: str | Path) -> int:
    """torchvision class index of a WordNet id; an id outside ImageNet-1k raises DataSourceError naming ``where``."""
    try:
        return _wnid_index()[wnid]
    except KeyError:
        raise DataSourceError(
            f"{where}: {wnid!r} is not one of the 1000 ImageNet-1k WordNet ids "
            "(expected 'n' and 8 digits, e.g. 'n01440764' for tench)."
        ) from None


def imagenet_folder(
    root: str | Path,
    labels: str | Path | None = None,
    annotations: str | Path | None = None,
    *,
    allow_missing: bool = False,
) -> list[ImageRecord]:
    """Records for an ImageNet validation folder in either layout (see the module docstring), sorted by id.

    Args:
        root: the folder of images (flat) or of WordNet-id class folders.
        labels: ``LOC_val_solution.csv`` or the devkit's ``ILSVRC2012_validation_ground_truth.txt``.
            For a flat folder it defaults to a ``LOC_val_solution.csv`` found beside or above ``root``,
            else to the XML annotations. Class folders need none (it then only adds boxes).
        annotations: a folder of per-image XML files, for boxes (and labels of a flat folder).
        allow_missing: accept a labels file that lists images the folder lacks (a copied subset of the
            validation set); by default that is an error naming the first missing file.

    Raises :class:`~gradscorecam.errors.DataSourceError`, naming the file, for an unknown WordNet id, an
    image listed in the labels but missing, an image without a label, or a malformed labels file.
    Images are not decoded here; an unreadable one fails when it is loaded (:func:`load_rgb`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"ImageNet folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and WNID_PATTERN.match(p.name))
    files = _image_files(root)
    if class_dirs:
        if files:
            raise DataSourceError(
                f"{root} mixes images ({files[0].name}, ...) with class folders ({class_dirs[0].name}, ...); "
                "use either the flat layout or one folder per WordNet id."
            )
        found = _class_folder_images(class_dirs)
    elif files:
        found = {_image_id(f): (f, None) for f in _unique(files, root)}
    else:
        raise DataSourceError(
            f"{root} has neither images ({', '.join(IMAGE_EXTENSIONS)}) nor class folders named by WordNet id."
        )

    label_source = Path(labels) if labels is not None else None
    if label_source is None and not class_dirs:
        label_source = _find_upwards(root, LOC_SOLUTION)
    annotation_dir = Path(annotations) if annotations is not None else None
    if annotation_dir is not None and not annotation_dir.is_dir():
        raise DataSourceError(f"annotation folder not found: {annotation_dir}")

    table: dict[str, tuple[str, tuple[Box, ...]]] = {}
    if label_source is not None:
        table = _read_labels(label_source)
    elif not class_dirs and annotation_dir is None:
        raise DataSourceError(
            f"no labels for the flat ImageNet folder {root}: pass labels= (LOC_val_solution.csv or the devkit's "
            f"{DEVKIT_GROUND_TRUTH}) or annotations= (the per-image XML folder)."
        )
    if label_source is not None and not class_dirs:
        missing = sorted(set(table) - set(found))
        if missing and not allow_missing:
            raise DataSourceError(
                f"{label_source} lists {len(missing)} image(s) that are not in {root}, first "
                f"{missing[0]!r}: image file not found. Restore the file(s), or pass allow_missing=True to use "
                "only the images present."
            )

    records = []
    for image_id, (path, folder_wnid) in sorted(found.items()):
        wnid, boxes = table.get(image_id, (None, ()))
        if annotation_dir is not None:
            xml_wnid, xml_boxes = _read_xml_annotation(annotation_dir / f"{image_id}.xml")
            wnid = wnid or xml_wnid
            boxes = boxes or xml_boxes.get(wnid or folder_wnid or "", ())
        if folder_wnid is not None:
            if wnid is not None and wnid != folder_wnid:
                raise DataSourceError(
                    f"{path}: the folder says {folder_wnid} but the labels say {wnid}; check the folder layout."
                )
            wnid = folder_wnid
        if wnid is None:
            source = label_source or annotation_dir
            raise DataSourceError(f"{path}: no label for this image in {source}.")
        records.append(ImageRecord(image_id, path, wnid_to_index(wnid, path), boxes))
    return records


# ----------------------------------------------------------------------------------------------- layouts
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _image_id(path: Path) -> str:
    return path.stem


def _unique(files: Iterable[Path], where: Path) -> list[Path]:
    seen: dict[str, Path] = {}
    for path in files:
        other = seen.setdefault(_image_id(path), path)
        if other is not path:
            raise DataSourceError(f"two images in {where} share the id {path.stem!r}: {other} and {path}")
    return list(seen.values())


def _class_folder_images(class_dirs: list[Path]) -> dict[str, tuple[Path, str | None]]:
    found: dict[str, tuple[Path, str | None]] = {}
    for folder in class_dirs:
        wnid_to_index(folder.name, folder)  # fail early, naming the folder
        for path in _image_files(folder):
            image_id = _image_id(path)
            if image_id in found:
                raise DataSourceError(f"two images share the id {image_id!r}: {found[image_id][0]} and {path}")
            found[image_id] = (path, folder.name)
    return found


def _find_upwards(folder: Path, name: str, levels: int = 4) -> Path | None:
    for candidate in [folder, *list(folder.resolve().parents)[:levels]]:
        if (candidate / name).is_file():
            return candidate / name
    return None


# ------------------------------------------------------------------------------------------- label files
def _read_labels(path: Path) -> dict[str, tuple[str, tuple[Box, ...]]]:
    if not path.is_file():
        raise DataSourceError(f"labels file not found: {path}")
    with path.open(newline="") as handle:
        first = handle.readline().strip()
    if first.replace(" ", "").startswith("ImageId,PredictionString"):
        return read_loc_solution(path)
    if first.isdigit():
        return {image_id: (wnid, ()) for image_id, wnid in read_devkit_ground_truth(path).items()}
    raise DataSourceError(
        f"{path}: not a LOC_val_solution.csv (header 'ImageId,PredictionString') nor a devkit "
        f"{DEVKIT_GROUND_TRUTH} (one class id per line); first line: {first[:80]!r}"
    )


def read_loc_solution(path: str | Path) -> dict[str, tuple[str, tuple[Box, ...]]]:
    """``LOC_val_solution.csv`` -> {image id: (WordNet id, boxes of that class)}.

    ``PredictionString`` holds groups of five tokens ``wnid x0 y0 x1 y1``; the image's class is the
    WordNet id of its boxes (ImageNet validation images have boxes of one class only; if not, the first).
    """
    path = Path(path)
    table: dict[str, tuple[str, tuple[Box, ...]]] = {}
    with path.open(newline="") as handle:
        for line_number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                image_id, tokens = row["ImageId"].strip(), row["PredictionString"].split()
                if not tokens or len(tokens) % 5:
                    raise ValueError("PredictionString must hold groups of 'wnid x0 y0 x1 y1'")
                groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
                wnid = groups[0][0]
                boxes = tuple(_box(g[1:]) for g in groups if g[0] == wnid)
            except (KeyError, ValueError, AttributeError) as error:
                raise DataSourceError(f"{path}, line {line_number}: malformed row ({error}): {row}") from error
            wnid_to_index(wnid, f"{path}, line {line_number} ({image_id})")
            table[image_id] = (wnid, boxes)
    return table


def read_devkit_ground_truth(path: str | Path, meta: str | Path | None = None) -> dict[str, str]:
    """The devkit's ``ILSVRC2012_validation_ground_truth.txt`` -> {image id: WordNet id}.

    Line i holds the ILSVRC2012_ID (1..1000) of ``ILSVRC2012_val_{i:08d}``. ILSVRC2012_IDs are the devkit's
    own numbering; ``meta.mat`` (``synsets`` struct array: ``ILSVRC2012_ID``, ``WNID``, ``num_children``;
    the 1000 leaves are the classes) translates them, as torchvision's ``ImageNet`` dataset does.
    """
    path = Path(path)
    meta_path = Path(meta) if meta is not None else path.with_name("meta.mat")
    if not meta_path.is_file():
        raise DataSourceError(
            f"{path} gives devkit class ids, which need the devkit's meta.mat to become WordNet ids; "
            f"it was not found at {meta_path}. Keep the devkit's data/ folder together, or use LOC_val_solution.csv."
        )
    id_to_wnid = _read_devkit_meta(meta_path)
    table = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            wnid = id_to_wnid[int(line)]
        except (ValueError, KeyError):
            raise DataSourceError(
                f"{path}, line {line_number}: {line!r} is not an ILSVRC2012_ID in {meta_path}"
            ) from None
        table[f"ILSVRC2012_val_{line_number:08d}"] = wnid
    return table


def _read_devkit_meta(path: Path) -> dict[int, str]:
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        leaves = synsets[synsets["num_children"] == 0]
        return {int(i): str(w) for i, w in zip(leaves["ILSVRC2012_ID"], leaves["WNID"], strict=True)}
    except Exception as error:  # scipy raises many types for a bad .mat; all mean the same to the user
        raise DataSourceError(f"cannot read the devkit's synsets from {path}: {error}") from error


def _read_xml_annotation(path: Path) -> tuple[str | None, dict[str, tuple[Box, ...]]]:
    """A PASCAL-VOC XML file -> (WordNet id of the first object, {WordNet id: its boxes}); no file -> (None, {})."""
    if not path.is_file():
        return None, {}
    try:
        objects = ET.parse(path).getroot().findall("object")
        boxes: dict[str, list[Box]] = {}
        for obj in objects:
            name = obj.findtext("name", "").strip()
            box = obj.find("bndbox")
            values = [box.findtext(tag) for tag in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
            boxes.setdefault(name, []).append(_box(values))  # type: ignore[arg-type]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as error:
        raise DataSourceError(f"malformed annotation file {path}: {error}") from error
    first = objects[0].findtext("name", "").strip() if objects else None
    if first is not None:
        wnid_to_index(first, path)
    return first, {name: tuple(b) for name, b in boxes.items()}


def _box(values: list[str]) -> Box:
    x0, y0, x1, y1 = (int(float(v)) for v in values)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box corners out of order: {values}")
    return x0, y0, x1, y1
